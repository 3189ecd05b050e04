package sharded_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// TestCheckoutAtOnceOnEveryShard: a plain checkout on a shard is one
// round trip, the quota's decrement and the shard's River job included,
// on every shard; a worker confirms each order on its own shard; and a
// checkout that takes a shard's quota to zero is still placed at once,
// its quota refilled from the other shard after it, the stock exact.
func TestCheckoutAtOnceOnEveryShard(t *testing.T) {
	ctx := context.Background()
	items := seed.Items(4)
	const initial = 40
	items[1].Stock = initial // item 2: 20 units on each of the two shards
	rt := &pgtest.RoundTrips{}
	cfg := backend.Config{ShardURLs: []string{newShardDatabase(t), newShardDatabase(t)}}
	cfg.Postgres.ConnConfig = func(c *pgx.ConnConfig) { c.DialFunc = rt.Dial }
	b := openSeeded(t, cfg, items)

	checkout := func(key string, units int) (o *shop.Order, trips int) {
		t.Helper()
		_, hash := shop.NewToken()
		s := must(b.Store.CreateSession(ctx, hash))(t)
		if _, err := b.Store.SetCartItem(ctx, s.ID, 2, units); err != nil {
			t.Fatal(err)
		}
		before := rt.Count()
		o, created, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: s.ID, IdempotencyKey: key,
			Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}})
		if err != nil || !created {
			t.Fatalf("checkout %s: created %v, %v", key, created, err)
		}
		return o, rt.Count() - before
	}
	// Checkouts until each shard has placed one after its first (which
	// prepares the statements on its connection).
	sold := 0
	var placed [2][]*shop.Order
	for i := 0; len(placed[0]) < 2 || len(placed[1]) < 2; i++ {
		if i == 40 {
			t.Fatalf("40 sessions and a shard has fewer than 2 orders: %d and %d", len(placed[0]), len(placed[1]))
		}
		o, trips := checkout(fmt.Sprintf("k%d", i), 1)
		sold++
		k := must(b.Sharded.OwnerOfOrder(o.ID))(t)
		if len(placed[k]) > 0 && trips != 1 {
			t.Errorf("a plain checkout on shard %d took %d round trips, want 1", k+1, trips)
		}
		placed[k] = append(placed[k], o)
	}

	// A checkout of all a shard's quota: placed at once, then refilled.
	q, _, err := b.Shards[0].Quotas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	session := placed[0][0].SessionID // a session of shard 1
	if _, err := b.Store.SetCartItem(ctx, session, 2, int(q[2])); err != nil {
		t.Fatal(err)
	}
	before := rt.Count()
	emptying, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: session, IdempotencyKey: "all",
		Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the checkout of shard 1's whole quota (%d) and its refill took %d round trips", q[2], rt.Count()-before)
	sold += int(q[2])
	after, _, err := b.Shards[0].Quotas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after[2] == 0 {
		t.Error("shard 1's quota of item 2 was not refilled after the checkout took it to zero")
	}
	if left := must(b.Sharded.TotalStock(ctx, 2))(t); left+int64(sold) != initial {
		t.Errorf("stock not exact: %d left + %d sold != %d", left, sold, initial)
	}

	// A worker of its own works the jobs each shard's checkout wrote.
	w, err := backend.Open(ctx, backend.Config{ShardURLs: cfg.ShardURLs,
		Jobs: jobs.Config{Work: true, PrepTime: time.Millisecond, PollInterval: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if err := w.Queue.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Queue.Stop(context.Background()) })
	for _, o := range []*shop.Order{placed[0][1], placed[1][1], emptying} {
		testwait.Eventually(t, time.Minute, func() error {
			got, err := b.Store.OrderByID(ctx, o.ID)
			if err != nil {
				return err
			}
			if got.Status != shop.StatusReady {
				return fmt.Errorf("order %d is %s, want ready", o.ID, got.Status)
			}
			return nil
		})
	}
}
