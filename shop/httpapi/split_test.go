package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/httpapi"
)

// newSplitAPI is the real handler with split admission control at one
// read slot and one write slot, so that one held checkout fills the write
// bound; requests may wait maxWait for a slot, and a queue counts as
// standing (overload) from its first request.
func newSplitAPI(t *testing.T, maxWait time.Duration) *overloadAPI {
	return newOverloadAPI(t, httpapi.AdmissionConfig{Split: true, ReadSlots: 1, WriteSlots: 1, MaxWait: maxWait, Sustained: -1})
}

// With the write bound full (a checkout holds the one write slot), reads
// are served at once: one limit for both held them behind the writes.
// A write that cannot be served within its budget (here a nanosecond) is
// refused at once and never reaches the store; the same checkout sent
// again once the writer is free is placed.
func TestSplitAdmissionServesReadsWhileWritesWaitAndRefusesWritesBeforeAnyWork(t *testing.T) {
	o := newSplitAPI(t, time.Nanosecond)
	held := o.holdCheckout(t, "held-1")

	for _, path := range []string{"/v1/menu", "/v1/items/7"} {
		if r := o.do(req{method: "GET", path: path}); r.status != http.StatusOK {
			t.Fatalf("%s with the write bound full: %d %s, want 200", path, r.status, r.body)
		}
	}
	cartCalls := o.carts.calls.Load()
	if r := o.do(req{method: "GET", path: "/v1/cart", token: o.token}); r.status != http.StatusOK {
		t.Fatalf("a cart read with the write bound full: %d %s, want 200", r.status, r.body)
	}
	if n := o.carts.calls.Load() - cartCalls; n != 1 {
		t.Fatalf("the cart read made %d store calls, want 1", n)
	}

	cartCalls = o.carts.calls.Load()
	shed(t, "a cart update with the write bound full", o.do(req{method: "PUT", path: "/v1/cart/items/2", token: o.token, body: map[string]int{"quantity": 1}}))
	shed(t, "a checkout with the write bound full", o.checkout(o.token, "refused-1", ada))
	if n := o.carts.calls.Load() - cartCalls; n != 0 {
		t.Fatalf("the refused cart update made %d store calls, want none", n)
	}
	if n := o.orders.placed.Load(); n != 1 {
		t.Fatalf("%d checkouts reached the order desk, want only the held one", n)
	}
	m := o.metrics()
	for _, want := range []string{
		"shop_admission_limit 2\n",
		"shop_admission_in_flight 1\n",
		"shop_admission_queued 0\n",
		`shop_admission_refused_total{class="cart",reason="limit"} 1`,
		`shop_admission_refused_total{class="checkout",reason="limit"} 1`,
		`shop_admission_refused_total{class="browsing",reason="limit"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", strings.TrimSpace(want), grepLines(m, "shop_admission"))
		}
	}

	o.releaseAll()
	if r := <-held; r.status != http.StatusCreated {
		t.Fatalf("the held checkout: %d %s, want 201", r.status, r.body)
	}
	o.add(o.token, 2, 1) // the held checkout took the cart's first line
	if r := o.checkout(o.token, "refused-1", ada); r.status != http.StatusCreated {
		t.Fatalf("the refused checkout sent again: %d %s, want 201", r.status, r.body)
	}
}

// Writes waiting for the writer are served by class: a checkout that came
// after a cart update gets the write slot first.
func TestSplitAdmissionServesAWaitingCheckoutBeforeAnEarlierCartUpdate(t *testing.T) {
	o := newSplitAPI(t, time.Minute)
	other := o.session()
	o.add(other, 3, 1)
	held := o.holdCheckout(t, "held-1")
	cartCalls := o.carts.calls.Load()
	cart := o.queue(t, req{method: "PUT", path: "/v1/cart/items/2", token: o.token, body: `{"quantity": 1}`}, 1)
	checkout := o.queue(t, req{method: "POST", path: "/v1/orders", token: other,
		body: `{"customer_name": "Ada Lovelace", "email": "ada@example.com"}`, header: map[string]string{"Idempotency-Key": "second-1"}}, 2)

	o.orders.release <- struct{}{} // the held checkout finishes
	if r := <-held; r.status != http.StatusCreated {
		t.Fatalf("the held checkout: %d %s, want 201", r.status, r.body)
	}
	<-o.orders.entered // the later checkout holds the write slot now
	if n := o.carts.calls.Load() - cartCalls; n != 0 {
		t.Fatalf("the earlier cart update reached the store (%d calls) before the checkout", n)
	}
	if m := o.metrics(); !strings.Contains(m, "shop_admission_queued 1\n") {
		t.Fatalf("want the cart update still queued:\n%s", grepLines(m, "shop_admission"))
	}

	o.releaseAll()
	if r := <-checkout; r.status != http.StatusCreated {
		t.Fatalf("the later checkout: %d %s, want 201", r.status, r.body)
	}
	if r := <-cart; r.status != http.StatusOK {
		t.Fatalf("the cart update: %d %s, want 200 once the writer was free", r.status, r.body)
	}
}

// panickingOrders panics in PlaceOrder, as a defect would.
type panickingOrders struct{ shop.Ordering }

func (panickingOrders) PlaceOrder(context.Context, shop.PlaceOrder) (*shop.Order, bool, error) {
	panic("a defect in the order desk")
}

// A request that panics returns its slot, whichever policy admitted it:
// with one slot, the requests after it are served, not refused for good.
func TestAdmissionGetsTheSlotBackFromAPanic(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  httpapi.AdmissionConfig
	}{
		{"split", httpapi.AdmissionConfig{On: true, Split: true, ReadSlots: 1, WriteSlots: 1, MaxWait: time.Nanosecond}},
		{"adaptive", httpapi.AdmissionConfig{On: true, MinLimit: 1, MaxLimit: 1, InitialLimit: 1, MaxWait: time.Nanosecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAPI(t, options{
				admission: tc.cfg,
				orders:    func(s shop.Ordering) shop.Ordering { return panickingOrders{s} },
			})
			tok := a.session()
			a.add(tok, 1, 1)
			// Sent past the test client's OpenAPI check: the document lists no 500.
			r := <-a.async(req{method: "POST", path: "/v1/orders", token: tok,
				body: `{"customer_name": "Ada Lovelace", "email": "ada@example.com"}`, header: map[string]string{"Idempotency-Key": "panics-1"}})
			if r.status != http.StatusInternalServerError {
				t.Fatalf("the panicking checkout: %d %s, want 500", r.status, r.body)
			}
			for i := range 3 {
				if r := a.do(req{method: "PUT", path: "/v1/cart/items/2", token: tok, body: map[string]int{"quantity": 1}}); r.status != http.StatusOK {
					t.Fatalf("cart update %d after the panic: %d %s, want 200", i+1, r.status, r.body)
				}
			}
		})
	}
}
