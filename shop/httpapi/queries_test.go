package httpapi_test

import (
	"context"
	"database/sql/driver"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/perfscale/perfscale/shop"
)

// queryCounter counts the statements the store runs.
type queryCounter struct{ n atomic.Int64 }

func (c *queryCounter) hook(string, []driver.NamedValue) { c.n.Add(1) }

// during returns how many statements one request made: the least of three
// runs of it, since the hook counts every statement of the process and the
// queue's own work on the same database (River's maintenance, the outbox
// relay) can fall inside any one request, more often on a busy machine.
// A count that grows with the lines grows in every run.
func (c *queryCounter) during(t *testing.T, a *api, r req) int64 {
	t.Helper()
	least := int64(-1)
	for range 3 {
		before := c.n.Load()
		res := a.do(r)
		if res.status != http.StatusOK {
			t.Fatalf("%s %s: %d %s", r.method, r.path, res.status, res.body)
		}
		if n := c.n.Load() - before; least < 0 || n < least {
			least = n
		}
	}
	return least
}

// TestNoNPlusOne: an order with 50 lines, a cart with 50 items and a page
// of 100 own orders take as many queries as with one line, item or order.
func TestNoNPlusOne(t *testing.T) {
	var qc queryCounter
	a := newAPI(t, options{queryHook: qc.hook})
	ctx := context.Background()

	// fill puts items 1..n in the cart of the session behind token.
	fill := func(token string, n int) {
		sess, err := a.store.SessionByTokenHash(ctx, shop.HashToken(token))
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= n; i++ {
			if _, err := a.store.SetCartItem(ctx, sess.ID, int64(i), 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	cart := func(n int) req {
		tok := a.session()
		fill(tok, n)
		return req{method: "GET", path: "/v1/cart", token: tok}
	}
	// placeOrders places orders orders of lines lines each in a new
	// session; it returns the session's token and the last order's id.
	placeOrders := func(orders, lines int) (string, int64) {
		tok := a.session()
		var last int64
		for k := range orders {
			fill(tok, lines)
			r := a.checkout(tok, fmt.Sprintf("nplus1-%d", k), ada)
			if r.status != http.StatusCreated {
				t.Fatalf("checkout: %d %s", r.status, r.body)
			}
			var o shop.Order
			r.json(t, &o)
			last = o.ID
		}
		return tok, last
	}
	order := func(lines int) req {
		tok, id := placeOrders(1, lines)
		return req{method: "GET", path: fmt.Sprintf("/v1/orders/%d", id), token: tok}
	}
	orders := func(n int) req {
		tok, _ := placeOrders(n, 2)
		return req{method: "GET", path: "/v1/orders?limit=100", token: tok}
	}

	cases := []struct {
		name string
		of   func(n int) req
		many int
	}{
		{"cart", cart, 50},
		{"order lines", order, 50},
		{"page of own orders", orders, 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			one, many := tc.of(1), tc.of(tc.many)
			// Twice each: the first request may fill per-process caches
			// (sessions); the second is the steady state.
			qc.during(t, a, one)
			qc.during(t, a, many)
			n1, nMany := qc.during(t, a, one), qc.during(t, a, many)
			t.Logf("%s: %d queries with 1, %d with %d", tc.name, n1, nMany, tc.many)
			if n1 == 0 {
				t.Fatalf("%s: no query counted: the hook is not wired", tc.name)
			}
			if nMany != n1 {
				t.Errorf("%s: %d queries with %d, %d with 1: the count grows with the lines", tc.name, nMany, tc.many, n1)
			}
		})
	}
}

// TestWarmRequestsSkipTheStore: with the cache layer in front (as cmd/shop
// composes it), a warm menu, item or listing read makes no store call, and an
// authenticated read makes only its own query, not the session lookup.
func TestWarmRequestsSkipTheStore(t *testing.T) {
	var qc queryCounter
	a := newAPI(t, options{queryHook: qc.hook})
	token := a.session()
	for _, tc := range []struct {
		name string
		r    req
		want int64
	}{
		{"menu", req{method: "GET", path: "/v1/menu"}, 0},
		{"menu, gzip", req{method: "GET", path: "/v1/menu", header: map[string]string{"Accept-Encoding": "gzip"}}, 0},
		{"item", req{method: "GET", path: "/v1/items/7"}, 0},
		{"listing", req{method: "GET", path: "/v1/items?limit=20"}, 0},
		{"listing, a search in a category", req{method: "GET", path: "/v1/items?category=pizza&limit=5&q=a"}, 0},
		{"cart", req{method: "GET", path: "/v1/cart", token: token}, 1},
	} {
		qc.during(t, a, tc.r) // warms the caches
		if got := qc.during(t, a, tc.r); got != tc.want {
			t.Errorf("warm %s: %d store statements, want %d", tc.name, got, tc.want)
		}
	}
}
