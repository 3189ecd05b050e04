package shard

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// Reader is what one shard (or a store on one database) answers to the
// admin's reads over every order.
type Reader interface {
	// SalesPerItem is the units ordered of each item.
	SalesPerItem(ctx context.Context) (map[int64]int64, error)
	// OrdersByStatus is the newest orders in status, at most limit,
	// without their lines.
	OrdersByStatus(ctx context.Context, status shop.Status, limit int) ([]shop.Order, error)
}

// Reads are the admin's reads over every shard: each read asks every
// shard at once under one deadline (FanOut) and merges what came; its
// error is a *PartialError naming the shards that did not answer, next to
// the others' merged answer. A store on one database is Reads of one, so
// its answers have the same form.
type Reads []Reader

// Shards is how many shards a read asks.
func (rs Reads) Shards() int { return len(rs) }

// SalesPerItem is the units ordered of each item on every shard.
func (rs Reads) SalesPerItem(ctx context.Context, timeout time.Duration) (map[int64]int64, error) {
	answers, err := FanOut(ctx, len(rs), timeout, func(ctx context.Context, k int) (map[int64]int64, error) {
		return rs[k].SalesPerItem(ctx)
	})
	sum := map[int64]int64{}
	for _, a := range answers {
		for item, n := range a.Value {
			sum[item] += n
		}
	}
	return sum, err
}

// OrdersByStatus is the newest orders in status over every shard, at
// most limit, newest first.
func (rs Reads) OrdersByStatus(ctx context.Context, status shop.Status, limit int, timeout time.Duration) ([]shop.Order, error) {
	answers, err := FanOut(ctx, len(rs), timeout, func(ctx context.Context, k int) ([]shop.Order, error) {
		return rs[k].OrdersByStatus(ctx, status, limit)
	})
	all := []shop.Order{}
	for _, a := range answers {
		all = append(all, a.Value...)
	}
	SortNewestFirst(all)
	if len(all) > limit {
		all = all[:limit]
	}
	return all, err
}

// SortNewestFirst orders orders by creation, newest first (ids of
// different shards are not in creation order: the bucket is in their low
// bits, the month in their high ones).
func SortNewestFirst(orders []shop.Order) {
	slices.SortFunc(orders, func(a, b shop.Order) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
}
