// Package backend opens the ordering service's state: the store on its
// database, then the job queue over the same database, whose workers use
// the store and whose jobs checkout inserts in its own transactions. The
// store is built first and knows nothing of the queue; the queue is built
// over the finished (wrapped) store; the order desk joins the two. It is the
// one way cmd/shop (through shop/app) and the tests open a database.
package backend

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/shard"
	"github.com/perfscale/perfscale/shop/sharded"
	"github.com/perfscale/perfscale/shop/sqlite"
	"github.com/perfscale/perfscale/shop/sqlstore"
)

// Config says which database to open and how to run its jobs.
type Config struct {
	// DatabaseURL selects PostgreSQL (postgres://...); empty selects the
	// embedded SQLite file at SQLitePath.
	DatabaseURL string
	// ShardURLs, when set, are the PostgreSQL shards (docs/sharding.md):
	// shard k is the k-th; DatabaseURL is not used. One URL is a sharded
	// store of one shard.
	ShardURLs []string
	// Postgres tunes the PostgreSQL pools (size, timeouts, read replicas).
	Postgres postgres.Options
	// SQLitePath is the embedded default's database file.
	SQLitePath string
	// SQLiteOptions tune the embedded database (a query hook in tests).
	SQLiteOptions []sqlite.Option
	// Jobs configures the queue; Jobs.Work makes this process run jobs.
	Jobs jobs.Config
	// BadQueries switches on the anti-patterns that change the store's
	// SQL (shop --antipattern missing-index,n-plus-one).
	BadQueries sqlstore.BadQueries
	// Wrap, if set, wraps the store (timing, metrics) before the workers
	// and the caller get it, so both use the wrapped store.
	Wrap func(shop.Store) shop.Store
	// GuardEscrow, if set, puts shard k's escrow (the stock quota calls
	// other shards' checkouts, the rebalancer and the reconciler make to
	// it) behind that shard's guards; it is called after Wrap for shard k.
	GuardEscrow func(k int, e sharded.Escrow) sharded.Escrow
	// EscrowWait bounds each escrow call a checkout makes to another
	// shard (sharded.Store.SetEscrowWait; 0: none but the request's).
	EscrowWait time.Duration
	// Now is the clock that expiry is judged by (nil: the wall clock).
	Now func() time.Time
}

// Queue is the job queue: it schedules confirmations in checkout
// transactions, and has a life cycle.
type Queue interface {
	shop.ConfirmationQueue
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	Backlog(ctx context.Context) (jobs.Backlog, error)
}

// Backend is an open store with its queue.
type Backend struct {
	// Store is the store, wrapped by Config.Wrap when one was given.
	Store shop.Store
	// Queue is the job queue over Store (nil until OpenQueue).
	Queue Queue
	// Desk is checkout and order reads over Store, under the rules, with
	// confirmations scheduled on Queue (nil until OpenQueue).
	Desk *shop.OrderDesk
	// Where names the database for logs: a file path or a URL without
	// its password.
	Where string
	// SQLite is the embedded database (nil on other stores), for tests
	// that look at River's tables.
	SQLite *sqlite.DB
	// Postgres is the PostgreSQL database (nil on the embedded default;
	// shard 1 on a sharded store).
	Postgres *postgres.DB
	// Shards are the shards' databases, shard 1 first (nil unless
	// Config.ShardURLs).
	Shards []*postgres.DB
	// Sharded is the store that routes over the shards (nil unless
	// Config.ShardURLs): its admin reads fan out.
	Sharded *sharded.Store
	// AdminReads are the admin's reads over every order: every shard's
	// on a sharded store, the one database's otherwise (a Reads of one).
	AdminReads shard.Reads

	now      func() time.Time
	newQueue func(ctx context.Context, store shop.Store, cfg jobs.Config) (Queue, error)
	seed     func(ctx context.Context, items []shop.Item) (int, error)
	close    func() error
}

// Open opens the store and its queue (OpenStore, then OpenQueue with
// cfg.Jobs).
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	b, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := b.OpenQueue(ctx, cfg.Jobs); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// OpenStore opens the database and builds the store, wrapped by cfg.Wrap.
// The embedded default migrates on open; PostgreSQL only checks that `shop
// migrate` has run (see Migrate), so N replicas starting together do not
// race.
func OpenStore(ctx context.Context, cfg Config) (*Backend, error) {
	if len(cfg.ShardURLs) > 0 {
		return openShards(ctx, cfg)
	}
	if cfg.DatabaseURL != "" {
		return openPostgres(ctx, cfg)
	}
	db, err := sqlite.Open(ctx, cfg.SQLitePath, cfg.SQLiteOptions...)
	if err != nil {
		return nil, err
	}
	raw := sqlite.NewStore(db, cfg.Now)
	b := &Backend{Store: wrap(cfg.Wrap, sqlstore.WithBadQueries(raw, cfg.BadQueries)), AdminReads: shard.Reads{raw}, Where: db.Path(), SQLite: db, now: cfg.Now, seed: raw.SeedIfEmpty, close: raw.Close}
	b.newQueue = func(ctx context.Context, store shop.Store, jc jobs.Config) (Queue, error) {
		driver := riversqlite.New(db.WriteDB())
		if !jc.NoMigrate {
			if err := migrateRiver(ctx, db, driver, jc.Logger); err != nil {
				return nil, err
			}
			jc.NoMigrate = true
		}
		return jobs.New[*sql.Tx](ctx, driver, store, jc)
	}
	return b, nil
}

// migrateRiver brings River's tables on the embedded file up to date under
// the file's migration lock, as the shop's own: several processes may
// open one fresh data directory at once, and River's migrator, like
// goose, would have each create the tables it found missing.
func migrateRiver(ctx context.Context, db *sqlite.DB, driver *riversqlite.Driver, log *slog.Logger) error {
	return db.Migrating(ctx, func(ctx context.Context) error {
		return jobs.Migrate(ctx, driver, log)
	})
}

func openPostgres(ctx context.Context, cfg Config) (*Backend, error) {
	db, err := postgres.Open(ctx, cfg.DatabaseURL, cfg.Postgres)
	if err != nil {
		return nil, err
	}
	if err := db.CheckSchema(ctx); err != nil {
		db.Close()
		return nil, err
	}
	maintain := partitionMaintenance(db, cfg.Now, cfg.Jobs.Logger)
	if err := maintain(ctx); err != nil {
		db.Close()
		return nil, err
	}
	raw := postgres.NewStore(db, cfg.Now)
	b := &Backend{Store: wrap(cfg.Wrap, sqlstore.WithBadQueries(raw, cfg.BadQueries)), AdminReads: shard.Reads{raw}, Where: "postgres " + db.Where(), Postgres: db, now: cfg.Now, seed: raw.SeedIfEmpty, close: raw.Close}
	b.newQueue = func(ctx context.Context, store shop.Store, jc jobs.Config) (Queue, error) {
		jc.NoMigrate = true
		jc.Maintenance = partitionMaintenance(db, cfg.Now, jc.Logger)
		if jc.Liveness == nil {
			// A killed worker's confirmations are taken up as soon as its
			// lock is found free, not after River's rescue horizon.
			jc.Liveness = db.WorkerLiveness()
		}
		if jc.PollInterval == 0 {
			// Workers are woken by LISTEN/NOTIFY when a job is inserted;
			// the poll is only the fallback for a lost notification.
			jc.PollInterval = time.Second
		}
		if jc.FetchCooldown == 0 {
			// Measured (scripts/bench-jobfetch.sh, docs/postgres.md):
			// a fifth fewer fetches than 50 ms, the confirmation's wait
			// within 30 ms of it; longer cooldowns only add wait.
			jc.FetchCooldown = PostgresFetchCooldown
		}
		q, err := jobs.New[pgx.Tx](ctx, riverpgxv5.New(db.Pool()), store, jc)
		if err != nil {
			return nil, fmt.Errorf("postgres at %s: %w", db.Where(), err)
		}
		return q, nil
	}
	return b, nil
}

// PostgresFetchCooldown is the least time between a PostgreSQL worker's
// fetches of jobs (River's default).
const PostgresFetchCooldown = 100 * time.Millisecond

// OpenQueue builds the job queue over the store (its workers get the
// wrapped store) and the order desk that schedules confirmations on it.
// Call it once, after OpenStore.
func (b *Backend) OpenQueue(ctx context.Context, cfg jobs.Config) error {
	q, err := b.newQueue(ctx, b.Store, cfg)
	if err != nil {
		return err
	}
	b.Queue = q
	b.Desk = shop.NewOrderDesk(b.Store, q, b.now)
	return nil
}

// Migrate brings the database's tables, the shop's and River's, up to
// date: `shop migrate`. It is safe to run while replicas serve, and two
// runs at once wait for each other.
func Migrate(ctx context.Context, cfg Config) (where string, err error) {
	if len(cfg.ShardURLs) > 0 {
		return migrateShards(ctx, cfg)
	}
	if cfg.DatabaseURL == "" {
		db, err := sqlite.Open(ctx, cfg.SQLitePath, cfg.SQLiteOptions...)
		if err != nil {
			return "", err
		}
		defer db.Close()
		return db.Path(), migrateRiver(ctx, db, riversqlite.New(db.WriteDB()), cfg.Jobs.Logger)
	}
	db, err := postgres.Open(ctx, cfg.DatabaseURL, cfg.Postgres)
	if err != nil {
		return "", err
	}
	defer db.Close()
	// River's migrator takes no lock of its own: the whole run is under
	// the database's migration lock, so two runs at once wait for each
	// other.
	return db.Where(), db.Migrating(ctx, func(ctx context.Context) error {
		if err := db.Migrate(ctx); err != nil {
			return err
		}
		// The months ahead exist as soon as the tables do.
		if err := partitionMaintenance(db, cfg.Now, cfg.Jobs.Logger)(ctx); err != nil {
			return err
		}
		if err := jobs.Migrate(ctx, riverpgxv5.New(db.Pool()), cfg.Jobs.Logger); err != nil {
			return fmt.Errorf("postgres at %s: %w", db.Where(), err)
		}
		return db.LeanJobStatistics(ctx)
	})
}

// partitionMaintenance is the upkeep of PostgreSQL's order partitions
// (postgres.DB.MaintainPartitions) by the clock now (nil: the wall clock),
// logging what it changed.
func partitionMaintenance(db *postgres.DB, now func() time.Time, log *slog.Logger) func(ctx context.Context) error {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context) error {
		ch, err := db.MaintainPartitions(ctx, now())
		if err != nil {
			return err
		}
		if len(ch.Created) > 0 || len(ch.Dropped) > 0 {
			log.InfoContext(ctx, "order partitions", "created", ch.Created, "dropped", ch.Dropped)
		}
		return nil
	}
}

func wrap(w func(shop.Store) shop.Store, s shop.Store) shop.Store {
	if w == nil {
		return s
	}
	return w(s)
}

// Seed inserts items when the catalog is empty; it reports how many.
func (b *Backend) Seed(ctx context.Context, items []shop.Item) (int, error) {
	n, err := b.seed(ctx, items)
	if err != nil {
		return n, fmt.Errorf("seed %s: %w", b.Where, err)
	}
	return n, nil
}

// Close closes the database. Stop the queue first.
func (b *Backend) Close() error { return b.close() }

// QueueShards is how many confirmation queues Queue has: one a shard, one
// on a single database.
func (b *Backend) QueueShards() int {
	if sq, ok := b.Queue.(*shardQueues); ok {
		return len(sq.queues)
	}
	return 1
}

// ShardBacklog is the waiting work of shard k's queue (k from 0; the one
// queue on a single database), which a replica's checkout backpressure
// judges each shard's sessions by.
func (b *Backend) ShardBacklog(ctx context.Context, k int) (jobs.Backlog, error) {
	sq, ok := b.Queue.(*shardQueues)
	if !ok {
		return b.Queue.Backlog(ctx)
	}
	if k < 0 || k >= len(sq.queues) {
		return jobs.Backlog{}, fmt.Errorf("no shard %d: there are %d", k+1, len(sq.queues))
	}
	bl, err := sq.queues[k].Backlog(ctx)
	if err != nil {
		return bl, fmt.Errorf("shard %d: %w", k+1, err)
	}
	return bl, nil
}

// CatalogVersionChanges reports the catalog version to fn each time it
// moves (the catalog's database notifies it, postgres.CatalogVersionChannel),
// and reads it afresh for fn each time the listener (re)connects, when a
// move may have been missed; it runs until ctx ends. It returns false at
// once on the embedded default, which has no notifications.
func (b *Backend) CatalogVersionChanges(ctx context.Context, fn func(version int64)) bool {
	if b.Postgres == nil {
		return false
	}
	b.Postgres.Listen(ctx, postgres.CatalogVersionChannel, func(payload string, reconnected bool) {
		if reconnected {
			if v, err := b.Store.CatalogVersion(ctx); err == nil {
				fn(v)
			}
			return
		}
		if v, err := strconv.ParseInt(payload, 10, 64); err == nil {
			fn(v)
		}
	})
	return true
}
