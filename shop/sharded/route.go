package sharded

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
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
// reload that failed (the map in use is kept), and reports the epoch it
// routes by on the catalog's home at its start, at the first reload after
// that epoch changed, and otherwise every MapReportEvery reloads, failed
// or not: shop reshard waits for every process that reports to route by
// the new map before it moves or forgets a bucket (docs/sharding.md).
// Call LeaveMapReaders when the process stops.
//
// A reload reports the epoch that was in use before it, not the one it
// loads: a request that read the routing a moment before the reload
// still goes where the older map says, so a new map is reported one
// interval after it is loaded, once such requests had that long to end.
func (s *Store) RunMapReload(ctx context.Context, every time.Duration) {
	reported, since := s.MapEpoch(), 0
	if err := s.ReportMapEpoch(ctx); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "shard map epoch not reported", "error", err)
		since = MapReportEvery // due again at the first reload
	}
	s.runEvery(ctx, every, "shard map not reloaded", func(ctx context.Context) error {
		routed := s.MapEpoch()
		loadErr := s.LoadMap(ctx)
		if since++; routed == reported && since < MapReportEvery {
			return loadErr
		}
		reportErr := s.reportEpoch(ctx, routed)
		if reportErr == nil {
			reported, since = routed, 0
		}
		return errors.Join(loadErr, reportErr)
	})
}

// MapReportEvery is how many reloads of an unchanged map go by between
// two reports of its epoch: a report is a write on shard 1 (at two
// shards, the three processes' reports every second were 2.9 of an idle
// shard 1's 33 statements a second, 9 %, and its writes). It stays well under the ten reloads of
// reshard.ReaderExpiry, past which a process that has not reported is
// counted as dead; a changed epoch is reported at the next reload.
const MapReportEvery = 3

// ReportMapEpoch writes the epoch of the map in use as this process's on
// the catalog's home, unless the process left the map's readers.
func (s *Store) ReportMapEpoch(ctx context.Context) error { return s.reportEpoch(ctx, s.MapEpoch()) }

func (s *Store) reportEpoch(ctx context.Context, epoch int64) error {
	if s.left.Load() {
		return nil
	}
	return s.home().Escrow.ReportMapEpoch(ctx, s.process, epoch)
}

// LeaveMapReaders deletes this process's report (it stops routing): a
// reshard does not wait for it. A process that dies without it is counted
// as gone once its report is older than reshard.ReaderExpiry.
func (s *Store) LeaveMapReaders(ctx context.Context) error {
	s.left.Store(true)
	return s.home().Escrow.LeaveMapReaders(ctx, s.process)
}

// Process is the name this process reports its map's epoch under.
func (s *Store) Process() string { return s.process }

// processName is unique to this process: its host, its pid and a random
// part (a pid is reused after a restart, a container's host name too).
func processName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), rand.Text()[:8])
}

// MapEpoch is the epoch of the map in use (0: none stored, the balanced
// map of the shard count).
func (s *Store) MapEpoch() int64 { return s.route.Load().epoch }

// OwnerOfOrder is the shard (from 0) an order id is routed to by the map
// in use: where the checkout that made it wrote it.
func (s *Store) OwnerOfOrder(orderID int64) (int, error) { return s.byOrder(orderID, false) }

// OwnerOfSession is the shard (from 0) a session id is routed to by the
// map in use.
func (s *Store) OwnerOfSession(sessionID int64) (int, error) { return s.bySession(sessionID, false) }
