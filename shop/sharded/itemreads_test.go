package sharded_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/sharded"
)

// copyStore is one shard's copy of the catalog: it counts the item reads
// it answers, and fails them all while down.
type copyStore struct {
	shop.Store // nil: only the item reads are called
	k          int
	reads      atomic.Int64
	down       atomic.Bool
}

func (c *copyStore) answer() error {
	if c.down.Load() {
		return shop.Errorf(shop.EUNAVAILABLE, "shard %d does not answer", c.k+1)
	}
	c.reads.Add(1)
	return nil
}

func (c *copyStore) Item(_ context.Context, id int64) (*shop.Item, error) {
	if err := c.answer(); err != nil {
		return nil, err
	}
	return &shop.Item{ID: id, Name: fmt.Sprintf("shard %d", c.k+1)}, nil
}

func (c *copyStore) Items(_ context.Context, ids []int64) ([]shop.Item, error) {
	if err := c.answer(); err != nil {
		return nil, err
	}
	items := make([]shop.Item, len(ids))
	for i, id := range slices.Sorted(slices.Values(ids)) { // in id order, as the store's contract says
		items[i] = shop.Item{ID: id, Name: fmt.Sprintf("shard %d", c.k+1)}
	}
	return items, nil
}

func copies(t *testing.T, n int) (*sharded.Store, []*copyStore) {
	t.Helper()
	cs := make([]*copyStore, n)
	shards := make([]sharded.Shard, n)
	for k := range cs {
		cs[k] = &copyStore{k: k}
		shards[k] = sharded.Shard{Store: cs[k]}
	}
	s, err := sharded.New(shards, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, cs
}

// The item pages' reads (a replica's cache misses most of them) are
// spread over every shard's copy, not all on shard 1, the catalog's
// home: on the old code shard 1 answered every one, and at two shards
// it ran 1.26 times shard 2's CPU a request (docs/scaleout.md).
func TestItemReadsSpreadOverEveryShardsCopy(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{1, 2, 3, 4} { // 240 items: an even share on each
		t.Run(fmt.Sprintf("%d shards", n), func(t *testing.T) {
			s, cs := copies(t, n)
			const items = 240
			var ids []int64
			for id := int64(items); id >= 1; id-- {
				if _, err := s.Item(ctx, id); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			together, err := s.Items(ctx, ids) // a cache's refresh: one call a shard
			if err != nil {
				t.Fatal(err)
			}
			for k, c := range cs {
				if got, want := c.reads.Load(), int64(items/n+1); got != want {
					t.Errorf("shard %d answered %d item reads, want %d (an even share of %d, and one of the refresh's)", k+1, got, want, items)
				}
			}
			for i, it := range together {
				if want := fmt.Sprintf("shard %d", (i+1)%n+1); it.ID != int64(i+1) || it.Name != want {
					t.Fatalf("the refresh's item %d is id %d from %q, want id %d from %q (id order, each from the copy Item reads)", i, it.ID, it.Name, i+1, want)
				}
			}
		})
	}
}

// A shard that does not answer leaves its items to another's copy; only
// the home's failing marks the catalog as read from a copy.
func TestAnItemsShardThatFailsLeavesItToAnotherCopy(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		down     int   // the shard (from 0) that fails
		item     int64 // read from shard item % 2 first
		from     string
		fromCopy bool
	}{
		{"shard 2 down, its item from the home", 1, 1, "shard 1", false},
		{"shard 2 down, the home's item", 1, 2, "shard 1", false},
		{"the home down, its item from shard 2", 0, 2, "shard 2", true},
		{"the home down, shard 2's item", 0, 1, "shard 2", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, cs := copies(t, 2)
			cs[tc.down].down.Store(true)
			it, err := s.Item(ctx, tc.item)
			if err != nil {
				t.Fatal(err)
			}
			if it.Name != tc.from || s.CatalogFromCopy() != tc.fromCopy {
				t.Errorf("item %d from %q, CatalogFromCopy %v; want from %q, %v", tc.item, it.Name, s.CatalogFromCopy(), tc.from, tc.fromCopy)
			}
		})
	}
}
