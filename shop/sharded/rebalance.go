package sharded

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/perfscale/perfscale/shop/shard"
)

// RebalanceHalfLife is how fast the rebalancer forgets a sale: a shard's
// demand for an item is its sales, each weighed down by half every
// RebalanceHalfLife since it was read, so the quotas follow where the
// item sells now, not where it sold an hour ago.
const RebalanceHalfLife = 30 * time.Second

// rebalanceLease is the lease on the catalog's home that lets one
// rebalancer run at a time over the shards.
const rebalanceLease = "quota rebalancer"

// Rebalancer moves each item's quota between shards ahead of demand
// (docs/sharding.md): every round it reads each shard's quotas and the
// sales since its last reading, and moves quota toward each shard's
// target (shard.PlanRebalance: 3/4 of an item's stock in proportion to
// the shards' recent sales, 1/4 evenly) by the transfers a borrow uses,
// debited and credited once by id, so a crash between is finished by
// Reconcile. A round holds the lease on the catalog's home: of several
// workers, one rebalances.
type Rebalancer struct {
	s   *Store
	now func() time.Time

	mu      sync.Mutex // one round at a time
	cursors []int64    // per shard: sales read up to this order id; -1 unread
	demand  []map[int64]float64
	read    time.Time // when demand was last decayed
}

// NewRebalancer returns the rebalancer of s's shards, its demand decayed
// by the clock now (nil: the wall clock).
func (s *Store) NewRebalancer(now func() time.Time) *Rebalancer {
	if now == nil {
		now = time.Now
	}
	r := &Rebalancer{s: s, now: now, cursors: make([]int64, len(s.shards)), demand: make([]map[int64]float64, len(s.shards))}
	for k := range r.cursors {
		r.cursors[k] = -1
		r.demand[k] = map[int64]float64{}
	}
	return r
}

// RebalanceRound is what one round did.
type RebalanceRound struct {
	// Leased is false when another process held the lease: nothing was
	// read or moved.
	Leased bool
	// Transfers and Units are the quota moved.
	Transfers int
	Units     int64
}

// shardReading is one shard's quotas and its sales since the cursor.
type shardReading struct {
	quota  map[int64]int64
	sales  map[int64]int64
	cursor int64
}

// Round reads every shard and moves quota once. A shard that does not
// answer is left out of the round (its quota neither given nor taken) and
// named in the error; the others are rebalanced among themselves. The
// first reading of a shard only sets where its sales start.
func (r *Rebalancer) Round(ctx context.Context) (RebalanceRound, error) {
	var done RebalanceRound
	release, ok, err := r.s.home().Escrow.TryLease(ctx, rebalanceLease)
	if err != nil || !ok {
		return done, err
	}
	defer release()
	done.Leased = true
	r.mu.Lock()
	defer r.mu.Unlock()
	cursors := slices.Clone(r.cursors)
	answers, readErr := shard.FanOut(ctx, len(r.s.shards), 2*time.Second, func(ctx context.Context, k int) (shardReading, error) {
		es := r.s.shards[k].Escrow
		quota, _, err := es.Quotas(ctx)
		if err != nil {
			return shardReading{}, err
		}
		sales, cursor, err := es.SalesSince(ctx, cursors[k])
		return shardReading{quota: quota, sales: sales, cursor: cursor}, err
	})
	r.decay()
	for _, a := range answers {
		r.cursors[a.Shard] = a.Value.cursor
		for item, n := range a.Value.sales {
			r.demand[a.Shard][item] += float64(n)
		}
	}
	var errs []error
	if readErr != nil {
		errs = append(errs, readErr)
	}
	if len(answers) < 2 {
		return done, errors.Join(errs...)
	}
	for _, item := range itemsOf(answers) {
		quota := make([]int64, len(answers))
		demand := make([]float64, len(answers))
		for i, a := range answers {
			quota[i], demand[i] = a.Value.quota[item], r.demand[a.Shard][item]
		}
		for _, m := range shard.PlanRebalance(quota, demand) {
			from, to := answers[m.From].Shard, answers[m.To].Shard
			n, err := r.move(ctx, from, to, item, m.Units)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if n > 0 {
				done.Transfers++
				done.Units += n
			}
		}
	}
	return done, errors.Join(errs...)
}

// decay weighs every demand down by the time since the last round.
func (r *Rebalancer) decay() {
	now := r.now()
	if !r.read.IsZero() {
		f := math.Exp2(-float64(now.Sub(r.read)) / float64(RebalanceHalfLife))
		for _, d := range r.demand {
			for item := range d {
				if d[item] *= f; d[item] < 0.01 {
					delete(d, item)
				}
			}
		}
	}
	r.read = now
}

// move debits up to units of item on shard from for shard to and credits
// them; a transfer debited and not credited is left to Reconcile.
func (r *Rebalancer) move(ctx context.Context, from, to int, item, units int64) (int64, error) {
	t, err := r.s.shards[from].Escrow.MoveQuota(ctx, transferID(), item, units, to)
	if err != nil || t.Units == 0 {
		return 0, err
	}
	arrived, err := r.s.deliver(ctx, from, t, 0)
	if errors.Is(err, errTransferWaits) {
		return t.Units, nil // in flight until the admin's change reaches the receiver; the reconciler credits it
	}
	if err != nil {
		return t.Units, fmt.Errorf("transfer %s left to the reconciler: %w", t.ID, err)
	}
	if !arrived {
		return 0, nil // an admin change set the stock since: nothing moved
	}
	return t.Units, nil
}

// itemsOf is every item some shard has quota of, in id order.
func itemsOf(answers []shard.Answer[shardReading]) []int64 {
	seen := map[int64]bool{}
	for _, a := range answers {
		for item := range a.Value.quota {
			seen[item] = true
		}
	}
	items := make([]int64, 0, len(seen))
	for item := range seen {
		items = append(items, item)
	}
	slices.Sort(items)
	return items
}
