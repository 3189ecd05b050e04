package scaleout

import (
	"strings"
	"testing"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
)

// A probe's 503s of two kinds (a replica's admission control, a shard
// that did not answer) are named apart, per endpoint and summed over the
// endpoints, most frequent first: one status hides two fixes.
func TestErrorsOfOneStatusAreNamedByKind(t *testing.T) {
	overloaded := load.Cause{Cause: "503 Service Unavailable", Status: 503, Count: 30,
		Kind: "the service is overloaded and refused this request before doing any of it; retry after the time in Retry-After"}
	shard := load.Cause{Cause: "503 Service Unavailable", Status: 503, Count: 4, Kind: "shard N is not answering; nothing was done"}
	typed := load.Cause{Cause: "502 Bad Gateway", Status: 502, Count: 2, Kind: "https://example.com/probs/gone", Type: "https://example.com/probs/gone"}
	p := Probe{Detail: measure.Step{Load: &load.Result{Endpoints: []load.Endpoint{
		{Name: "cart", Request: "PUT /v1/cart/items/{id}", Errors: load.EndpointErrors{Total: 25, Causes: []load.Cause{
			func() load.Cause { c := overloaded; c.Count = 20; return c }(), shard, typed}}},
		{Name: "menu", Request: "GET /v1/menu", Errors: load.EndpointErrors{Total: 10, Causes: []load.Cause{
			func() load.Cause { c := overloaded; c.Count = 10; return c }()}}},
	}}}}

	detail := errorDetail(p)
	for _, want := range []string{
		`"cart" (PUT /v1/cart/items/{id}) got 503 Service Unavailable ×20 (“the service is overloaded and refused this request before d…”), ` +
			`503 Service Unavailable ×4 (“shard N is not answering; nothing was done”), 502 Bad Gateway ×2 (type https://example.com/probs/gone)`,
		`"menu" (GET /v1/menu) got 503 Service Unavailable ×10 (“the service is overloaded`,
	} {
		if !strings.Contains(detail, want) {
			t.Errorf("errorDetail lacks %q:\n%s", want, detail)
		}
	}
	kinds := errorKinds(p, 2)
	if want := `503 Service Unavailable ×30 (“the service is overloaded and refused this request before d…”), 503 Service Unavailable ×4 (“shard N is not answering; nothing was done”), …`; kinds != want {
		t.Errorf("errorKinds = %q\nwant          %q", kinds, want)
	}
}
