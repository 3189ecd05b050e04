package sharded

import (
	"context"
	"fmt"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/shard"
)

// MapReloadEvery is how often a replica reads the bucket map's epoch on
// the catalog's home, and reloads the map when it moved: the longest a
// replica routes by a map a resharding has replaced (docs/sharding.md).
const MapReloadEvery = time.Second

// routing is the map a replica routes by: the owner of every bucket, and
// the buckets whose writes are held while they move.
type routing struct {
	epoch  int64 // 0: shard.Balanced of the shard count, none stored
	m      *shard.Map
	moving map[shard.Bucket]bool
}

// owner is the shard of bucket b. A write to a bucket being moved is
// EUNAVAILABLE (503 with Retry-After): its rows are being copied to its
// new shard. A bucket of a shard this replica was not given (a map grown
// past its --db list) is EUNAVAILABLE too.
func (r *routing) owner(b shard.Bucket, write bool) (int, error) {
	if write && r.moving[b] {
		return 0, shop.Errorf(shop.EUNAVAILABLE, "bucket %d is moving to another shard; retry in a second", b)
	}
	return r.m.Owner(b), nil
}

// LoadMap reads the map stored on the catalog's home, when one is, and
// routes by it from now on. A stored map over more shards than this store
// has is refused (the replica must be started with every shard's URL),
// and the map in use is kept.
func (s *Store) LoadMap(ctx context.Context) error {
	stored, found, err := s.home().Escrow.ShardMap(ctx)
	if err != nil || !found || stored.Epoch == s.route.Load().epoch {
		return err
	}
	m, err := shard.ParseMap(stored.Text)
	if err != nil {
		return fmt.Errorf("the map on shard 1 (epoch %d): %w", stored.Epoch, err)
	}
	if m.Shards() != len(s.shards) {
		return fmt.Errorf("the map on shard 1 (epoch %d) has %d shards, this process was given %d: start it with one --db per shard", stored.Epoch, m.Shards(), len(s.shards))
	}
	r := &routing{epoch: stored.Epoch, m: m, moving: map[shard.Bucket]bool{}}
	for _, b := range stored.Moving {
		r.moving[b] = true
	}
	s.route.Store(r)
	s.log.InfoContext(ctx, "shard map loaded", "epoch", stored.Epoch, "moving", len(stored.Moving))
	return nil
}

// RunMapReload reloads the map every interval until ctx ends, logging a
// reload that failed (the map in use is kept).
func (s *Store) RunMapReload(ctx context.Context, every time.Duration) {
	s.runEvery(ctx, every, "shard map not reloaded", s.LoadMap)
}

// MapEpoch is the epoch of the map in use (0: none stored, the balanced
// map of the shard count).
func (s *Store) MapEpoch() int64 { return s.route.Load().epoch }

// OwnerOfOrder is the shard (from 0) an order id is routed to by the map
// in use: where the checkout that made it wrote it.
func (s *Store) OwnerOfOrder(orderID int64) (int, error) { return s.byOrder(orderID, false) }
