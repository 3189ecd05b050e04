//go:build !race

// The race detector empties sync.Pools at random and instruments
// allocations: counts taken under it say nothing of the build that runs.

package httpapi_test

import (
	"bytes"
	"net/http"
	"testing"
)

// headerOnlyWriter keeps the answer's status, headers and body, reused
// from one request to the next without allocating.
type headerOnlyWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *headerOnlyWriter) Header() http.Header { return w.h }
func (w *headerOnlyWriter) WriteHeader(s int)   { w.status = s }
func (w *headerOnlyWriter) Write(b []byte) (int, error) {
	return w.body.Write(b)
}

// A refusal is written at a small part of a served request's cost: a
// replica at ten times its capacity refuses nine requests for each one
// it serves (docs/reliability.md), and a refusal that costs a ninth of an
// answer leaves it no CPU to serve. Counted in allocations (the handler's
// alone: the request is built once, and its body is never read): the
// refusal's problem was encoded by reflection after five error targets
// that each escaped to the heap, 33 allocations a refusal; 25 now, 27 allowed.
func TestARefusalAllocatesLittle(t *testing.T) {
	h, token := refusingHandler(t)

	r := cartUpdate(token)
	r.Header.Set("X-Request-Id", "refused-1")
	w := &headerOnlyWriter{h: http.Header{}}
	refuse := func() {
		clear(w.h)
		w.body.Reset()
		h.ServeHTTP(w, r)
	}
	refuse()
	if w.status != http.StatusServiceUnavailable || w.h.Get("Retry-After") != "1" || w.h.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("a cart update with the write bound held: %d %v %s, want a 503 problem with Retry-After", w.status, w.h, w.body.String())
	}
	allocs := testing.AllocsPerRun(200, refuse)
	t.Logf("%.0f allocations a refusal", allocs)
	if allocs > 27 {
		t.Errorf("a refusal made %.0f allocations, want at most 27", allocs)
	}
}
