package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop"
)

// heldBack refuses every checkout the way checkout's backpressure and a
// dependency's open breaker do: unavailable, nothing done.
type heldBack struct{ shop.Ordering }

func (heldBack) PlaceOrder(context.Context, shop.PlaceOrder) (*shop.Order, bool, error) {
	return nil, false, shop.Errorf(shop.EUNAVAILABLE, "orders are being confirmed more slowly than they are placed (999 waiting); nothing was done")
}

// A refusal (a 503 with Retry-After: the service protecting itself) is
// logged once, at WARN, with its cause on the request line: not at ERROR,
// and not twice (a "request failed" line and the request line, both at
// ERROR, was what a shedding replica wrote for each refused checkout). A
// 500 is still an ERROR, once.
func TestARefusalIsLoggedOnceAtWarn(t *testing.T) {
	logs := &lockedBuffer{}
	a := newAPI(t, options{logs: logs, orders: func(o shop.Ordering) shop.Ordering { return heldBack{o} }})
	tok := a.session()
	a.add(tok, 1, 1)
	var ids []string
	for k := range 3 {
		r := a.checkout(tok, fmt.Sprintf("refused-%d", k), ada)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("checkout %d: %d %s, want 503 with Retry-After", k, r.status, r.body)
		}
		ids = append(ids, r.header.Get("X-Request-Id"))
	}
	for _, id := range ids {
		lines := requestLines(t, logs, id)
		if len(lines) != 1 {
			t.Fatalf("request %s logged %d lines, want 1: %v", id, len(lines), lines)
		}
		l := lines[0]
		if l["level"] != "WARN" || l["status"] != float64(503) || !strings.Contains(fmt.Sprint(l["error"]), "confirmed more slowly") {
			t.Errorf("request line %v; want WARN, status 503 and the cause", l)
		}
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("a refusal was logged at ERROR:\n%s", logs.String())
	}
}
