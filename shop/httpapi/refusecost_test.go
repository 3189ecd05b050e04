//go:build !race

// The race detector empties sync.Pools at random and instruments
// allocations: counts taken under it say nothing of the build that runs.

package httpapi_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop/httpapi"
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
// answer leaves it no CPU to serve. Counted in allocations, the handler's
// as cmd/shop composes it (WithReplica around NewHandler; the request is
// built once, and its body is never read), with the client's request id
// and with one the handler makes: the refusal's problem was encoded by
// reflection after five error targets that each escaped to the heap, 33
// allocations a refusal (34 with WithReplica's header); then 25 (26); now
// admission comes before the request's context, deadline, recorder and
// metrics closure, the request id stays in the answer's header until a
// request is admitted, the bound allocates only for a request that
// queues, and the shared header values cover X-Replica and Content-Length.
func TestARefusalAllocatesLittle(t *testing.T) {
	inner, token := refusingHandler(t)
	h := httpapi.WithReplica("replica-1", inner)
	for _, tt := range []struct {
		name, id  string
		maxAllocs float64
	}{
		{"with the client's request id", "refused-1", 4},
		{"with a request id of its own", "", 6},
	} {
		r := cartUpdate(token)
		if tt.id != "" {
			r.Header.Set("X-Request-Id", tt.id)
		}
		w := &headerOnlyWriter{h: http.Header{}}
		refuse := func() {
			clear(w.h)
			w.body.Reset()
			h.ServeHTTP(w, r)
		}
		refuse()
		if w.status != http.StatusServiceUnavailable || w.h.Get("Retry-After") != "1" || w.h.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s: a cart update with the write bound held: %d %v %s, want a 503 problem with Retry-After", tt.name, w.status, w.h, w.body.String())
		}
		if id := w.h.Get("X-Request-Id"); id == "" || !strings.Contains(w.body.String(), `"request_id":"`+id+`"`) {
			t.Fatalf("%s: X-Request-Id %q, body %s; want the id in both", tt.name, id, w.body.String())
		}
		allocs := testing.AllocsPerRun(200, refuse)
		t.Logf("%s: %.0f allocations a refusal", tt.name, allocs)
		if allocs > tt.maxAllocs {
			t.Errorf("%s: a refusal made %.0f allocations, want at most %.0f", tt.name, allocs, tt.maxAllocs)
		}
	}
}
