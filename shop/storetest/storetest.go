// Package storetest is the contract every shop.Store implementation must
// keep: one suite, run against each adapter (SQLite now, PostgreSQL later),
// so their behaviour cannot drift apart.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/seed"
)

// Factory returns a new, empty store holding exactly items, whose clock is
// now (nil: the wall clock). It registers its own cleanup with t.
type Factory func(t *testing.T, items []shop.Item, now func() time.Time) shop.Store

// Run runs the whole contract against stores from newStore; setNotes
// writes through the stores' transactions (see TxWriter).
func Run(t *testing.T, newStore Factory, setNotes TxWriter) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newStore Factory)
	}{
		{"MenuListsAvailableItemsByCategory", testMenu},
		{"MenuVersionChangesWithTheMenu", testMenuVersion},
		{"ItemByID", testItem},
		{"ItemsTogether", testItems},
		{"ListItemsPagesWithoutGapsOrRepeats", testListItemsPaging},
		{"ListItemsFilters", testListItemsFilters},
		{"UpdateItem", testUpdateItem},
		{"Sessions", testSessions},
		{"Cart", testCart},
		{"CartLineLimit", testCartLineLimit},
		{"PlaceOrder", testPlaceOrder},
		{"PlaceOrderRepricesAtCheckout", testPlaceOrderReprices},
		{"PlaceOrderRefusesATotalTheCustomerDidNotSee", testPlaceOrderChangedTotal},
		{"PlaceOrderIdempotency", testPlaceOrderIdempotency},
		{"PlaceOrderOutOfStockChangesNothing", testPlaceOrderOutOfStock},
		{"PlaceOrderSaysWhenItSoldOut", testPlaceOrderSoldOut},
		{"PlaceOrderRejectsBadInput", testPlaceOrderBadInput},
		{"OrdersAreOwnersOnly", testOrdersOwnerOnly},
		{"ListOrdersNewestFirst", testListOrders},
		{"OrderEventsOutbox", testOrderEventsOutbox},
		{"SessionsExpireByTheStoresClock", testSessionExpiry},
		{"IdempotencyKeysExpireByTheStoresClock", testIdempotencyKeyExpiry},
		{"WorkerMethods", testWorkerMethods},
		{"ConfirmOrderIsOneTransaction", func(t *testing.T, newStore Factory) { testConfirmOrder(t, newStore, setNotes) }},
		{"MarkOrderReadyAtOnce", testMarkOrderReadyAtOnce},
		{"ConfirmOrderAtOnce", testConfirmOrderAtOnce},
		{"ExpiredSessionsArePruned", testSessionPruning},
		{"FiftyConcurrentCheckoutsOfFiveUnits", testFiftyCheckoutsOfFiveUnits},
		{"FiftyConcurrentCheckoutsWithOneKey", testFiftyCheckoutsOneKey},
		{"OneKeyInTwoSessionsNeverCrosses", testOneKeyTwoSessions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each case has a store of its own, so they may overlap; a
			// PostgreSQL case spends most of its time making its database.
			t.Parallel()
			tt.fn(t, newStore)
		})
	}
}

// items returns n seeded items; the first has only stock units in stock.
func items(n int) []shop.Item { return seed.Items(n) }

// StockReader is a store whose item pages show a stock figure that may
// lag (a sharded store's stock is quotas on several servers, summed in
// the background): the contract reads the exact stock through it.
type StockReader interface {
	TotalStock(ctx context.Context, itemID int64) (int64, error)
}

// stockOf is item id's exact stock: TotalStock where the store has it,
// else the item's own figure.
func stockOf(t *testing.T, s shop.Store, id int64) int64 {
	t.Helper()
	if r, ok := s.(StockReader); ok {
		return must(r.TotalStock(context.Background(), id))(t)
	}
	return must(s.Item(context.Background(), id))(t).Stock
}

func newSession(t *testing.T, s shop.Store) int64 {
	t.Helper()
	_, hash := shop.NewToken()
	sess, err := s.CreateSession(context.Background(), hash)
	if err != nil {
		t.Fatalf("create session: %v", err)
	}
	return sess.ID
}

// must(f())(t) fails t if f failed, else returns f's value.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := shop.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func ptr[T any](v T) *T { return &v }

func checkout() shop.Checkout {
	return shop.Checkout{CustomerName: "Ada Lovelace", Email: "ada@example.com"}
}

func place(ctx context.Context, s shop.Store, session int64, key string) (*shop.Order, bool, error) {
	c := checkout()
	return shop.NewOrderDesk(s, nil, nil).PlaceOrder(ctx, shop.PlaceOrder{SessionID: session, IdempotencyKey: key, Checkout: c})
}

func testMenu(t *testing.T, newStore Factory) {
	ctx := context.Background()
	its := items(30)
	its[0].Available = false
	its[1].Stock = 0
	s := newStore(t, its, nil)
	m := must(s.Menu(ctx))(t)
	got := map[int64]string{}
	for _, c := range m.Categories {
		if len(c.Items) == 0 {
			t.Errorf("category %q is empty", c.Name)
		}
		for _, it := range c.Items {
			if it.Category != c.Name || !it.Available {
				t.Errorf("item %+v is in category %q", it, c.Name)
			}
			got[it.ID] = it.Name
		}
	}
	want := map[int64]string{}
	for _, it := range its[2:] {
		want[it.ID] = it.Name
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("menu items (-want +got):\n%s", diff)
	}
	if len(m.Categories) != len(seed.Categories) {
		t.Errorf("menu has %d categories, want %d", len(m.Categories), len(seed.Categories))
	}
}

func testMenuVersion(t *testing.T, newStore Factory) {
	ctx := context.Background()
	its := items(12)
	its[0].Stock = 1
	s := newStore(t, its, nil)
	v0 := must(s.CatalogVersion(ctx))(t)
	if m := must(s.Menu(ctx))(t); m.Version != v0 {
		t.Fatalf("menu version %d, catalog version %d", m.Version, v0)
	}
	sess := newSession(t, s)
	must(s.SetCartItem(ctx, sess, its[1].ID, 1))(t)
	must(s.Menu(ctx))(t)
	if v := must(s.CatalogVersion(ctx))(t); v != v0 {
		t.Fatalf("adding to a cart changed the catalog version %d -> %d", v0, v)
	}
	// Selling an item that does not sell out leaves the menu as it was.
	if _, _, err := place(ctx, s, sess, "k1"); err != nil {
		t.Fatal(err)
	}
	if v := must(s.CatalogVersion(ctx))(t); v != v0 {
		t.Fatalf("a sale that changed no menu entry changed the version %d -> %d", v0, v)
	}
	// Selling the last unit takes the item off the menu: new version.
	must(s.SetCartItem(ctx, sess, its[0].ID, 1))(t)
	if _, _, err := place(ctx, s, sess, "k2"); err != nil {
		t.Fatal(err)
	}
	v1 := must(s.CatalogVersion(ctx))(t)
	if v1 == v0 {
		t.Fatal("selling out an item did not change the catalog version")
	}
	must(s.UpdateItem(ctx, its[2].ID, shop.ItemUpdate{PriceCents: ptr(int64(999))}))(t)
	v2 := must(s.CatalogVersion(ctx))(t)
	if v2 == v1 {
		t.Fatal("an admin price change did not change the catalog version")
	}
	m := must(s.Menu(ctx))(t)
	if m.Version != v2 {
		t.Fatalf("menu version %d, want %d", m.Version, v2)
	}
	for _, c := range m.Categories {
		for _, it := range c.Items {
			if it.ID == its[0].ID {
				t.Error("a sold-out item is still on the menu")
			}
			if it.ID == its[2].ID && it.PriceCents != 999 {
				t.Errorf("menu price %d after the admin change, want 999", it.PriceCents)
			}
		}
	}
}

func testItem(t *testing.T, newStore Factory) {
	ctx := context.Background()
	its := items(3)
	its[2].Available = false
	s := newStore(t, its, nil)
	got := must(s.Item(ctx, 3))(t)
	if got.Name != its[2].Name || got.Available || stockOf(t, s, 3) != its[2].Stock || got.PriceCents != its[2].PriceCents {
		t.Errorf("item 3 = %+v, want %+v", got, its[2])
	}
	_, err := s.Item(ctx, 4)
	wantCode(t, err, shop.ENOTFOUND)
}

// testItems: the items among the ids asked for, in id order, once each,
// past the thousand ids a statement takes; absent ids left out.
func testItems(t *testing.T, newStore Factory) {
	ctx := context.Background()
	const n = 1003
	its := items(n)
	its[4].Available = false
	s := newStore(t, its, nil)
	ids := []int64{n + 7, 2}
	for id := int64(n); id >= 1; id-- {
		ids = append(ids, id)
	}
	got := must(s.Items(ctx, ids))(t)
	if len(got) != n {
		t.Fatalf("%d items for %d ids, %d of them existing once each", len(got), len(ids), n)
	}
	for i, it := range got {
		if it.ID != int64(i+1) {
			t.Fatalf("item %d is id %d, want %d (id order)", i, it.ID, i+1)
		}
	}
	for _, id := range []int64{1, 5, n} {
		one := must(s.Item(ctx, id))(t)
		if got[id-1] != *one {
			t.Errorf("item %d read together = %+v, alone = %+v", id, got[id-1], *one)
		}
	}
	if none := must(s.Items(ctx, nil))(t); len(none) != 0 {
		t.Errorf("no ids gave %d items", len(none))
	}
}

func testListItemsPaging(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t, items(50), nil)
	var ids []int64
	f := shop.ItemFilter{Limit: 7}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		p := must(s.ListItems(ctx, f))(t)
		if len(p.Items) > 7 {
			t.Fatalf("page of %d items, limit 7", len(p.Items))
		}
		for _, it := range p.Items {
			ids = append(ids, it.ID)
		}
		if p.Next == 0 {
			break
		}
		f.After = p.Next
	}
	if len(ids) != 50 || !sort.SliceIsSorted(ids, func(i, j int) bool { return ids[i] < ids[j] }) {
		t.Fatalf("paged ids = %v", ids)
	}
	for i, id := range ids {
		if id != int64(i+1) {
			t.Fatalf("paged ids have a gap or repeat at %d: %v", i, ids)
		}
	}
	// A page that ends exactly at the last item says there is no next page.
	p := must(s.ListItems(ctx, shop.ItemFilter{Limit: 10, After: 40}))(t)
	if len(p.Items) != 10 || p.Next != 0 {
		t.Fatalf("last full page: %d items, next %d", len(p.Items), p.Next)
	}
}

func testListItemsFilters(t *testing.T, newStore Factory) {
	ctx := context.Background()
	its := items(60)
	its[5].Name = "100% Juice_Box"
	s := newStore(t, its, nil)
	tests := []struct {
		name   string
		filter shop.ItemFilter
		want   func(shop.Item) bool
	}{
		{"category", shop.ItemFilter{Category: "pizza"}, func(it shop.Item) bool { return it.Category == "pizza" }},
		{"query is a case-insensitive substring", shop.ItemFilter{Query: "SPICY"}, func(it shop.Item) bool { return contains(it.Name, "spicy") }},
		{"category and query", shop.ItemFilter{Category: "soups", Query: "classic"}, func(it shop.Item) bool {
			return it.Category == "soups" && contains(it.Name, "classic")
		}},
		{"percent is literal", shop.ItemFilter{Query: "100%"}, func(it shop.Item) bool { return it.ID == 6 }},
		{"underscore is literal", shop.ItemFilter{Query: "e_b"}, func(it shop.Item) bool { return it.ID == 6 }},
		{"no match", shop.ItemFilter{Category: "nonexistent"}, func(shop.Item) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.filter
			f.Limit = shop.MaxPageSize
			p := must(s.ListItems(ctx, f))(t)
			var got, want []int64
			for _, it := range p.Items {
				got = append(got, it.ID)
			}
			for _, it := range its {
				if tt.want(it) {
					want = append(want, it.ID)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
	_, err := s.ListItems(ctx, shop.ItemFilter{Limit: shop.MaxPageSize + 1})
	wantCode(t, err, shop.EINVALID)
}

func contains(s, sub string) bool {
	return len(sub) == 0 || indexFold(s, sub) >= 0
}

func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if equalFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

func equalFold(a, b string) bool {
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func testUpdateItem(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t, items(3), nil)
	got := must(s.UpdateItem(ctx, 2, shop.ItemUpdate{PriceCents: ptr(int64(1234)), Stock: ptr(int64(7)), Available: ptr(false)}))(t)
	if got.PriceCents != 1234 || got.Stock != 7 || got.Available {
		t.Fatalf("updated item = %+v", got)
	}
	// Fields left out stay as they were.
	got = must(s.UpdateItem(ctx, 2, shop.ItemUpdate{Available: ptr(true)}))(t)
	if got.PriceCents != 1234 || got.Stock != 7 || !got.Available {
		t.Fatalf("partly updated item = %+v", got)
	}
	if read := must(s.Item(ctx, 2))(t); read.PriceCents != 1234 {
		t.Fatalf("read back price %d", read.PriceCents)
	}
	_, err := s.UpdateItem(ctx, 9, shop.ItemUpdate{Stock: ptr(int64(1))})
	wantCode(t, err, shop.ENOTFOUND)
	_, err = s.UpdateItem(ctx, 2, shop.ItemUpdate{PriceCents: ptr(int64(-1))})
	wantCode(t, err, shop.EINVALID)
	if read := must(s.Item(ctx, 2))(t); read.PriceCents != 1234 {
		t.Fatalf("a rejected update changed the price to %d", read.PriceCents)
	}
}

func testSessions(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t, items(1), nil)
	_, hash := shop.NewToken()
	created := must(s.CreateSession(ctx, hash))(t)
	if created.ID == 0 || !created.ExpiresAt.After(created.CreatedAt) {
		t.Fatalf("session = %+v", created)
	}
	got := must(s.SessionByTokenHash(ctx, hash))(t)
	if got.ID != created.ID {
		t.Fatalf("session by hash = %d, want %d", got.ID, created.ID)
	}
	_, other := shop.NewToken()
	_, err := s.SessionByTokenHash(ctx, other)
	wantCode(t, err, shop.EUNAUTHORIZED)
	if _, err := s.CreateSession(ctx, hash); err == nil {
		t.Fatal("a second session with the same token hash was created")
	}
}

func testCart(t *testing.T, newStore Factory) {
	ctx := context.Background()
	its := items(4)
	its[3].Available = false
	s := newStore(t, its, nil)
	a, b := newSession(t, s), newSession(t, s)
	if c := must(s.Cart(ctx, a))(t); len(c.Lines) != 0 || c.TotalCents != 0 {
		t.Fatalf("new cart = %+v", c)
	}
	must(s.SetCartItem(ctx, a, 2, 3))(t)
	c := must(s.SetCartItem(ctx, a, 1, 1))(t)
	want := &shop.Cart{Lines: []shop.CartLine{
		{ItemID: 1, Name: its[0].Name, Quantity: 1, UnitPriceCents: its[0].PriceCents, LineTotalCents: its[0].PriceCents},
		{ItemID: 2, Name: its[1].Name, Quantity: 3, UnitPriceCents: its[1].PriceCents, LineTotalCents: 3 * its[1].PriceCents},
	}, TotalCents: its[0].PriceCents + 3*its[1].PriceCents}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Fatalf("cart (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, must(s.Cart(ctx, a))(t)); diff != "" {
		t.Fatalf("cart read back (-want +got):\n%s", diff)
	}
	// Setting a quantity replaces it; 0 removes the line.
	c = must(s.SetCartItem(ctx, a, 2, 5))(t)
	if c.Lines[1].Quantity != 5 {
		t.Fatalf("quantity after update = %d", c.Lines[1].Quantity)
	}
	c = must(s.SetCartItem(ctx, a, 1, 0))(t)
	if len(c.Lines) != 1 || c.Lines[0].ItemID != 2 {
		t.Fatalf("cart after removing item 1 = %+v", c)
	}
	// Carts are per session.
	if c := must(s.Cart(ctx, b))(t); len(c.Lines) != 0 {
		t.Fatalf("session b sees session a's cart: %+v", c)
	}
	_, err := s.SetCartItem(ctx, a, 99, 1)
	wantCode(t, err, shop.ENOTFOUND)
	_, err = s.SetCartItem(ctx, a, 4, 1)
	wantCode(t, err, shop.ECONFLICT)
	_, err = s.SetCartItem(ctx, a, 1, shop.MaxQuantity+1)
	wantCode(t, err, shop.EINVALID)
	_, err = s.SetCartItem(ctx, a, 1, -1)
	wantCode(t, err, shop.EINVALID)
	if c := must(s.Cart(ctx, a))(t); len(c.Lines) != 1 || c.Lines[0].Quantity != 5 {
		t.Fatalf("rejected changes changed the cart: %+v", c)
	}
	if err := s.ClearCart(ctx, a); err != nil {
		t.Fatal(err)
	}
	if c := must(s.Cart(ctx, a))(t); len(c.Lines) != 0 {
		t.Fatalf("cart after clear = %+v", c)
	}
}

func testCartLineLimit(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t, items(shop.MaxCartLines+1), nil)
	sess := newSession(t, s)
	for id := int64(1); id <= shop.MaxCartLines; id++ {
		must(s.SetCartItem(ctx, sess, id, 1))(t)
	}
	_, err := s.SetCartItem(ctx, sess, shop.MaxCartLines+1, 1)
	wantCode(t, err, shop.EUNPROCESSABLE)
	// Changing a line already in a full cart is still allowed.
	must(s.SetCartItem(ctx, sess, 1, 2))(t)
}

func testPlaceOrder(t *testing.T, newStore Factory) {
	ctx := context.Background()
	its := items(3)
	s := newStore(t, its, nil)
	sess := newSession(t, s)
	must(s.SetCartItem(ctx, sess, 1, 2))(t)
	must(s.SetCartItem(ctx, sess, 3, 1))(t)
	o, created, err := place(ctx, s, sess, "order-1")
	if err != nil || !created {
		t.Fatalf("place order: created %v, err %v", created, err)
	}
	wantTotal := 2*its[0].PriceCents + its[2].PriceCents
	if o.ID == 0 || o.Status != shop.StatusPlaced || o.TotalCents != wantTotal || len(o.Lines) != 2 ||
		o.CustomerName != "Ada Lovelace" || o.Email != "ada@example.com" {
		t.Fatalf("order = %+v, want total %d", o, wantTotal)
	}
	if c := must(s.Cart(ctx, sess))(t); len(c.Lines) != 0 {
		t.Fatalf("cart after checkout = %+v", c)
	}
	if got := stockOf(t, s, 1); got != its[0].Stock-2 {
		t.Fatalf("stock after checkout = %d, want %d", got, its[0].Stock-2)
	}
	read := must(s.Order(ctx, sess, o.ID))(t)
	if diff := cmp.Diff(o, read); diff != "" {
		t.Fatalf("order read back (-placed +read):\n%s", diff)
	}
	_, _, err = place(ctx, s, sess, "order-2")
	if !errors.Is(err, shop.ErrCartEmpty) {
		t.Fatalf("checkout of an empty cart: %v, want ErrCartEmpty", err)
	}
}

func testPlaceOrderReprices(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t, items(2), nil)
	sess := newSession(t, s)
	must(s.SetCartItem(ctx, sess, 1, 2))(t)
	must(s.UpdateItem(ctx, 1, shop.ItemUpdate{PriceCents: ptr(int64(777))}))(t)
	o, _, err := place(ctx, s, sess, "k")
	if err != nil {
		t.Fatal(err)
	}
	if o.Lines[0].UnitPriceCents != 777 || o.TotalCents != 1554 {
		t.Fatalf("order priced %+v, want the price at checkout (777)", o)
	}
	// History keeps the price paid.
	must(s.UpdateItem(ctx, 1, shop.ItemUpdate{PriceCents: ptr(int64(100))}))(t)
	if read := must(s.Order(ctx, sess, o.ID))(t); read.TotalCents != 1554 {
		t.Fatalf("a later price change rewrote the order: %+v", read)
	}
}

func testPlaceOrderChangedTotal(t *testing.T, newStore Factory) {
	ctx := context.Background()
	its := items(2)
	s := newStore(t, its, nil)
	sess := newSession(t, s)
	seen := must(s.SetCartItem(ctx, sess, 1, 2))(t).TotalCents
	must(s.UpdateItem(ctx, 1, shop.ItemUpdate{PriceCents: ptr(its[0].PriceCents * 1000)}))(t)
	c := checkout()
	c.ExpectedTotalCents = &seen
	orders := shop.NewOrderDesk(s, nil, nil)
	_, _, err := orders.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess, IdempotencyKey: "k", Checkout: c})
	var changed *shop.PriceChangedError
	if !errors.As(err, &changed) {
		t.Fatalf("checkout with the total seen before a price rise: %v, want PriceChangedError", err)
	}
	wantCode(t, err, shop.ECONFLICT)
	now := must(s.Cart(ctx, sess))(t)
	if diff := cmp.Diff(now, changed.Cart); diff != "" || changed.Expected != seen {
		t.Fatalf("the refusal carries cart (-now +carried):\n%s expected %d", diff, changed.Expected)
	}
	if len(now.Lines) != 1 || now.TotalCents != 2*its[0].PriceCents*1000 {
		t.Fatalf("a refused checkout changed the cart: %+v", now)
	}
	if got := stockOf(t, s, 1); got != its[0].Stock {
		t.Fatalf("a refused checkout reserved stock: %d, want %d", got, its[0].Stock)
	}
	if p := must(s.ListOrders(ctx, sess, shop.OrderFilter{}))(t); len(p.Orders) != 0 {
		t.Fatalf("a refused checkout ordered: %+v", p.Orders)
	}
	// The customer saw the new total: the same key now orders at it.
	c.ExpectedTotalCents = &now.TotalCents
	o, created, err := orders.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess, IdempotencyKey: "k", Checkout: c})
	if err != nil || !created || o.TotalCents != now.TotalCents {
		t.Fatalf("checkout with the new total: %+v created %v err %v", o, created, err)
	}
	// Without a total (an older client) checkout takes the current prices.
	must(s.SetCartItem(ctx, sess, 2, 1))(t)
	if _, _, err := place(ctx, s, sess, "k2"); err != nil {
		t.Fatalf("checkout without expected_total_cents: %v", err)
	}
}

func testPlaceOrderIdempotency(t *testing.T, newStore Factory) {
	ctx := context.Background()
	its := items(2)
	s := newStore(t, its, nil)
	a, b := newSession(t, s), newSession(t, s)
	must(s.SetCartItem(ctx, a, 1, 1))(t)
	first, created, err := place(ctx, s, a, "same-key")
	if err != nil || !created {
		t.Fatalf("first checkout: created %v, err %v", created, err)
	}
	// A retry returns the same order, even though the cart is now empty.
	again, created, err := place(ctx, s, a, "same-key")
	if err != nil || created {
		t.Fatalf("retry: created %v, err %v", created, err)
	}
	if diff := cmp.Diff(first, again); diff != "" {
		t.Fatalf("retry returned another order (-first +retry):\n%s", diff)
	}
	// The same key with another body is refused, and changes nothing.
	must(s.SetCartItem(ctx, a, 2, 1))(t)
	other := shop.Checkout{CustomerName: "Someone Else", Email: "else@example.com"}
	_, _, err = shop.NewOrderDesk(s, nil, nil).PlaceOrder(ctx, shop.PlaceOrder{SessionID: a, IdempotencyKey: "same-key", Checkout: other})
	if !errors.Is(err, shop.ErrIdempotencyMismatch) {
		t.Fatalf("same key, other body: %v, want ErrIdempotencyMismatch", err)
	}
	wantCode(t, err, shop.EUNPROCESSABLE)
	if c := must(s.Cart(ctx, a))(t); len(c.Lines) != 1 {
		t.Fatalf("a refused checkout changed the cart: %+v", c)
	}
	// Keys are scoped to the session: another session may use the same key.
	must(s.SetCartItem(ctx, b, 1, 1))(t)
	ob, created, err := place(ctx, s, b, "same-key")
	if err != nil || !created || ob.ID == first.ID {
		t.Fatalf("other session, same key: order %v created %v err %v", ob, created, err)
	}
	page := must(s.ListOrders(ctx, a, shop.OrderFilter{}))(t)
	if len(page.Orders) != 1 {
		t.Fatalf("session a has %d orders, want 1", len(page.Orders))
	}
}

func testPlaceOrderOutOfStock(t *testing.T, newStore Factory) {
	ctx := context.Background()
	its := items(3)
	its[0].Stock = 1
	its[2].Stock = 2
	s := newStore(t, its, nil)
	sess := newSession(t, s)
	must(s.SetCartItem(ctx, sess, 1, 2))(t)
	must(s.SetCartItem(ctx, sess, 2, 1))(t)
	must(s.SetCartItem(ctx, sess, 3, 5))(t)
	must(s.UpdateItem(ctx, 2, shop.ItemUpdate{Available: ptr(false)}))(t)
	_, _, err := place(ctx, s, sess, "k")
	var oos *shop.OutOfStockError
	if !errors.As(err, &oos) {
		t.Fatalf("err = %v, want OutOfStockError", err)
	}
	wantCode(t, err, shop.ECONFLICT)
	want := []shop.Shortage{
		{ItemID: 1, Name: its[0].Name, Requested: 2, Available: 1},
		{ItemID: 2, Name: its[1].Name, Requested: 1, Available: 0},
		{ItemID: 3, Name: its[2].Name, Requested: 5, Available: 2},
	}
	if diff := cmp.Diff(want, oos.Items); diff != "" {
		t.Fatalf("shortages (-want +got):\n%s", diff)
	}
	for i, it := range its {
		if got := stockOf(t, s, it.ID); got != it.Stock {
			t.Errorf("item %d stock %d after a failed checkout, want %d", i+1, got, it.Stock)
		}
	}
	if c := must(s.Cart(ctx, sess))(t); len(c.Lines) != 3 {
		t.Fatalf("a failed checkout changed the cart: %+v", c)
	}
	if p := must(s.ListOrders(ctx, sess, shop.OrderFilter{}))(t); len(p.Orders) != 0 {
		t.Fatalf("a failed checkout left %d orders", len(p.Orders))
	}
	// The key was not used up: the client can fix the cart and retry with it.
	must(s.SetCartItem(ctx, sess, 1, 1))(t)
	must(s.SetCartItem(ctx, sess, 2, 0))(t)
	must(s.SetCartItem(ctx, sess, 3, 2))(t)
	if _, _, err := place(ctx, s, sess, "k"); err != nil {
		t.Fatalf("retry after fixing the cart: %v", err)
	}
}

// testPlaceOrderSoldOut: an order placed says whether it took the last of
// an item's stock, and so whether the menu's version may have moved: a
// cache reads the version again only then. A store whose stock is quotas
// on several shards (a StockReader) says so when a shard's quota ran out.
func testPlaceOrderSoldOut(t *testing.T, newStore Factory) {
	ctx := context.Background()
	its := items(2)
	its[1].Stock = 3
	s := newStore(t, its, nil)
	_, quotas := s.(StockReader)
	sess := newSession(t, s)
	for i, sell := range []int{1, 2} {
		v0 := must(s.CatalogVersion(ctx))(t)
		must(s.SetCartItem(ctx, sess, 2, sell))(t)
		o, created, err := place(ctx, s, sess, fmt.Sprint("k", i))
		if err != nil || !created {
			t.Fatalf("checkout %d: created %v, %v", i+1, created, err)
		}
		moved := must(s.CatalogVersion(ctx))(t) != v0
		last := i == 1
		switch {
		case (moved || last) && !o.SoldOut:
			t.Errorf("checkout %d (%d of item 2, the last %v, the version moved %v) does not say SoldOut", i+1, sell, last, moved)
		case !moved && !last && !quotas && o.SoldOut:
			t.Errorf("checkout %d (%d of item 2, 3 in stock) says SoldOut", i+1, sell)
		}
		if back := must(s.Order(ctx, sess, o.ID))(t); back.SoldOut {
			t.Errorf("checkout %d: an order read back says SoldOut", i+1)
		}
	}
}

func testPlaceOrderBadInput(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t, items(1), nil)
	sess := newSession(t, s)
	must(s.SetCartItem(ctx, sess, 1, 1))(t)
	tests := []struct {
		name string
		p    shop.PlaceOrder
	}{
		{"no key", shop.PlaceOrder{SessionID: sess, Checkout: checkout()}},
		{"no name", shop.PlaceOrder{SessionID: sess, IdempotencyKey: "k", Checkout: shop.Checkout{Email: "a@example.com"}}},
		{"bad email", shop.PlaceOrder{SessionID: sess, IdempotencyKey: "k", Checkout: shop.Checkout{CustomerName: "A", Email: "not-an-address"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := shop.NewOrderDesk(s, nil, nil).PlaceOrder(ctx, tt.p)
			wantCode(t, err, shop.EINVALID)
		})
	}
	if c := must(s.Cart(ctx, sess))(t); len(c.Lines) != 1 {
		t.Fatalf("rejected checkouts changed the cart: %+v", c)
	}
}

func testOrdersOwnerOnly(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t, items(1), nil)
	a, b := newSession(t, s), newSession(t, s)
	must(s.SetCartItem(ctx, a, 1, 1))(t)
	o, _, err := place(ctx, s, a, "k")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Order(ctx, b, o.ID)
	wantCode(t, err, shop.ENOTFOUND)
	_, err = s.Order(ctx, a, o.ID+1)
	wantCode(t, err, shop.ENOTFOUND)
	if p := must(s.ListOrders(ctx, b, shop.OrderFilter{}))(t); len(p.Orders) != 0 {
		t.Fatalf("session b lists session a's orders: %+v", p.Orders)
	}
}

func testListOrders(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t, items(3), nil)
	sess := newSession(t, s)
	var placed []int64
	for i := range 5 {
		must(s.SetCartItem(ctx, sess, int64(i%3+1), i+1))(t)
		o, _, err := place(ctx, s, sess, fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatal(err)
		}
		placed = append(placed, o.ID)
	}
	var got []int64
	f := shop.OrderFilter{Limit: 2}
	for range 5 {
		p := must(s.ListOrders(ctx, sess, f))(t)
		for _, o := range p.Orders {
			if len(o.Lines) != 1 {
				t.Fatalf("order %d listed with %d lines", o.ID, len(o.Lines))
			}
			got = append(got, o.ID)
		}
		if p.Next == 0 {
			break
		}
		f.Before = p.Next
	}
	want := []int64{placed[4], placed[3], placed[2], placed[1], placed[0]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("orders newest first (-want +got):\n%s", diff)
	}
}
