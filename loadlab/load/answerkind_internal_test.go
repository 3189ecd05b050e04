package load

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestAnswerKinds(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	for _, tt := range []struct {
		name        string
		status      int
		body        string
		want        string
		problemType bool
	}{
		{"a problem type", 503, `{"type":"https://example.com/probs/overloaded","title":"Overloaded","status":503,"detail":"12 in the queue"}`,
			"https://example.com/probs/overloaded", true},
		{"about:blank's detail, digits as N", 503, `{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"orders are behind (123 waiting on shard 2); retry"}`,
			"orders are behind (N waiting on shard N); retry", false},
		{"a title that is not the status's text", 503, `{"title":"Shard 2 down","detail":"x 5"}`, "Shard N down", false},
		{"nested objects and escapes skipped", 409, `{"items":[{"detail":"nested","q":"a\"}"}],"n":1.5e3,"ok":true,"x":null,"detail":"line \"one\"\nline two"}`,
			`line "one"`, false},
		{"a JSON error's message", 500, `{"message":"db timeout after 30s"}`, "db timeout after Ns", false},
		{"a JSON error's error", 502, ` {"error": "upstream 10.0.0.7 reset"} `, "upstream N.N.N.N reset", false},
		{"a plain first line", 503, "no healthy upstream 7\nsecond", "no healthy upstream N", false},
		{"an HTML page", 503, "<html><body>503 Service Temporarily Unavailable</body></html>", "", false},
		{"empty", 503, "", "", false},
		{"binary", 500, "\xff\xfe\x00", "", false},
		{"JSON that names nothing", 500, `{"code":7}`, "", false},
		{"malformed JSON", 500, `{"detail":"unterminated`, "", false},
		{"clipped at a rune", 500, `{"detail":"` + long + `"}`, strings.Repeat("é", maxKind/2), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, typ := appendAnswerKind([]byte("prefix:"), tt.status, []byte(tt.body))
			if string(got) != "prefix:"+tt.want || typ != tt.problemType {
				t.Errorf("appendAnswerKind(%q) = %q, %v; want %q, %v", tt.body, got, typ, "prefix:"+tt.want, tt.problemType)
			}
		})
	}
}

// Counting an answer of a kind seen before allocates nothing: a target
// refusing most of an overload's requests must not cost the generator.
func TestCountingAKnownKindAllocatesNothing(t *testing.T) {
	e := newEndpointStats()
	out := outcome{status: http.StatusServiceUnavailable, kind: status5xx}
	body := []byte(`{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"the service is overloaded (41 waiting)","instance":"/v1/cart","request_id":"abc-123"}`)
	e.addCause(out, body, "")
	if n := testing.AllocsPerRun(100, func() { e.addCause(out, body, "") }); n != 0 {
		t.Fatalf("%.1f allocations a known kind, want 0", n)
	}
}

// Past maxKindsPerStatus kinds of one status, the rest are counted
// together; every answer is counted once, in the shard and merged.
func TestKindsPastTheBoundAreCountedTogether(t *testing.T) {
	e := newEndpointStats()
	out := outcome{status: http.StatusInternalServerError, kind: status5xx}
	total := 0
	for k := range maxKindsPerStatus + 5 {
		for range k + 1 {
			e.addCause(out, fmt.Appendf(nil, "failure %c", 'a'+k), "")
			total++
		}
	}
	byStatus, causes := summariseCauses(e.causes)
	if byStatus["500"] != int64(total) || len(causes) != maxKindsPerStatus+1 {
		t.Fatalf("by status %v, %d causes %+v; want %d answers in %d kinds", byStatus, len(causes), causes, total, maxKindsPerStatus+1)
	}
	var sum int64
	for _, c := range causes {
		sum += c.Count
		if c.Kind == otherKinds && c.Count != 9+10+11+12+13 {
			t.Errorf("other kinds %+v", c)
		}
	}
	if sum != int64(total) {
		t.Fatalf("causes count %d answers, want %d", sum, total)
	}
}
