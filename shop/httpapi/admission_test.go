package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/httpapi"
)

// heldOrders holds every checkout in PlaceOrder, before the store, until
// release is closed; entered receives one value per checkout held. It
// counts the checkouts that reached it: a refused one never does.
type heldOrders struct {
	shop.Ordering
	entered chan struct{}
	release chan struct{}
	placed  atomic.Int64
}

func (h *heldOrders) PlaceOrder(ctx context.Context, p shop.PlaceOrder) (*shop.Order, bool, error) {
	h.placed.Add(1)
	h.entered <- struct{}{}
	<-h.release
	return h.Ordering.PlaceOrder(ctx, p)
}

// countedCarts counts the cart calls that reached the store.
type countedCarts struct {
	shop.CartService
	calls atomic.Int64
}

func (c *countedCarts) Cart(ctx context.Context, session int64) (*shop.Cart, error) {
	c.calls.Add(1)
	return c.CartService.Cart(ctx, session)
}

func (c *countedCarts) SetCartItem(ctx context.Context, session, item int64, qty int) (*shop.Cart, error) {
	c.calls.Add(1)
	return c.CartService.SetCartItem(ctx, session, item, qty)
}

// overloadAPI is the real handler with admission control at a fixed limit
// of one request, so that one held checkout fills it.
type overloadAPI struct {
	*api
	orders *heldOrders
	carts  *countedCarts
	token  string // a session with one item in its cart
	once   sync.Once
	logs   *lockedBuffer // the handler's log
}

// releaseAll lets every held checkout, and every later one, through.
func (o *overloadAPI) releaseAll() { o.once.Do(func() { close(o.orders.release) }) }

func newOverloadAPI(t *testing.T, adm httpapi.AdmissionConfig) *overloadAPI {
	adm.On, adm.MinLimit, adm.MaxLimit, adm.InitialLimit = true, 1, 1, 1
	adm.Recalibrate = -1 // the threshold follows each request: no timing
	if adm.MaxWait == 0 {
		adm.MaxWait = time.Minute // queued requests wait for the test
	}
	o := &overloadAPI{
		orders: &heldOrders{entered: make(chan struct{}, 16), release: make(chan struct{})},
		carts:  &countedCarts{},
		logs:   &lockedBuffer{},
	}
	o.api = newAPI(t, options{
		admission: adm,
		logs:      o.logs,
		// Queued requests wait for the test, however slow the machine
		// (-race at a load of 40): not for their routes' deadlines.
		requestTimeout: 5 * time.Minute,
		orders:         func(s shop.Ordering) shop.Ordering { o.orders.Ordering = s; return o.orders },
		carts:          func(s shop.CartService) shop.CartService { o.carts.CartService = s; return o.carts },
	})
	t.Cleanup(o.releaseAll)
	o.token = o.session()
	o.add(o.token, 1, 1)
	return o
}

// async sends r in the background; the response arrives on the channel
// (status 0 and the error in the body when the request failed).
func (a *api) async(r req) <-chan response {
	ch := make(chan response, 1)
	var body io.Reader
	if s, ok := r.body.(string); ok {
		body = strings.NewReader(s)
	}
	hr, err := http.NewRequest(r.method, a.url+r.path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	go func() {
		res, err := http.DefaultClient.Do(hr)
		if err != nil {
			ch <- response{body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		ch <- response{status: res.StatusCode, header: res.Header, body: b}
	}()
	return ch
}

// holdCheckout places an order that is held inside the service (it has
// its permit) until the test ends or release is closed.
func (o *overloadAPI) holdCheckout(t *testing.T, key string) <-chan response {
	t.Helper()
	ch := o.async(req{method: "POST", path: "/v1/orders", token: o.token,
		body: `{"customer_name": "Ada Lovelace", "email": "ada@example.com"}`, header: map[string]string{"Idempotency-Key": key}})
	<-o.orders.entered
	return ch
}

// queue sends r and returns once it waits in admission's queue, which
// then holds n requests.
func (o *overloadAPI) queue(t *testing.T, r req, n int) <-chan response {
	t.Helper()
	ch := o.async(r)
	want := fmt.Sprintf("shop_admission_queued %d\n", n)
	testwait.Eventually(t, 10*time.Second, func() error {
		if m := o.metrics(); !strings.Contains(m, want) {
			return fmt.Errorf("waiting for %q in the metrics", strings.TrimSpace(want))
		}
		return nil
	})
	return ch
}

// shed checks that r was refused before any work: 503 problem+json with
// Retry-After.
func shed(t *testing.T, what string, r response) {
	t.Helper()
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" {
		t.Fatalf("%s: %d (Retry-After %q) %s, want 503 with Retry-After: 1", what, r.status, r.header.Get("Retry-After"), r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" || !bytes.Contains(r.body, []byte("before doing any of it")) {
		t.Fatalf("%s: %s %s, want the overload problem", what, ct, r.body)
	}
}

// Under a limit forced to one request, with the queue filling, browsing is
// refused first, then the cart, while checkout and order reads still wait
// for their turn; health and readiness are never refused; and every
// refused request did no work (no store call).
func TestAdmissionShedsBrowsingFirstThenTheCartAndCheckoutLast(t *testing.T) {
	// Past one queued request (ShedFrom 1), requests are refused by
	// priority; at four (ShedAll 4), all are.
	o := newOverloadAPI(t, httpapi.AdmissionConfig{ShedFrom: 1, ShedAll: 4})
	cartCalls := o.carts.calls.Load()
	held := o.holdCheckout(t, "held-1")

	// The queue: a cart read, then an order list (checkout's class).
	cart := o.queue(t, req{method: "GET", path: "/v1/cart", token: o.token}, 1)
	orders1 := o.queue(t, req{method: "GET", path: "/v1/orders", token: o.token}, 2)

	// Two queued: browsing goes, checkout's class still queues.
	shed(t, "an item with two queued", o.do(req{method: "GET", path: "/v1/items/7"}))
	orders2 := o.queue(t, req{method: "GET", path: "/v1/orders", token: o.token}, 3)

	// Three queued: the cart goes too.
	shed(t, "the menu with three queued", o.do(req{method: "GET", path: "/v1/menu"}))
	shed(t, "a cart update with three queued", o.do(req{method: "PUT", path: "/v1/cart/items/2", token: o.token, body: map[string]int{"quantity": 1}}))
	if n := o.carts.calls.Load(); n != cartCalls {
		t.Fatalf("%d cart store calls while the cart was held or refused, want none", n-cartCalls)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := o.do(req{method: "GET", path: path}); r.status != http.StatusOK {
			t.Fatalf("%s under overload: %d %s, want 200: never shed", path, r.status, r.body)
		}
	}

	m := o.metrics()
	for _, want := range []string{
		"shop_admission_limit 1\n",
		"shop_admission_in_flight 1\n",
		"shop_admission_queued 3\n",
		`shop_admission_refused_total{class="browsing",reason="limit"} 2`,
		`shop_admission_refused_total{class="cart",reason="limit"} 1`,
		`shop_admission_refused_total{class="checkout",reason="limit"} 0`,
		`shop_http_requests_total{code="503",route="GET /v1/menu"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", strings.TrimSpace(want))
		}
	}

	// The load drops: everything that waited is served, in turn.
	o.releaseAll()
	for name, ch := range map[string]<-chan response{"held checkout": held, "cart": cart, "orders 1": orders1, "orders 2": orders2} {
		if r := <-ch; r.status/100 != 2 {
			t.Errorf("%s: %d %s, want it served once the load dropped", name, r.status, r.body)
		}
	}
}

// A full queue refuses everything at once, checkout included, and the
// refused checkout never reaches the order desk: it is safe to send again,
// key or no key.
func TestAdmissionRefusesACheckoutBeforeAnyWorkWhenTheQueueIsFull(t *testing.T) {
	o := newOverloadAPI(t, httpapi.AdmissionConfig{ShedFrom: 1, ShedAll: 2})
	held := o.holdCheckout(t, "held-1")
	q1 := o.queue(t, req{method: "GET", path: "/v1/orders", token: o.token}, 1)
	q2 := o.queue(t, req{method: "GET", path: "/v1/orders", token: o.token}, 2)

	start := time.Now()
	r := o.checkout(o.token, "refused-1", ada)
	took := time.Since(start)
	shed(t, "a checkout with the queue full", r)
	if n := o.orders.placed.Load(); n != 1 {
		t.Fatalf("%d checkouts reached the order desk, want only the held one", n)
	}
	if m := o.metrics(); !strings.Contains(m, `shop_admission_refused_total{class="checkout",reason="limit"} 1`) {
		t.Fatalf("the refusal is not counted:\n%s", grepLines(m, "shop_admission"))
	}
	// The log counts it too (a line a second at most), so that a stall
	// seen from outside can be matched with the refusals by time.
	var summaries []map[string]any
	for _, l := range o.logs.records() {
		if l["msg"] == "admission refused requests" {
			summaries = append(summaries, l)
		}
	}
	if len(summaries) != 1 || summaries[0]["level"] != "WARN" || summaries[0]["checkout_limit"] != float64(1) || summaries[0]["refused"] != float64(1) {
		t.Fatalf("the log's refusal lines: %v; want one at WARN counting this checkout", summaries)
	}
	t.Logf("refused in %v (client round trip)", took)

	o.releaseAll()
	for _, ch := range []<-chan response{held, q1, q2} {
		if r := <-ch; r.status/100 != 2 {
			t.Fatalf("%d %s, want served once the load dropped", r.status, r.body)
		}
	}
	// Sent again once the load dropped, the refused checkout goes through.
	o.add(o.token, 2, 1) // the held checkout took the cart's first line
	if r := o.checkout(o.token, "refused-1", ada); r.status != http.StatusCreated {
		t.Fatalf("the refused checkout sent again: %d %s, want 201", r.status, r.body)
	}
}

// A request that waits for a slot as long as it may (its route's objective,
// here a millisecond) is dropped before any work, and counted as such.
func TestAdmissionDropsARequestThatWaitedTooLong(t *testing.T) {
	o := newOverloadAPI(t, httpapi.AdmissionConfig{ShedFrom: 10, ShedAll: 20, MaxWait: time.Millisecond})
	o.holdCheckout(t, "held-1")
	calls := o.carts.calls.Load()
	shed(t, "a cart read that waited its objective", o.do(req{method: "GET", path: "/v1/cart", token: o.token}))
	if n := o.carts.calls.Load(); n != calls {
		t.Fatalf("the dropped request called the store %d times", n-calls)
	}
	if m := o.metrics(); !strings.Contains(m, `shop_admission_refused_total{class="cart",reason="waited"} 1`) {
		t.Fatalf("the drop is not counted:\n%s", grepLines(m, "shop_admission"))
	}
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// deadlineCarts and deadlineOrders record the deadline each store call's
// context carried.
type deadlineCarts struct {
	shop.CartService
	left chan time.Duration
}

func (d *deadlineCarts) SetCartItem(ctx context.Context, session, item int64, qty int) (*shop.Cart, error) {
	d.left <- remaining(ctx)
	return d.CartService.SetCartItem(ctx, session, item, qty)
}

func (d *deadlineCarts) Cart(ctx context.Context, session int64) (*shop.Cart, error) {
	d.left <- remaining(ctx)
	return d.CartService.Cart(ctx, session)
}

type deadlineOrders struct {
	shop.Ordering
	left chan time.Duration
}

func (d *deadlineOrders) PlaceOrder(ctx context.Context, p shop.PlaceOrder) (*shop.Order, bool, error) {
	d.left <- remaining(ctx)
	return d.Ordering.PlaceOrder(ctx, p)
}

func (d *deadlineOrders) ListOrders(ctx context.Context, session int64, f shop.OrderFilter) (*shop.OrderPage, error) {
	d.left <- remaining(ctx)
	return d.Ordering.ListOrders(ctx, session, f)
}

// remaining is the time left before ctx's deadline; -1 when it has none.
func remaining(ctx context.Context) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return -1
	}
	return time.Until(d)
}

// The route's deadline (routePlan, shown in the README) reaches the store
// calls of the request: each call's context ends when the route's time is
// up, whatever the route.
func TestTheRouteDeadlineReachesTheStoreCalls(t *testing.T) {
	carts := &deadlineCarts{left: make(chan time.Duration, 64)}
	orders := &deadlineOrders{left: make(chan time.Duration, 64)}
	a := newAPI(t, options{
		carts:  func(s shop.CartService) shop.CartService { carts.CartService = s; return carts },
		orders: func(s shop.Ordering) shop.Ordering { orders.Ordering = s; return orders },
	})
	tok := a.session()
	tests := []struct {
		name     string
		send     func()
		calls    chan time.Duration
		deadline time.Duration
	}{
		{"PUT /v1/cart/items/{id}", func() { a.add(tok, 1, 1) }, carts.left, 5 * time.Second},
		{"GET /v1/cart", func() { a.do(req{method: "GET", path: "/v1/cart", token: tok}) }, carts.left, 5 * time.Second},
		{"POST /v1/orders", func() { a.checkout(tok, "deadline-1", ada) }, orders.left, 10 * time.Second},
		{"GET /v1/orders", func() { a.do(req{method: "GET", path: "/v1/orders", token: tok}) }, orders.left, 5 * time.Second},
	}
	for _, tt := range tests {
		tt.send()
		select {
		case left := <-tt.calls:
			// The call came within the route's time (on a loaded
			// machine, perhaps well within it) and no later than its end.
			if left <= 0 || left > tt.deadline {
				t.Errorf("%s: the store call had %v left, want a deadline within the route's %v", tt.name, left, tt.deadline)
			}
		default:
			t.Errorf("%s: no store call recorded", tt.name)
		}
	}
}
