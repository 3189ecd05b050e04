package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/shard"
	"github.com/perfscale/perfscale/shop/sharded"
)

// ReconcileEvery is how often a worker of a sharded store moves quota
// ahead of demand (sharded.Rebalancer) and finishes the quota transfers
// a crash left half done (sharded.Reconcile).
const ReconcileEvery = 5 * time.Second

// openShards opens every shard of cfg.ShardURLs (shard k the k-th URL,
// which its database must agree to), each shard's store wrapped by
// cfg.Wrap, and the store that routes over them. Each shard gets its own
// job queue on its own River tables (OpenQueue).
func openShards(ctx context.Context, cfg Config) (*Backend, error) {
	var dbs []*postgres.DB
	closeAll := func() {
		for _, db := range dbs {
			db.Close()
		}
	}
	shards := make([]sharded.Shard, len(cfg.ShardURLs))
	raws := make([]*postgres.Store, len(cfg.ShardURLs))
	var where []string
	for k, url := range cfg.ShardURLs {
		db, err := openShard(ctx, cfg, url)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("shard %d: %w", k+1, err)
		}
		dbs = append(dbs, db)
		raws[k] = postgres.NewShardStore(db, cfg.Now)
		shards[k] = sharded.Shard{Store: wrap(cfg.Wrap, raws[k]), Escrow: db, Reads: raws[k]}
		if cfg.GuardEscrow != nil {
			shards[k].Escrow = cfg.GuardEscrow(k, db)
		}
		where = append(where, db.Where())
	}
	err := ensureShardMap(ctx, dbs)
	var routed *sharded.Store
	if err == nil {
		routed, err = sharded.New(shards, cfg.Jobs.Logger)
	}
	if err == nil {
		routed.SetEscrowWait(cfg.EscrowWait)
	}
	if err == nil {
		err = routed.LoadMap(ctx)
	}
	if err != nil {
		closeAll()
		return nil, err
	}
	b := &Backend{Store: routed, Sharded: routed, AdminReads: routed.Reads(), Where: fmt.Sprintf("postgres, %d shards: %s", len(dbs), strings.Join(where, ", ")),
		Postgres: dbs[0], Shards: dbs, now: cfg.Now, close: routed.Close}
	b.seed = func(ctx context.Context, items []shop.Item) (int, error) {
		return routed.Seed(ctx, items, func(ctx context.Context, k int, items []shop.Item) (int, error) {
			return raws[k].SeedIfEmpty(ctx, items)
		})
	}
	b.newQueue = func(ctx context.Context, _ shop.Store, jc jobs.Config) (Queue, error) {
		return newShardQueues(ctx, cfg, routed, dbs, shards, jc)
	}
	return b, nil
}

// openShard opens one shard's database, checks its schema and keeps its
// order partitions; claiming it as shard k is ensureShardMap's.
func openShard(ctx context.Context, cfg Config, url string) (*postgres.DB, error) {
	db, err := postgres.Open(ctx, url, cfg.Postgres)
	if err != nil {
		return nil, err
	}
	err = db.CheckSchema(ctx)
	if err == nil {
		err = partitionMaintenance(db, cfg.Now, cfg.Jobs.Logger)(ctx)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// ensureShardMap makes sure the bucket map stored on shard 1 names
// exactly the shards of dbs, storing shard.Balanced(len(dbs)) when none
// is stored and none of them has served yet (or all have: a deployment
// from before the map was stored at the start), and then claims each
// database as its shard. So a process given a shard that the map does not
// name (one not yet added by shop reshard --add-only) refuses to start,
// instead of routing a share of the sessions to an empty shard
// (docs/sharding.md, "Resharding while the service runs").
func ensureShardMap(ctx context.Context, dbs []*postgres.DB) error {
	n := len(dbs)
	stored, found, err := dbs[0].ShardMap(ctx)
	if err != nil {
		return err
	}
	if !found {
		if stored, err = storeFirstMap(ctx, dbs); err != nil {
			return err
		}
	}
	m, err := shard.ParseMap(stored.Text)
	if err != nil {
		return fmt.Errorf("the map on shard 1 (epoch %d): %w", stored.Epoch, err)
	}
	switch {
	case m.Shards() < n:
		return fmt.Errorf("shard %d is not in the bucket map on shard 1 (%d shards, epoch %d): add it with shop reshard --db ... --add URL --add-only before giving its URL to shop (docs/sharding.md)", m.Shards()+1, m.Shards(), stored.Epoch)
	case m.Shards() > n:
		return fmt.Errorf("the bucket map on shard 1 (epoch %d) has %d shards, %d were given: give one --db per shard, in shard order", stored.Epoch, m.Shards(), n)
	}
	for k, db := range dbs {
		if err := db.ClaimShard(ctx, k+1); err != nil {
			return fmt.Errorf("shard %d: %w", k+1, err)
		}
	}
	return nil
}

// storeFirstMap stores shard.Balanced(len(dbs)) as the map's first
// epoch, unless some of dbs have served as shards and others not: then
// the new ones are not in the map the others routed by, and the map is
// refused. The map is stored before any database is claimed, so a process
// that finds some claimed finds the map too when another process stored
// it.
func storeFirstMap(ctx context.Context, dbs []*postgres.DB) (shard.StoredMap, error) {
	var claimed, fresh []string
	for k, db := range dbs {
		number, ok, err := db.ShardNumber(ctx)
		if err != nil {
			return shard.StoredMap{}, err
		}
		if ok && number != k+1 {
			return shard.StoredMap{}, fmt.Errorf("postgres at %s is shard %d, but it is given as shard %d: keep the --db list in the order the shards were made", db.Where(), number, k+1)
		}
		if ok {
			claimed = append(claimed, strconv.Itoa(k+1))
		} else {
			fresh = append(fresh, strconv.Itoa(k+1))
		}
	}
	if len(claimed) > 0 && len(fresh) > 0 {
		stored, found, err := dbs[0].ShardMap(ctx)
		if err != nil || found {
			return stored, err
		}
		return stored, fmt.Errorf("shards %s served without a stored bucket map and shards %s are new: run shop migrate with the shards that served first, then add the new ones with shop reshard --add URL --add-only (docs/sharding.md)",
			strings.Join(claimed, ", "), strings.Join(fresh, ", "))
	}
	m, err := shard.Balanced(len(dbs))
	if err != nil {
		return shard.StoredMap{}, err
	}
	if _, err := dbs[0].SetShardMap(ctx, shard.StoredMap{Epoch: 1, Text: m.String()}); err != nil {
		return shard.StoredMap{}, err
	}
	// Stored, or another process stored one first: read whichever it is.
	stored, found, err := dbs[0].ShardMap(ctx)
	if err == nil && !found {
		err = errors.New("the bucket map stored on shard 1 is not there")
	}
	return stored, err
}

// shardQueues is one River client per shard in one process, each on its
// shard's pool with its shard's store: a checkout's job is inserted in
// its own transaction on its own shard, and runs there. A worker process
// also runs the quota rebalancer and the reconciler.
type shardQueues struct {
	queues []Queue
	jobs   []shop.AtOnceQueue // the same queues: each shard's job row
	routed *sharded.Store
	log    *slog.Logger
	work   bool
	stop   context.CancelFunc
	done   sync.WaitGroup
}

func newShardQueues(ctx context.Context, cfg Config, routed *sharded.Store, dbs []*postgres.DB, shards []sharded.Shard, jc jobs.Config) (*shardQueues, error) {
	log := jc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sq := &shardQueues{routed: routed, log: log, work: jc.Work}
	for k, db := range dbs {
		kc := jc
		kc.NoMigrate = true
		kc.Maintenance = partitionMaintenance(db, cfg.Now, jc.Logger)
		if kc.PollInterval == 0 {
			kc.PollInterval = time.Second
		}
		q, err := jobs.New[pgx.Tx](ctx, riverpgxv5.New(db.Pool()), shards[k].Store, kc)
		if err != nil {
			return nil, fmt.Errorf("shard %d: postgres at %s: %w", k+1, db.Where(), err)
		}
		sq.queues = append(sq.queues, q)
		sq.jobs = append(sq.jobs, q)
	}
	routed.SetConfirmationJobs(func(k int) shop.JobRow { return sq.jobs[k].ConfirmationJob() })
	return sq, nil
}

// ConfirmationJob lets the desk place a checkout at once; the sharded
// store replaces the row by the session's shard's queue's own
// (sharded.Store.SetConfirmationJobs), whose notification that queue
// decides, so this one decides none.
func (sq *shardQueues) ConfirmationJob() shop.JobRow { return jobs.ConfirmationRow() }

// EnqueueOrderPlaced inserts the job with the queue of the order's shard,
// in tx, the checkout's transaction there.
func (sq *shardQueues) EnqueueOrderPlaced(ctx context.Context, tx shop.Tx, orderID int64) error {
	k, err := sq.routed.OwnerOfOrder(orderID)
	if err != nil {
		return err
	}
	return sq.queues[k].EnqueueOrderPlaced(ctx, tx, orderID)
}

// Start starts every shard's queue (and the reconciler, in a worker).
func (sq *shardQueues) Start(ctx context.Context) error {
	for k, q := range sq.queues {
		if err := q.Start(ctx); err != nil {
			for _, started := range sq.queues[:k] {
				started.Stop(ctx)
			}
			return fmt.Errorf("shard %d: %w", k+1, err)
		}
	}
	if sq.work {
		rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		sq.stop = stop
		sq.done.Add(1)
		go sq.reconcile(rctx)
	}
	return nil
}

func (sq *shardQueues) reconcile(ctx context.Context) {
	defer sq.done.Done()
	t := time.NewTicker(ReconcileEvery)
	defer t.Stop()
	rebalancer := sq.routed.NewRebalancer(nil)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		round, err := rebalancer.Round(ctx)
		if err != nil && ctx.Err() == nil {
			sq.log.WarnContext(ctx, "rebalance quotas", "error", err)
		}
		if round.Transfers > 0 {
			sq.log.InfoContext(ctx, "quota moved ahead of demand", "transfers", round.Transfers, "units", round.Units)
		}
		n, err := sq.routed.Reconcile(ctx, sharded.TransferGrace)
		if err != nil && ctx.Err() == nil {
			sq.log.WarnContext(ctx, "reconcile quotas", "error", err)
		}
		if n > 0 {
			sq.log.InfoContext(ctx, "quota transfers finished by the reconciler", "transfers", n)
		}
	}
}

// Stop stops the reconciler and every shard's queue.
func (sq *shardQueues) Stop(ctx context.Context) error {
	if sq.stop != nil {
		sq.stop()
		sq.done.Wait()
	}
	var errs []error
	for k, q := range sq.queues {
		if err := q.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shard %d: %w", k+1, err))
		}
	}
	return errors.Join(errs...)
}

// Backlog is every shard's waiting jobs together, the oldest's age the
// oldest of all: the metrics' figure. Checkout backpressure reads each
// shard's on its own (Backend.ShardBacklog).
func (sq *shardQueues) Backlog(ctx context.Context) (jobs.Backlog, error) {
	var sum jobs.Backlog
	for k, q := range sq.queues {
		b, err := q.Backlog(ctx)
		if err != nil {
			return sum, fmt.Errorf("shard %d: %w", k+1, err)
		}
		sum.Waiting += b.Waiting
		sum.OldestAge = max(sum.OldestAge, b.OldestAge)
	}
	return sum, nil
}

// migrateShards is Migrate of every shard, one after the other.
func migrateShards(ctx context.Context, cfg Config) (string, error) {
	var where []string
	for k, url := range cfg.ShardURLs {
		one := cfg
		one.ShardURLs, one.DatabaseURL = nil, url
		w, err := Migrate(ctx, one)
		if err != nil {
			return strings.Join(append(where, w), ", "), fmt.Errorf("shard %d: %w", k+1, err)
		}
		where = append(where, w)
	}
	var dbs []*postgres.DB
	defer func() {
		for _, db := range dbs {
			db.Close()
		}
	}()
	for k, url := range cfg.ShardURLs {
		db, err := postgres.Open(ctx, url, cfg.Postgres)
		if err != nil {
			return strings.Join(where, ", "), fmt.Errorf("shard %d: %w", k+1, err)
		}
		dbs = append(dbs, db)
	}
	// The map is stored with the shards: a process given a shard the map
	// does not name is refused from now on.
	return strings.Join(where, ", "), ensureShardMap(ctx, dbs)
}

// OpenForReshard opens the shards for shop reshard: cfg.ShardURLs, then
// the added ones, migrated first. Every shard is claimed by its number in
// that order (a database that is another shard is refused), and each
// added shard is given the catalog with no quota. Close the set's
// databases when done.
func OpenForReshard(ctx context.Context, cfg Config, added []string) (postgres.ShardSet, error) {
	var set postgres.ShardSet
	fail := func(err error) (postgres.ShardSet, error) {
		for _, db := range set {
			db.Close()
		}
		return nil, err
	}
	urls := append(slices.Clone(cfg.ShardURLs), added...)
	for k, url := range urls {
		isNew := k >= len(cfg.ShardURLs)
		if isNew {
			one := cfg
			one.ShardURLs, one.DatabaseURL = nil, url
			if _, err := Migrate(ctx, one); err != nil {
				return fail(fmt.Errorf("shard %d (added): %w", k+1, err))
			}
		}
		db, err := openShard(ctx, cfg, url)
		if err == nil {
			if err = db.ClaimShard(ctx, k+1); err != nil {
				db.Close()
			}
		}
		if err != nil {
			return fail(fmt.Errorf("shard %d: %w", k+1, err))
		}
		set = append(set, db)
		if isNew {
			if _, err := db.PrepareShard(ctx, set[0]); err != nil {
				return fail(fmt.Errorf("shard %d (added): %w", k+1, err))
			}
		}
	}
	return set, nil
}
