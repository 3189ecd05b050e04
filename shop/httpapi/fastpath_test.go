package httpapi_test

import (
	"bufio"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/shop/httpapi/internal/rawconntest"
)

// withID adds an X-Request-Id to a rawRequest.
func withID(req []byte, id string) string {
	return strings.Replace(string(req), "\r\n", "\r\nX-Request-Id: "+id+"\r\n", 1)
}

// A refusal on the fast path is, byte for byte, the refusal net/http
// writes (the Date aside), pipelined requests keep their order, a refused
// request's body is skipped, what admission does not refuse (an unknown
// path, a method a route has not) goes back to net/http, and a request net/http would close
// after closes the connection.
func TestAFastPathRefusalIsTheRefusalNetHTTPWrites(t *testing.T) {
	fast, fastToken := refusingLoopback(t, false)
	slow, slowToken := refusingLoopback(t, true)
	pipeline := func(token string) string {
		return withID(rawRequest("GET", "/v1/menu", "", ""), "id-1") +
			withID(rawRequest("GET", "/v1/items?limit=20", "", ""), "id-2") +
			withID(rawRequest("PUT", "/v1/cart/items/7", token, `{"quantity": 2}`), "id-3") +
			withID(rawRequest("GET", "/v1/nothing-here", "", ""), "id-4") +
			withID(rawRequest("GET", "/v1/items/7", "", ""), "id-5") +
			withID(rawRequest("DELETE", "/v1/cart/items/7", token, ""), "id-6") +
			withID(rawRequest("GET", "/v1/items/7", "", ""), "bad id!") +
			strings.Replace(withID(rawRequest("GET", "/v1/menu", "", ""), "id-8"), "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1)
	}
	want := rawconntest.Exchange(t, slow.addr, pipeline(slowToken))
	got := rawconntest.Exchange(t, fast.addr, pipeline(fastToken))
	// The one request whose id the server makes: the same length, and
	// the same in its header and body.
	ids := regexp.MustCompile(`[0-9a-f]{16}`)
	if g, w := ids.ReplaceAllString(got, "ID"), ids.ReplaceAllString(want, "ID"); g != w {
		t.Fatalf("on the fast path:\n%s\nin net/http:\n%s", got, want)
	}
	r := bufio.NewReader(strings.NewReader(got))
	for i, status := range []int{503, 503, 503, 404, 503, 405, 503, 503} {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != status || status == 503 && (resp.Header.Get("Retry-After") != "1" || resp.Header.Get("Content-Type") != "application/problem+json") {
			t.Fatalf("answer %d: %d %v %s", i+1, resp.StatusCode, resp.Header, body)
		}
		if id := resp.Header.Get("X-Request-Id"); !strings.Contains(string(body), `"request_id":"`+id+`"`) {
			t.Fatalf("answer %d: id %q not in its body %s", i+1, id, body)
		}
	}
}

// Refused requests on a keep-alive connection are refused on the fast
// path, from the second on, and only when it is on.
func TestRefusalsHandTheConnectionToTheFastPath(t *testing.T) {
	for _, netHTTP := range []bool{true, false} {
		srv, _ := refusingLoopback(t, netHTTP)
		c := &rawClient{addr: srv.addr}
		for range 3 {
			if status, err := c.do(rawRequest("GET", "/v1/menu", "", "")); err != nil || status != http.StatusServiceUnavailable {
				t.Fatalf("%d %v, want 503", status, err)
			}
		}
		want := 1
		if netHTTP {
			want = 0
		}
		if n := srv.srv.FastPathConnections(); n != want {
			t.Errorf("net/http only %v: %d connections on the fast path, want %d", netHTTP, n, want)
		}
		c.close()
	}
}

// Refusals on the fast path are counted as net/http's are: by route and
// status, and by class and reason in admission's counters.
func TestFastPathRefusalsAreCounted(t *testing.T) {
	for _, netHTTP := range []bool{true, false} {
		srv, _ := refusingLoopback(t, netHTTP)
		requests := counter(t, srv.reg, "shop_http_requests_total", map[string]string{"route": "GET /v1/menu", "code": "503"})
		refused := counter(t, srv.reg, "shop_admission_refused_total", map[string]string{"class": "browsing", "reason": "limit"})
		rawconntest.Exchange(t, srv.addr, strings.Repeat(string(rawRequest("GET", "/v1/menu", "", "")), 5)+
			strings.Replace(string(rawRequest("GET", "/v1/menu", "", "")), "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1))
		if n := srv.srv.FastPathConnections(); n != 0 {
			t.Errorf("net/http only %v: %d connections left on the fast path, want 0", netHTTP, n)
		}
		if n := counter(t, srv.reg, "shop_http_requests_total", map[string]string{"route": "GET /v1/menu", "code": "503"}) - requests; n != 6 {
			t.Errorf("net/http only %v: %v refusals by route and status, want 6", netHTTP, n)
		}
		if n := counter(t, srv.reg, "shop_admission_refused_total", map[string]string{"class": "browsing", "reason": "limit"}) - refused; n != 6 {
			t.Errorf("net/http only %v: %v refusals by class, want 6", netHTTP, n)
		}
	}
}

// counter is a registered counter's value, found by its name and labels
// (0: none yet).
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := 0
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] == l.GetValue() {
					match++
				}
			}
			if match == len(labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
