package sharded

import (
	"context"
	"time"

	"github.com/perfscale/perfscale/shop/shard"
)

// Guard is what a shard's escrow calls go through: the guard of that
// shard's database (resilience.Guard, built in shop/app), whose breaker
// and stall detector refuse a call at once while the shard fails or does
// not answer. A refused call did no work.
type Guard interface {
	Do(ctx context.Context, fn func(ctx context.Context) error) error
}

// GuardEscrow puts a shard's escrow behind that shard's guards: its
// reads (quotas, the sold-out flags, the map) behind reads, its writes
// (debits, credits, marks, flags, leases) behind writes. So a checkout
// on another shard that borrows from a shard that fails or hangs is
// refused at once, like that shard's own sessions' calls, instead of
// waiting for it; and a call that fails or stalls counts toward that
// shard's breaker.
func GuardEscrow(e Escrow, reads, writes Guard) Escrow {
	return &guardedEscrow{next: e, reads: reads, writes: writes}
}

type guardedEscrow struct {
	next          Escrow
	reads, writes Guard
}

var _ Escrow = (*guardedEscrow)(nil)

func guarded[T any](g Guard, ctx context.Context, fn func(ctx context.Context) (T, error)) (T, error) {
	var v T
	err := g.Do(ctx, func(ctx context.Context) error {
		var err error
		v, err = fn(ctx)
		return err
	})
	return v, err
}

func (g *guardedEscrow) DebitQuota(ctx context.Context, id string, item, need int64, to int, partial bool) (shard.Transfer, error) {
	return guarded(g.writes, ctx, func(ctx context.Context) (shard.Transfer, error) {
		return g.next.DebitQuota(ctx, id, item, need, to, partial)
	})
}

func (g *guardedEscrow) MoveQuota(ctx context.Context, id string, item, units int64, to int) (shard.Transfer, error) {
	return guarded(g.writes, ctx, func(ctx context.Context) (shard.Transfer, error) {
		return g.next.MoveQuota(ctx, id, item, units, to)
	})
}

func (g *guardedEscrow) CreditQuota(ctx context.Context, t shard.Transfer) (shard.Credit, error) {
	return guarded(g.writes, ctx, func(ctx context.Context) (shard.Credit, error) { return g.next.CreditQuota(ctx, t) })
}

type quotaSet struct {
	applied int64
	set     bool
}

func (g *guardedEscrow) SetQuota(ctx context.Context, item, units, epoch int64) (int64, bool, error) {
	r, err := guarded(g.writes, ctx, func(ctx context.Context) (quotaSet, error) {
		applied, set, err := g.next.SetQuota(ctx, item, units, epoch)
		return quotaSet{applied, set}, err
	})
	return r.applied, r.set, err
}

func (g *guardedEscrow) MarkTransferReceived(ctx context.Context, id string) error {
	return g.writes.Do(ctx, func(ctx context.Context) error { return g.next.MarkTransferReceived(ctx, id) })
}

func (g *guardedEscrow) SentTransfers(ctx context.Context, olderThan time.Duration, limit int) ([]shard.Transfer, error) {
	return guarded(g.reads, ctx, func(ctx context.Context) ([]shard.Transfer, error) {
		return g.next.SentTransfers(ctx, olderThan, limit)
	})
}

type quotas struct{ quota, inFlight map[int64]int64 }

func (g *guardedEscrow) Quotas(ctx context.Context) (map[int64]int64, map[int64]int64, error) {
	q, err := guarded(g.reads, ctx, func(ctx context.Context) (quotas, error) {
		quota, inFlight, err := g.next.Quotas(ctx)
		return quotas{quota, inFlight}, err
	})
	return q.quota, q.inFlight, err
}

type sales struct {
	sold   map[int64]int64
	cursor int64
}

func (g *guardedEscrow) SalesSince(ctx context.Context, after int64) (map[int64]int64, int64, error) {
	s, err := guarded(g.reads, ctx, func(ctx context.Context) (sales, error) {
		sold, cursor, err := g.next.SalesSince(ctx, after)
		return sales{sold, cursor}, err
	})
	return s.sold, s.cursor, err
}

type lease struct {
	release func()
	ok      bool
}

func (g *guardedEscrow) TryLease(ctx context.Context, name string) (func(), bool, error) {
	l, err := guarded(g.writes, ctx, func(ctx context.Context) (lease, error) {
		release, ok, err := g.next.TryLease(ctx, name)
		return lease{release, ok}, err
	})
	return l.release, l.ok, err
}

func (g *guardedEscrow) StockEpoch(ctx context.Context, item int64) (int64, error) {
	return guarded(g.reads, ctx, func(ctx context.Context) (int64, error) { return g.next.StockEpoch(ctx, item) })
}

func (g *guardedEscrow) SetSoldOut(ctx context.Context, item int64, soldOut bool, epoch int64) (bool, error) {
	return guarded(g.writes, ctx, func(ctx context.Context) (bool, error) {
		return g.next.SetSoldOut(ctx, item, soldOut, epoch)
	})
}

func (g *guardedEscrow) RestockedEpoch(ctx context.Context, item int64, soldOut bool) error {
	return g.writes.Do(ctx, func(ctx context.Context) error { return g.next.RestockedEpoch(ctx, item, soldOut) })
}

func (g *guardedEscrow) MarkEmptySoldOut(ctx context.Context) error {
	return g.writes.Do(ctx, g.next.MarkEmptySoldOut)
}

func (g *guardedEscrow) SoldOutItems(ctx context.Context) ([]int64, error) {
	return guarded(g.reads, ctx, g.next.SoldOutItems)
}

type storedMap struct {
	m     shard.StoredMap
	found bool
}

func (g *guardedEscrow) ShardMap(ctx context.Context) (shard.StoredMap, bool, error) {
	m, err := guarded(g.reads, ctx, func(ctx context.Context) (storedMap, error) {
		m, found, err := g.next.ShardMap(ctx)
		return storedMap{m, found}, err
	})
	return m.m, m.found, err
}

func (g *guardedEscrow) ReportMapEpoch(ctx context.Context, process string, epoch int64) error {
	return g.writes.Do(ctx, func(ctx context.Context) error { return g.next.ReportMapEpoch(ctx, process, epoch) })
}

func (g *guardedEscrow) LeaveMapReaders(ctx context.Context, process string) error {
	return g.writes.Do(ctx, func(ctx context.Context) error { return g.next.LeaveMapReaders(ctx, process) })
}
