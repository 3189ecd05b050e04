package httpapi_test

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
)

// raw sends bytes as they are on a new connection and returns the answer's
// status line and body (net/http's client would refuse to send most of
// these).
func (a *api) raw(t *testing.T, request string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(a.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) //nolint:errcheck // a hang fails the read below
	if _, err := conn.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to %q: %v", request[:min(len(request), 60)], err)
	}
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return res, b.String()
}

// A body that never completes, or that is malformed, is the client's
// fault: a 4xx problem (408, 400), counted under that status and logged
// once with it, never a 500, a 5xx in the metrics or an ERROR line, and not
// an abandoned request (the client is still there to read the answer).
func TestAnUnfinishedOrMalformedBodyIsA4xxCountedAndLoggedOnce(t *testing.T) {
	logs := &lockedBuffer{}
	// The read timeout is the time a body has to arrive: short here, so
	// the stalled body's answer comes quickly.
	a := newAPI(t, options{logs: logs, serverTimeouts: &[2]time.Duration{500 * time.Millisecond, 30 * time.Second}})
	tok := a.session()
	put := "PUT /v1/cart/items/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\nContent-Type: application/json\r\n"
	tests := []struct {
		name, request string
		status        int
		detail        string
	}{
		{"body shorter than its Content-Length", put + "Content-Length: 100\r\n\r\n{\"quantity\": 1", http.StatusRequestTimeout, "did not arrive"},
		{"malformed chunk size", put + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", http.StatusBadRequest, "could not be read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := a.raw(t, tt.request)
			if res.StatusCode != tt.status || res.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, tt.detail) {
				t.Fatalf("%d %s %s, want %d problem saying %q", res.StatusCode, res.Header.Get("Content-Type"), body, tt.status, tt.detail)
			}
			for _, l := range requestLines(t, logs, res.Header.Get("X-Request-Id")) {
				if l["level"] == "ERROR" || (l["msg"] == "request" && l["status"] != float64(tt.status)) {
					t.Fatalf("logged %v; want one request line with status %d and no error", l, tt.status)
				}
			}
		})
	}
	m := a.metrics()
	for _, want := range []string{
		`shop_http_requests_total{code="408",route="PUT /v1/cart/items/{id}"} 1`,
		`shop_http_requests_total{code="400",route="PUT /v1/cart/items/{id}"} 1`,
		`shop_http_requests_total{code="500",route="PUT /v1/cart/items/{id}"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, `shop_http_requests_abandoned_total{route="PUT /v1/cart/items/{id}"} 1`) {
		t.Error("a request whose client read the answer was counted as abandoned")
	}
}

// Requests net/http refuses itself, before any handler, are counted by
// status under the route net/http and logged.
func TestNetHTTPsOwnRefusalsAreCountedByStatus(t *testing.T) {
	logs := &lockedBuffer{}
	a := newAPI(t, options{logs: logs, serverTimeouts: &[2]time.Duration{5 * time.Second, 30 * time.Second}})
	tests := []struct {
		name, request string
		status        int
	}{
		{"garbage request line", "HELLO\r\n\r\n", 400},
		{"headers too large", "GET /v1/menu HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 80<<10) + "\r\n\r\n", 431},
		{"unknown transfer coding", "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"HTTP version", "GET /v1/menu HTTP/2.5\r\nHost: x\r\n\r\n", 505},
	}
	for _, tt := range tests {
		res, _ := a.raw(t, tt.request)
		if res.StatusCode != tt.status {
			t.Fatalf("%s: %d, want %d", tt.name, res.StatusCode, tt.status)
		}
	}
	m := a.metrics()
	for _, code := range []string{"400", "431", "501", "505"} {
		if want := `shop_http_requests_total{code="` + code + `",route="net/http"} 1`; !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	testwait.Eventually(t, 10*time.Second, func() error {
		n := 0
		for _, rec := range logs.records() {
			if rec["msg"] == "request refused by net/http" {
				n++
			}
		}
		if n != len(tests) {
			return errors.New("not every refusal logged yet")
		}
		return nil
	})
}

// requestLines waits (bounded) for the request line of request id and
// returns every line logged with that id.
func requestLines(t *testing.T, logs *lockedBuffer, id string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	testwait.Eventually(t, 10*time.Second, func() error {
		lines = nil
		for _, rec := range logs.records() {
			if rec["request_id"] == id {
				lines = append(lines, rec)
			}
		}
		for _, l := range lines {
			if l["msg"] == "request" {
				return nil
			}
		}
		return errors.New("no request line yet")
	})
	return lines
}
