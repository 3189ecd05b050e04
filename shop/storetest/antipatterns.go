package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/perfscale/perfscale/shop"
)

// BadQueriesHarness is what a store's test hands RunBadQueries: one
// database seen as the plain store and as the stores running the query
// anti-patterns (sqlstore.WithBadQueries), every statement recorded.
type BadQueriesHarness struct {
	Plain, NPlusOne, MissingIndex shop.Store
	Reset                         func()
	Queries                       func() []Query
	// UsesIndex EXPLAINs q and reports whether its plan reads a table
	// through an index.
	UsesIndex func(ctx context.Context, q Query) (bool, error)
}

// RunBadQueries holds the query anti-patterns to what they say, against
// the plain store: n-plus-one reads a cart of three items in four
// statements that read items (the plain store: one joined statement), a
// page of two orders with two statements that read lines (one) and a menu
// of n items with n+1 statements that read items (one); missing-index reads the menu and a category's
// listing with no index (the plain listing uses one); all answer the same.
// The caller seeds the catalog (enough items for the planner to prefer an
// index for a category's page).
func RunBadQueries(t *testing.T, h BadQueriesHarness) {
	ctx := context.Background()
	sess, err := h.Plain.CreateSession(ctx, "bad-queries")
	if err != nil {
		t.Fatal(err)
	}
	desk := shop.NewOrderDesk(h.Plain, nil, nil)
	for i := range 3 {
		for item := int64(1); item <= 3; item++ {
			if _, err := h.Plain.SetCartItem(ctx, sess.ID, item, i+1); err != nil {
				t.Fatal(err)
			}
		}
		if i < 2 {
			if _, _, err := desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: fmt.Sprint("k", i),
				Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A read by each store: the statements it ran and its answer.
	read := func(s shop.Store, name string, f func(s shop.Store) (any, error)) ([]string, any) {
		t.Helper()
		h.Reset()
		v, err := f(s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var qs []string
		for _, q := range h.Queries() {
			if explainable(normalizeSQL(q.SQL)) {
				qs = append(qs, normalizeSQL(q.SQL))
			}
		}
		return qs, v
	}
	count := func(qs []string, part string) int {
		n := 0
		for _, q := range qs {
			if strings.Contains(q, part) {
				n++
			}
		}
		return n
	}
	for _, tc := range []struct {
		name       string
		read       func(s shop.Store) (any, error)
		table      string
		plain, bad int // statements reading table
	}{
		{"cart", func(s shop.Store) (any, error) { return s.Cart(ctx, sess.ID) }, "FROM items", 0, 3},
		{"orders", func(s shop.Store) (any, error) { return s.ListOrders(ctx, sess.ID, shop.OrderFilter{}) }, "order_lines", 1, 2}, // plain: the page joined with its lines
		{"menu", func(s shop.Store) (any, error) { return s.Menu(ctx) }, "FROM items", 1, -1},
	} {
		plainQs, want := read(h.Plain, tc.name, tc.read)
		badQs, got := read(h.NPlusOne, tc.name, tc.read)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("n-plus-one %s answers otherwise (-plain +n-plus-one):\n%s", tc.name, diff)
		}
		bad := tc.bad
		if bad < 0 { // the menu: its ids, then each item
			m := got.(*shop.Menu)
			bad = 1
			for _, c := range m.Categories {
				bad += len(c.Items)
			}
		}
		if n := count(plainQs, tc.table); n != tc.plain {
			t.Errorf("plain %s: %d statements %s, want %d: %q", tc.name, n, tc.table, tc.plain, plainQs)
		}
		if n := count(badQs, tc.table); n != bad || bad < 2 {
			t.Errorf("n-plus-one %s: %d statements %s, want %d: %q", tc.name, n, tc.table, bad, badQs)
		}
	}

	first, err := h.Plain.ListItems(ctx, shop.ItemFilter{Limit: 1})
	if err != nil || len(first.Items) == 0 {
		t.Fatalf("list items: %v", err)
	}
	listing := func(s shop.Store) (any, error) {
		return s.ListItems(ctx, shop.ItemFilter{Category: first.Items[0].Category, After: 1, Limit: 5})
	}
	plainQs, want := read(h.Plain, "listing", listing)
	if !usesIndex(t, h, plainQueries(h, h.Plain, listing)) {
		t.Errorf("the plain category listing uses no index: %q (the check cannot tell)", plainQs)
	}
	badQs, got := read(h.MissingIndex, "listing", listing)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("missing-index listing answers otherwise (-plain +missing-index):\n%s", diff)
	}
	if usesIndex(t, h, plainQueries(h, h.MissingIndex, listing)) {
		t.Errorf("missing-index: the category listing uses an index: %q", badQs)
	}
	menu := func(s shop.Store) (any, error) { return s.Menu(ctx) }
	_, want = read(h.Plain, "menu", menu)
	_, got = read(h.MissingIndex, "menu", menu)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("missing-index menu answers otherwise:\n%s", diff)
	}
	if usesIndex(t, h, plainQueries(h, h.MissingIndex, menu)) {
		t.Error("missing-index: the menu's items are read through an index")
	}
}

// plainQueries runs read on s and returns the statements that read items.
func plainQueries(h BadQueriesHarness, s shop.Store, read func(s shop.Store) (any, error)) []Query {
	h.Reset()
	read(s) //nolint:errcheck // checked by the caller's first run
	var out []Query
	for _, q := range h.Queries() {
		if strings.Contains(normalizeSQL(q.SQL), "FROM items") {
			out = append(out, q)
		}
	}
	return out
}

// usesIndex reports whether any of qs reads through an index.
func usesIndex(t *testing.T, h BadQueriesHarness, qs []Query) bool {
	t.Helper()
	if len(qs) == 0 {
		t.Fatal("no statement read items")
	}
	for _, q := range qs {
		ok, err := h.UsesIndex(context.Background(), q)
		if err != nil {
			t.Fatalf("explain %s: %v", q.SQL, err)
		}
		if ok {
			return true
		}
	}
	return false
}
