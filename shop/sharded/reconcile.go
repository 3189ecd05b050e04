package sharded

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/shard"
)

// TransferGrace is how old a transfer still marked sent must be before
// the reconciler finishes it: a borrow delivers within a few round trips,
// and finishing one early only does what the borrow would (a credit is
// applied once however often it is sent).
const TransferGrace = 5 * time.Second

// Reconcile repairs what a crash left between the steps of the escrow
// protocol (docs/sharding.md): every transfer debited on a shard and not
// marked received is credited to its receiver (once; dropped when an
// admin stock change superseded it, left for a later round while the
// receiver waits for that change) and marked; every
// item flagged sold out while some shard has quota of it is unflagged. It
// reports how many transfers it finished. A shard that does not answer is
// named in the error and the others are repaired.
func (s *Store) Reconcile(ctx context.Context, grace time.Duration) (int, error) {
	done := 0
	var errs []error
	for d, sh := range s.shards {
		ts, err := sh.Escrow.SentTransfers(ctx, grace, 1000)
		if err != nil {
			errs = append(errs, fmt.Errorf("shard %d: %w", d+1, err))
			continue
		}
		for _, t := range ts {
			if _, err := s.deliver(ctx, d, t, 0); err != nil {
				if !errors.Is(err, errTransferWaits) { // a later round credits it
					errs = append(errs, fmt.Errorf("transfer %s from shard %d: %w", t.ID, d+1, err))
				}
				continue
			}
			done++
		}
	}
	if err := s.unflagRestocked(ctx); err != nil {
		errs = append(errs, err)
	}
	return done, errors.Join(errs...)
}

// unflagRestocked clears the sold-out flag of items that some shard has
// quota of again: a flag set while a transfer was in flight.
func (s *Store) unflagRestocked(ctx context.Context) error {
	flagged, err := s.home().Escrow.SoldOutItems(ctx)
	if err != nil || len(flagged) == 0 {
		return err
	}
	stock, err := s.Stock(ctx, time.Minute)
	if err != nil {
		return err // a shard that did not answer may hold the units
	}
	for _, item := range flagged {
		if stock.Quota[item]+stock.InFlight[item] > 0 {
			if _, err := s.home().Escrow.SetSoldOut(ctx, item, false, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// StockFigures is every shard's stock, summed per item: the units the
// shards can sell, and the units in transfers not yet delivered.
type StockFigures struct {
	Quota    map[int64]int64
	InFlight map[int64]int64
}

// Stock reads every shard's quotas at once under one deadline (an admin
// read and the reconciler's, never a customer's); the error is a
// *shard.PartialError naming the shards that did not answer.
func (s *Store) Stock(ctx context.Context, timeout time.Duration) (StockFigures, error) {
	type quotas struct{ quota, inFlight map[int64]int64 }
	answers, err := shard.FanOut(ctx, len(s.shards), timeout, func(ctx context.Context, k int) (quotas, error) {
		q, f, err := s.shards[k].Escrow.Quotas(ctx)
		return quotas{q, f}, err
	})
	sum := StockFigures{Quota: map[int64]int64{}, InFlight: map[int64]int64{}}
	for _, a := range answers {
		for item, n := range a.Value.quota {
			sum.Quota[item] += n
		}
		for item, n := range a.Value.inFlight {
			sum.InFlight[item] += n
		}
	}
	return sum, err
}

// TotalStock is the units of item the shards can sell between them, read
// from every shard (an admin read; the contract tests read it).
func (s *Store) TotalStock(ctx context.Context, item int64) (int64, error) {
	st, err := s.Stock(ctx, 2*time.Second)
	if err != nil {
		return 0, err
	}
	return st.Quota[item] + st.InFlight[item], nil
}

// SalesPerItem is the units ordered of each item on every shard, asked
// at once under timeout; the error names the shards that did not answer.
func (s *Store) SalesPerItem(ctx context.Context, timeout time.Duration) (map[int64]int64, error) {
	return s.Reads().SalesPerItem(ctx, timeout)
}

// OrdersByStatus is the newest orders in status over every shard, at
// most limit, newest first, asked at once under timeout; the error names
// the shards that did not answer.
func (s *Store) OrdersByStatus(ctx context.Context, status shop.Status, limit int, timeout time.Duration) ([]shop.Order, error) {
	return s.Reads().OrdersByStatus(ctx, status, limit, timeout)
}

// Reads are the admin's reads over every shard.
func (s *Store) Reads() shard.Reads {
	rs := make(shard.Reads, len(s.shards))
	for k, sh := range s.shards {
		rs[k] = sh.Reads
	}
	return rs
}
