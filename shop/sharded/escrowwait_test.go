package sharded_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/toxitest"
	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/shard"
	"github.com/perfscale/perfscale/shop/sharded"
)

// proxiedShards are two fresh shards, each reached through a Toxiproxy
// proxy of its own ("shard1", "shard2"), seeded with items; item 1's
// stock is all on shard 1 (shard 2's quota moved there and delivered).
func proxiedShards(t *testing.T, stock int64) (*backend.Backend, *toxitest.Proxies) {
	t.Helper()
	ctx := context.Background()
	upstreams := map[string]string{}
	var direct []string
	for _, name := range []string{"shard1", "shard2"} {
		d := newShardDatabase(t)
		u, err := url.Parse(d)
		if err != nil {
			t.Fatal(err)
		}
		upstreams[name] = u.Host
		direct = append(direct, d)
	}
	px := toxitest.New(t, upstreams)
	cfg := backend.Config{EscrowWait: sharded.EscrowWait}
	for i, d := range direct {
		u, _ := url.Parse(d)
		u.Host = px.Addr([]string{"shard1", "shard2"}[i])
		cfg.ShardURLs = append(cfg.ShardURLs, u.String())
	}
	items := seed.Items(2)
	items[0].Stock = stock
	b := openSeeded(t, cfg, items)
	if _, err := b.Shards[1].MoveQuota(ctx, "all to shard 1", 1, stock, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sharded.Reconcile(ctx, 0); err != nil {
		t.Fatal(err)
	}
	return b, px
}

// cartOnShard2 is a new session on shard 2 with n units of item in its
// cart.
func cartOnShard2(t *testing.T, b *backend.Backend, item int64, n int) int64 {
	t.Helper()
	ctx := context.Background()
	m, err := shard.Balanced(2)
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		_, hash := shop.NewToken()
		bucket, err := shard.BucketOfTokenHash(hash)
		if err != nil {
			t.Fatal(err)
		}
		if m.Owner(bucket) != 1 {
			continue
		}
		sess := must(b.Store.CreateSession(ctx, hash))(t)
		must(b.Store.SetCartItem(ctx, sess.ID, item, n))(t)
		return sess.ID
	}
	t.Fatal("no session of 200 landed on shard 2")
	return 0
}

// checkoutDeadline is the checkout route's deadline (httpapi's route
// table): the old code waited out a hurt shard until it.
const checkoutDeadline = 10 * time.Second

func checkout(b *backend.Backend, sessionID int64, key string) (error, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), checkoutDeadline)
	defer cancel()
	_, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sessionID, IdempotencyKey: key,
		Checkout: shop.Checkout{CustomerName: "A", Email: "a@example.com"}})
	return err, ctx.Err() == nil
}

// A checkout on shard 2 short of an item whose stock is all on shard 1,
// with shard 1 not answering (a blackhole), is answered before its
// deadline with a 503 naming shard 1, not "out of stock": shard 1 may
// hold the units. The old code waited for shard 1 until the checkout's
// deadline and then said out of stock. Once shard 1 answers again the
// same checkout borrows and is placed, and the stock is exact.
func TestACheckoutThatCannotBorrowFromAShardThatDoesNotAnswerIsA503NamingIt(t *testing.T) {
	const stock = 6
	b, px := proxiedShards(t, stock)
	sess := cartOnShard2(t, b, 1, 1)

	px.Add(t, "shard1", "timeout", `{"timeout": 0}`)
	begun := time.Now()
	err, beforeDeadline := checkout(b, sess, "k")
	t.Logf("checkout with shard 1 blackholed, after %v: %v", time.Since(begun).Round(time.Millisecond), err)
	if _, short := errors.AsType[*shop.OutOfStockError](err); short {
		t.Fatalf("checkout with shard 1 blackholed: %v, want a 503: shard 1 holds the stock", err)
	}
	if shop.ErrorCode(err) != shop.EUNAVAILABLE || !strings.Contains(err.Error(), "shard 1") {
		t.Fatalf("checkout with shard 1 blackholed: %v, want EUNAVAILABLE naming shard 1", err)
	}
	if !beforeDeadline {
		t.Fatalf("the checkout waited out its %v deadline for shard 1", checkoutDeadline)
	}
	px.Remove(t, "shard1")

	if err, _ := checkout(b, sess, "k"); err != nil {
		t.Fatalf("checkout with shard 1 back: %v", err)
	}
	stockExact(t, b, stock)
}

// A borrow cut after its debit (shard 1 gave the units; shard 2, the
// receiver, stopped answering before its credit) loses no unit and counts
// none twice: the checkout is a 503 naming shard 2, the units are in
// flight, the reconciler credits them once, and the checkout sent again
// is placed from them. The old code waited for shard 2's credit until the
// checkout's deadline.
func TestABorrowCutAfterItsDebitKeepsTheStockExact(t *testing.T) {
	ctx := context.Background()
	const stock = 6
	b, px := proxiedShards(t, stock)
	sess := cartOnShard2(t, b, 1, 1)

	var once sync.Once
	b.Sharded.StopBeforeCredit(func(shard.Transfer) {
		once.Do(func() { px.Add(t, "shard2", "timeout", `{"timeout": 0}`) })
	})
	err, beforeDeadline := checkout(b, sess, "k")
	t.Logf("checkout with its borrow cut before the credit: %v", err)
	if shop.ErrorCode(err) != shop.EUNAVAILABLE || !strings.Contains(err.Error(), "shard 2") {
		t.Fatalf("checkout with its borrow cut: %v, want EUNAVAILABLE naming shard 2", err)
	}
	if !beforeDeadline {
		t.Fatalf("the checkout waited out its %v deadline for shard 2's credit", checkoutDeadline)
	}
	px.Remove(t, "shard2")
	b.Sharded.StopBeforeCredit(nil)

	st := must(b.Sharded.Stock(ctx, defaultTimeout))(t)
	if st.Quota[1]+st.InFlight[1] != stock || st.InFlight[1] == 0 {
		t.Fatalf("after the cut: quota %d + in flight %d, want %d with the borrowed units in flight", st.Quota[1], st.InFlight[1], stock)
	}
	if _, err := b.Sharded.Reconcile(ctx, 0); err != nil {
		t.Fatal(err)
	}
	st = must(b.Sharded.Stock(ctx, defaultTimeout))(t)
	if st.Quota[1] != stock || st.InFlight[1] != 0 {
		t.Fatalf("after reconciling: quota %d, in flight %d; want %d and 0", st.Quota[1], st.InFlight[1], stock)
	}
	if err, _ := checkout(b, sess, "k"); err != nil {
		t.Fatalf("checkout sent again: %v", err)
	}
	stockExact(t, b, stock)
}

// stockExact checks that what every shard's orders hold plus what every
// shard has left (quota and transfers in flight) of item 1 is initial.
func stockExact(t *testing.T, b *backend.Backend, initial int64) {
	t.Helper()
	ctx := context.Background()
	sales := must(b.Sharded.SalesPerItem(ctx, defaultTimeout))(t)
	left := must(b.Sharded.TotalStock(ctx, 1))(t)
	if sales[1]+left != initial || sales[1] != 1 {
		t.Fatalf("stock not exact: ordered %d + left %d, want 1 + %d", sales[1], left, initial-1)
	}
}
