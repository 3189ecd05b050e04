package sharded_test

import (
	"context"
	"sync"
	"testing"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/shard"
	"github.com/perfscale/perfscale/shop/sharded"
)

// An admin's "the stock is now N" while the rebalancer moves quota
// between the shards leaves N on the shards, in both windows of the
// race (docs/sharding.md, "An admin change during a transfer"):
//   - the transfer debited before the change and credited after it: the
//     change set both quotas after the debit, so the credit would add its
//     units on top of N;
//   - the transfer debited on shard 1 after the change set it and
//     credited on shard 2 before the change set that: the change would
//     overwrite the credit and the units would be lost.
//
// Each window is made with the store's hooks and channels, no sleeps.
func TestAnAdminStockChangeDuringAQuotaTransferKeepsStockExact(t *testing.T) {
	const stock = 200
	setUp := func(t *testing.T, sellOn int) (*sharded.Store, *sharded.Rebalancer, shop.Store) {
		ctx := context.Background()
		items := seed.Items(2)
		items[0].Stock = stock
		b := openShards(t, 2, items, nil)
		r := b.Sharded.NewRebalancer(nil)
		must(r.Round(ctx))(t) // where the sales start
		for i := range 10 {   // demand on one shard: the next round moves quota to it
			if err := placeOnShard(ctx, b.Store, b.Desk, 2, sellOn, 1, 3); err != nil {
				t.Fatalf("checkout %d: %v", i, err)
			}
		}
		return b.Sharded, r, b.Store
	}
	restock := func(t *testing.T, st shop.Store) {
		t.Helper()
		n := int64(stock)
		if _, err := st.UpdateItem(context.Background(), 1, shop.ItemUpdate{Stock: &n}); err != nil {
			t.Errorf("admin stock change: %v", err)
		}
	}
	exact := func(t *testing.T, s *sharded.Store) {
		t.Helper()
		ctx := context.Background()
		if _, err := s.Reconcile(ctx, 0); err != nil {
			t.Fatal(err)
		}
		st := must(s.Stock(ctx, defaultTimeout))(t)
		q := quotasOf(t, s, 1)
		t.Logf("quotas after the change and the reconciler: %v, in flight %d", q, st.InFlight[1])
		if st.Quota[1] != stock || st.InFlight[1] != 0 {
			t.Fatalf("the admin set the stock to %d; the shards hold %d (quotas %v) and %d in flight", stock, st.Quota[1], q, st.InFlight[1])
		}
	}

	t.Run("debited before the change, credited after", func(t *testing.T) {
		s, r, st := setUp(t, 0) // the quota moves from shard 2 to shard 1
		held, release := make(chan shard.Transfer), make(chan struct{})
		var once sync.Once
		s.StopBeforeCredit(func(tr shard.Transfer) {
			once.Do(func() { held <- tr; <-release })
		})
		done := make(chan error)
		go func() { _, err := r.Round(context.Background()); done <- err }()
		tr := <-held
		t.Logf("transfer of %d units from shard 2 to shard %d debited; the admin sets the stock", tr.Units, tr.To+1)
		restock(t, st)
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		exact(t, s)
	})

	t.Run("debited after the change reached the donor, credited before it reached the receiver", func(t *testing.T) {
		s, r, st := setUp(t, 1) // the quota moves from shard 1 to shard 2
		held, release := make(chan struct{}), make(chan struct{})
		s.StopAfterQuotaSet(func(k int) {
			if k == 0 {
				held <- struct{}{}
				<-release
			}
		})
		done := make(chan struct{})
		go func() { defer close(done); restock(t, st) }()
		<-held // shard 1 has the new quota, shard 2 not yet
		moved := must(r.Round(context.Background()))(t)
		t.Logf("the rebalancer moved %+v between the change's sets", moved)
		if moved.Transfers == 0 {
			t.Fatal("the rebalancer moved nothing: the window was not made")
		}
		close(release)
		<-done
		exact(t, s)
	})
}
