package postgres_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// TestCartChangeAtOnce: a plain cart change on PostgreSQL (an available
// item, within the line limit) is one round trip, and returns the cart a
// read finds after it; one that is not plain writes nothing at once and
// goes the general way, which refuses it as before. The general way took
// six round trips for every change (begin, the session's lock, the item
// and the line counts, the upsert, the cart's read, commit).
func TestCartChangeAtOnce(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	if _, err := backend.Migrate(ctx, backend.Config{DatabaseURL: url}); err != nil {
		t.Fatal(err)
	}
	rt := &pgtest.RoundTrips{}
	cfg := backend.Config{DatabaseURL: url}
	cfg.Postgres.ConnConfig = func(c *pgx.ConnConfig) { c.DialFunc = rt.Dial }
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Seed(ctx, seed.Items(shop.MaxCartLines+2)); err != nil {
		t.Fatal(err)
	}
	unavailable := int64(shop.MaxCartLines + 2)
	if _, err := b.Postgres.Pool().Exec(ctx, `UPDATE items SET available = false WHERE id = $1`, unavailable); err != nil {
		t.Fatal(err)
	}
	session := func(name string) int64 {
		s, err := b.Store.CreateSession(ctx, "hash-"+name)
		if err != nil {
			t.Fatal(err)
		}
		return s.ID
	}
	// The first change of each kind prepares its statements on the connection.
	warm := session("warm")
	for _, q := range []int{1, 0} {
		if _, err := b.Store.SetCartItem(ctx, warm, 1, q); err != nil {
			t.Fatal(err)
		}
	}
	full := session("full")
	for item := int64(1); item <= shop.MaxCartLines; item++ {
		if _, err := b.Store.SetCartItem(ctx, full, item, 1); err != nil {
			t.Fatal(err)
		}
	}
	cart := session("cart")
	for _, tc := range []struct {
		name                 string
		session, item        int64
		quantity             int
		trips                int    // at most
		code                 string // the refusal, if any
		lines, quantityAfter int    // the cart's lines after; the item's quantity in it
	}{
		{"a new line", cart, 3, 2, 1, "", 1, 2},
		{"another line", cart, 5, 1, 1, "", 2, 1},
		{"a line's quantity changed", cart, 3, 3, 1, "", 2, 3},
		{"an item already in a full cart", full, 7, 2, 1, "", shop.MaxCartLines, 2},
		{"a line past the limit", full, shop.MaxCartLines + 1, 1, 7, shop.EUNPROCESSABLE, shop.MaxCartLines, 0},
		{"an unavailable item", cart, unavailable, 1, 7, shop.ECONFLICT, 2, 0},
		{"no such item", cart, 9999, 1, 7, shop.ENOTFOUND, 2, 0},
		{"a line removed (the general way)", cart, 5, 0, 6, "", 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := rt.Count()
			got, err := b.Store.SetCartItem(ctx, tc.session, tc.item, tc.quantity)
			trips := rt.Count() - before
			if code := shop.ErrorCode(err); code != tc.code && (tc.code != "" || err != nil) {
				t.Fatalf("error %v (code %q), want code %q", err, code, tc.code)
			}
			if trips > tc.trips {
				t.Errorf("%d round trips, want at most %d", trips, tc.trips)
			}
			read, rerr := b.Store.Cart(ctx, tc.session)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if len(read.Lines) != tc.lines {
				t.Errorf("the cart has %d lines, want %d", len(read.Lines), tc.lines)
			}
			var q int
			for _, l := range read.Lines {
				if l.ItemID == tc.item {
					q = l.Quantity
				}
			}
			if q != tc.quantityAfter {
				t.Errorf("item %d's quantity in the cart is %d, want %d", tc.item, q, tc.quantityAfter)
			}
			if err == nil && !reflect.DeepEqual(got, read) {
				t.Errorf("the change returned the cart\n\t%+v\na read found\n\t%+v", got, read)
			}
		})
	}
}
