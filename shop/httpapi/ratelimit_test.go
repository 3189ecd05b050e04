package httpapi_test

import (
	"net/netip"
	"strconv"
	"testing"

	"github.com/perfscale/perfscale/shop/httpapi"
)

// Session creation is limited per client address with a token bucket;
// the refusal is a 429 problem with Retry-After, and health and readiness
// are never limited. The rate is one token per 1000 s, so no token comes
// back while the test runs, however slow the machine.
func TestSessionCreationIsRateLimitedPerClient(t *testing.T) {
	a := newAPI(t, options{sessionLimit: httpapi.SessionLimit{Rate: 0.001, Burst: 3}})
	for range 3 {
		a.session()
	}
	r := a.do(req{method: "POST", path: "/v1/sessions"})
	r.problem(t, 429)
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q, want whole seconds", r.header.Get("Retry-After"))
	}
	// Headers claiming another client are not believed from an untrusted peer.
	a.do(req{method: "POST", path: "/v1/sessions", header: map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"}}).problem(t, 429)
	for range 20 {
		for _, path := range []string{"/healthz", "/readyz"} {
			if r := a.do(req{method: "GET", path: path}); r.status != 200 {
				t.Fatalf("%s while sessions are limited: %d", path, r.status)
			}
		}
	}
}

// Behind a trusted proxy every connection comes from the proxy; the
// client is the address the proxy appended to X-Forwarded-For, so one
// client's flood does not lock out another's.
func TestSessionLimitBehindATrustedProxy(t *testing.T) {
	a := newAPI(t, options{
		sessionLimit:   httpapi.SessionLimit{Rate: 0.001, Burst: 2},
		trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	from := func(xff string) map[string]string { return map[string]string{"X-Forwarded-For": xff} }
	for range 2 {
		if r := a.do(req{method: "POST", path: "/v1/sessions", header: from("203.0.113.9")}); r.status != 201 {
			t.Fatalf("session: %d %s", r.status, r.body)
		}
	}
	a.do(req{method: "POST", path: "/v1/sessions", header: from("203.0.113.9")}).problem(t, 429)
	// A forged left-most entry does not help: the proxy's own entry (the
	// right-most) names the client.
	a.do(req{method: "POST", path: "/v1/sessions", header: from("198.51.100.1, 203.0.113.9")}).problem(t, 429)
	if r := a.do(req{method: "POST", path: "/v1/sessions", header: from("203.0.113.10")}); r.status != 201 {
		t.Fatalf("another client behind the proxy: %d %s", r.status, r.body)
	}
}
