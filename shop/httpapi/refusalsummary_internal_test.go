package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// Refusals are written to the log as counts by class and reason: the first
// at once, then at most a line a second, each with the times of the first
// and last refusal it counts; none is lost or counted twice, and no line
// spans a quiet stretch (the end of a burst is written on its own when the
// next refusal comes).
func TestRefusalsAreLoggedAsCountsAtMostOnceASecond(t *testing.T) {
	var buf bytes.Buffer
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	now := t0
	s := newRefusalSummary(slog.New(slog.NewJSONHandler(&buf, nil)), func() time.Time { return now })
	at := func(d time.Duration, c shedClass, why, n int) {
		now = t0.Add(d)
		for range n {
			s.note(c, why)
		}
	}
	at(0, shedFirst, refusedAtOnce, 1)                    // the onset: a line at once
	at(100*time.Millisecond, shedFirst, refusedAtOnce, 5) // within the second: counted
	at(300*time.Millisecond, shedNext, refusedWaited, 2)
	at(900*time.Millisecond, shedLast, refusedAtOnce, 1)
	at(1100*time.Millisecond, shedFirst, refusedWaited, 1) // a second after the first line
	at(5*time.Second, shedLast, refusedWaited, 1)          // after a quiet second: a line at once
	at(5200*time.Millisecond, shedFirst, refusedAtOnce, 3) // held: within a second of that line
	at(9*time.Second, shedNext, refusedAtOnce, 1)          // after a quiet stretch: the held ones, then this

	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		lines = append(lines, m)
	}
	want := []struct {
		counts      map[string]float64
		first, last time.Duration
	}{
		{map[string]float64{"browsing_limit": 1}, 0, 0},
		{map[string]float64{"browsing_limit": 5, "cart_waited": 2, "checkout_limit": 1, "browsing_waited": 1}, 100 * time.Millisecond, 1100 * time.Millisecond},
		{map[string]float64{"checkout_waited": 1}, 5 * time.Second, 5 * time.Second},
		{map[string]float64{"browsing_limit": 3}, 5200 * time.Millisecond, 5200 * time.Millisecond},
		{map[string]float64{"cart_limit": 1}, 9 * time.Second, 9 * time.Second},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		l := lines[i]
		var total float64
		for _, c := range []string{"browsing", "cart", "checkout"} {
			for _, r := range []string{"limit", "waited"} {
				k := c + "_" + r
				if l[k] != w.counts[k] {
					t.Errorf("line %d: %s = %v, want %v", i+1, k, l[k], w.counts[k])
				}
				total += w.counts[k]
			}
		}
		first, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(l["first"]))
		last, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(l["last"]))
		if l["level"] != "WARN" || l["msg"] != "admission refused requests" || l["refused"] != total ||
			!first.Equal(t0.Add(w.first)) || !last.Equal(t0.Add(w.last)) {
			t.Errorf("line %d: %v; want WARN, %v refused from +%v to +%v", i+1, l, total, w.first, w.last)
		}
	}
}

// Counting a refusal between two lines allocates nothing: a replica far
// over its capacity refuses most requests.
func TestNotingARefusalAllocatesNothing(t *testing.T) {
	now := time.Now()
	s := newRefusalSummary(slog.New(slog.DiscardHandler), func() time.Time { return now })
	s.note(shedFirst, refusedAtOnce)
	if n := testing.AllocsPerRun(100, func() { s.note(shedFirst, refusedAtOnce) }); n != 0 {
		t.Fatalf("%.1f allocations a refusal, want 0", n)
	}
}
