package sharded_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/shard"
	"github.com/perfscale/perfscale/shop/sharded"
)

// placeOne puts n units of item in a new session's cart and checks out.
func placeOne(ctx context.Context, b shop.Store, desk *shop.OrderDesk, item int64, n int, key string) error {
	_, hash := shop.NewToken()
	sess, err := b.CreateSession(ctx, hash)
	if err != nil {
		return err
	}
	if _, err := b.SetCartItem(ctx, sess.ID, item, n); err != nil {
		return err
	}
	_, _, err = desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: key,
		Checkout: shop.Checkout{CustomerName: "A", Email: "a@example.com"}})
	return err
}

// Concurrent checkouts on three shards sell an item's stock exactly:
// what is left on every shard plus what every shard's orders hold is the
// stock it started with, and once it is all sold the menu drops it.
func TestStockStaysExactAcrossShardsUnderConcurrentCheckouts(t *testing.T) {
	ctx := context.Background()
	items := seed.Items(3)
	const initial = 17
	items[0].Stock = initial
	b := openShards(t, 3, items, nil)
	routed := b.Sharded
	var mu sync.Mutex
	placed, refused := 0, 0
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			err := placeOne(ctx, b.Store, b.Desk, 1, 1+i%2, "k")
			mu.Lock()
			defer mu.Unlock()
			var short *shop.OutOfStockError
			switch {
			case err == nil:
				placed++
			case errors.As(err, &short):
				refused++
			default:
				t.Errorf("checkout %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	sales := must(routed.SalesPerItem(ctx, defaultTimeout))(t)
	left := must(routed.TotalStock(ctx, 1))(t)
	t.Logf("%d orders placed, %d refused; ordered %d, left %d", placed, refused, sales[1], left)
	if sales[1]+left != initial {
		t.Fatalf("stock not exact: ordered %d + left %d != initial %d", sales[1], left, initial)
	}
	// 24 checkouts of 1 or 2 units want 36 of the 17: some are refused.
	// (A refusal may leave a unit a checkout of two could not take.)
	if refused == 0 || placed == 0 {
		t.Fatalf("placed %d, refused %d: the demand was more than the stock", placed, refused)
	}
	if _, err := routed.Reconcile(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if left > 0 {
		return
	}
	// Every unit sold: every shard agreed the item is gone.
	for _, c := range must(b.Store.Menu(ctx))(t).Categories {
		for _, it := range c.Items {
			if it.ID == 1 {
				t.Fatal("the sold-out item is still on the menu")
			}
		}
	}
}

// A transfer debited on one shard and never credited (the process died
// between) is counted in flight, and the reconciler credits it once.
func TestReconcilerFinishesATransferCutShort(t *testing.T) {
	ctx := context.Background()
	items := seed.Items(2)
	items[0].Stock = 30
	b := openShards(t, 3, items, nil)
	routed := b.Sharded
	t0, err := b.Postgres.DebitQuota(ctx, "cut-short", 1, 4, 2, false) // shard 1's quota for shard 3
	debited := t0.Units
	if err != nil || debited < 4 {
		t.Fatalf("debit: %d, %v", debited, err)
	}
	st := must(routed.Stock(ctx, defaultTimeout))(t)
	if st.Quota[1]+st.InFlight[1] != 30 || st.InFlight[1] != debited {
		t.Fatalf("after the debit: quota %d + in flight %d, want 30 with %d in flight", st.Quota[1], st.InFlight[1], debited)
	}
	for range 2 { // a second run finds nothing left to do
		if _, err := routed.Reconcile(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	st = must(routed.Stock(ctx, defaultTimeout))(t)
	if st.Quota[1] != 30 || st.InFlight[1] != 0 {
		t.Fatalf("after reconciling: quota %d, in flight %d; want 30 and 0", st.Quota[1], st.InFlight[1])
	}
}

// failingSales is a shard whose sales read fails.
type failingSales struct{ shard.Reader }

func (failingSales) SalesPerItem(context.Context) (map[int64]int64, error) {
	return nil, errors.New("connection refused")
}

// An admin read over every shard returns what the shards that answered
// said, and names the one that did not.
func TestAdminReadsNameTheShardThatDidNotAnswer(t *testing.T) {
	ctx := context.Background()
	b := openShards(t, 2, seed.Items(3), nil)
	for i := range 6 {
		if err := placeOne(ctx, b.Store, b.Desk, 2, 1, "k"); err != nil {
			t.Fatalf("checkout %d: %v", i, err)
		}
	}
	all := must(b.Sharded.SalesPerItem(ctx, defaultTimeout))(t)
	if all[2] != 6 {
		t.Fatalf("sales of item 2 = %d, want 6", all[2])
	}
	placed := must(b.Sharded.OrdersByStatus(ctx, shop.StatusPlaced, 100, defaultTimeout))(t)
	if len(placed) != 6 {
		t.Fatalf("%d placed orders, want 6", len(placed))
	}
	shards := b.Sharded.ShardList()
	shards[1].Reads = failingSales{shards[1].Reads}
	half, err := sharded.New(shards, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := half.SalesPerItem(ctx, defaultTimeout)
	var partial *shard.PartialError
	if !errors.As(err, &partial) || len(partial.Failures) != 1 || partial.Failures[0].Shard != 1 {
		t.Fatalf("err = %v, want shard 2 named", err)
	}
	own := must(shards[0].Reads.SalesPerItem(ctx))(t)
	if got[2] != own[2] {
		t.Errorf("the answer's sales of item 2 = %d, shard 1 alone has %d", got[2], own[2])
	}
	t.Log(err)
}
