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

// placeOnShard puts n units of item in the cart of a new session whose
// token falls on shard k (of shards) and checks out.
func placeOnShard(ctx context.Context, s shop.Store, desk *shop.OrderDesk, shards, k int, item int64, n int) error {
	m, err := shard.Balanced(shards)
	if err != nil {
		return err
	}
	for {
		_, hash := shop.NewToken()
		if owner, _, _ := m.ShardOfTokenHash(hash); owner != k {
			continue
		}
		sess, err := s.CreateSession(ctx, hash)
		if err != nil {
			return err
		}
		if _, err := s.SetCartItem(ctx, sess.ID, item, n); err != nil {
			return err
		}
		_, _, err = desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "k",
			Checkout: shop.Checkout{CustomerName: "A", Email: "a@example.com"}})
		return err
	}
}

// quotasOf is each shard's quota of item.
func quotasOf(t *testing.T, s *sharded.Store, item int64) []int64 {
	t.Helper()
	var q []int64
	for _, sh := range s.ShardList() {
		quota, _ := must2(sh.Escrow.Quotas(context.Background()))(t)
		q = append(q, quota[item])
	}
	return q
}

func must2[A, B any](a A, b B, err error) func(t *testing.T) (A, B) {
	return func(t *testing.T) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

// After sales on one shard only, a round moves the others' quota toward
// it, keeping the total; while another process holds the lease, a round
// does nothing.
func TestRebalancerMovesQuotaTowardTheSellingShard(t *testing.T) {
	ctx := context.Background()
	items := seed.Items(2)
	items[0].Stock = 300
	b := openShards(t, 3, items, nil)
	r := b.Sharded.NewRebalancer(nil)
	first := must(r.Round(ctx))(t)
	if !first.Leased || first.Transfers != 0 {
		t.Fatalf("first round %+v: want leased, nothing moved (no sales read yet)", first)
	}
	for i := range 10 {
		if err := placeOnShard(ctx, b.Store, b.Desk, 3, 0, 1, 3); err != nil {
			t.Fatalf("checkout %d: %v", i, err)
		}
	}
	before := quotasOf(t, b.Sharded, 1)
	if before[0] != 70 || before[1] != 100 || before[2] != 100 {
		t.Fatalf("quotas after 30 units sold on shard 1: %v, want [70 100 100]", before)
	}

	release, ok, err := b.Sharded.ShardList()[0].Escrow.TryLease(ctx, "quota rebalancer")
	if err != nil || !ok {
		t.Fatalf("take the lease: %v, %v", ok, err)
	}
	if held := must(r.Round(ctx))(t); held.Leased || held.Transfers != 0 {
		t.Fatalf("round while another holds the lease: %+v, want nothing done", held)
	}
	release()

	moved := must(r.Round(ctx))(t)
	after := quotasOf(t, b.Sharded, 1)
	t.Logf("quotas %v -> %v (%+v)", before, after, moved)
	if moved.Transfers == 0 || after[0] <= before[0] || after[0] <= after[1] || after[0] <= after[2] {
		t.Fatalf("quotas %v -> %v: want shard 1's grown past the others", before, after)
	}
	if after[0]+after[1]+after[2] != 270 {
		t.Fatalf("quotas %v add up to %d, want 270", after, after[0]+after[1]+after[2])
	}
	if again := must(r.Round(ctx))(t); again.Transfers != 0 {
		t.Fatalf("a round with no new sales moved %+v: the quotas were at their targets", again)
	}
}

// Checkouts skewed to one shard run while the rebalancer moves quota
// round after round: every unit is on a shard, in an order or in a
// transfer, and none twice.
func TestStockStaysExactWithTheRebalancerRunning(t *testing.T) {
	ctx := context.Background()
	items := seed.Items(2)
	const initial = 60
	items[0].Stock = initial
	b := openShards(t, 3, items, nil)
	r := b.Sharded.NewRebalancer(nil)
	must(r.Round(ctx))(t) // where the sales start
	for i := range 4 {
		if err := placeOnShard(ctx, b.Store, b.Desk, 3, 0, 1, 2); err != nil {
			t.Fatalf("checkout %d: %v", i, err)
		}
	}

	// The rebalancer runs rounds back to back until the storm is over;
	// the storm starts once its first round (with the 8 units sold on
	// shard 1 to go by) has moved quota.
	stop, firstRound := make(chan struct{}), make(chan struct{})
	var rounds, transfers int
	var loop sync.WaitGroup
	loop.Go(func() {
		for {
			round, err := r.Round(ctx)
			if err != nil { // a shard slower than the round's deadline: left out of that round
				t.Logf("round %d: %v", rounds, err)
			}
			rounds++
			transfers += round.Transfers
			if rounds == 1 {
				close(firstRound)
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	})
	<-firstRound

	var mu sync.Mutex
	placed, refused := 0, 0
	var storm sync.WaitGroup
	for i := range 30 {
		storm.Go(func() {
			k := 0 // two in three on shard 1
			if i%3 == 2 {
				k = 1 + i%2
			}
			err := placeOnShard(ctx, b.Store, b.Desk, 3, k, 1, 1+i%2)
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
	storm.Wait()
	close(stop)
	loop.Wait()

	sales := must(b.Sharded.SalesPerItem(ctx, defaultTimeout))(t)
	st := must(b.Sharded.Stock(ctx, defaultTimeout))(t)
	t.Logf("%d rounds moved quota %d times; %d orders placed, %d refused; ordered %d, left %d, in flight %d",
		rounds, transfers, placed, refused, sales[1], st.Quota[1], st.InFlight[1])
	if transfers == 0 {
		t.Fatal("the rebalancer moved nothing")
	}
	if got := sales[1] + st.Quota[1] + st.InFlight[1]; got != initial {
		t.Fatalf("stock not exact: ordered %d + left %d + in flight %d = %d, want %d", sales[1], st.Quota[1], st.InFlight[1], got, initial)
	}
	if _, err := b.Sharded.Reconcile(ctx, 0); err != nil {
		t.Fatal(err)
	}
	st = must(b.Sharded.Stock(ctx, defaultTimeout))(t)
	if st.InFlight[1] != 0 || sales[1]+st.Quota[1] != initial {
		t.Fatalf("after reconciling: ordered %d + left %d (in flight %d), want %d", sales[1], st.Quota[1], st.InFlight[1], initial)
	}
}
