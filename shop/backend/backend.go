// Package backend opens the ordering service's state as one unit: the store
// and the job queue whose jobs it inserts in its own transactions, on the
// same database. The two need each other (checkout enqueues through the
// queue, the queue's workers use the store), so they are built together,
// here, by the one constructor that cmd/shop and the tests share.
package backend

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/sqlite"
)

// Config says which database to open and how to run its jobs.
type Config struct {
	// DatabaseURL selects PostgreSQL (postgres://...); empty selects the
	// embedded SQLite file at SQLitePath.
	DatabaseURL string
	// Postgres tunes the PostgreSQL pools (size, timeouts, read replicas).
	Postgres postgres.Options
	// SQLitePath is the embedded default's database file.
	SQLitePath string
	// SQLiteOptions tune the embedded database (a query hook in tests).
	SQLiteOptions []sqlite.Option
	// Jobs configures the queue; Jobs.Work makes this process run jobs.
	Jobs jobs.Config
	// Wrap, if set, wraps the store (timing, metrics) before the workers
	// and the caller get it, so both use the wrapped store.
	Wrap func(shop.Store) shop.Store
	// Now is the clock that expiry is judged by (nil: the wall clock).
	Now func() time.Time
}

// Queue is the job queue's life cycle.
type Queue interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	Backlog(ctx context.Context) (jobs.Backlog, error)
}

// Backend is an open store with its queue.
type Backend struct {
	// Store is the store, wrapped by Config.Wrap when one was given.
	Store shop.Store
	// Orders is checkout and order reads over Store, under the rules.
	Orders *shop.Orders
	Queue  Queue
	// Where names the database for logs: a file path or a URL without
	// its password.
	Where string
	// SQLite is the embedded database (nil on other stores), for tests
	// that look at River's tables.
	SQLite *sqlite.DB
	// Postgres is the PostgreSQL database (nil on the embedded default).
	Postgres *postgres.DB

	seed  func(ctx context.Context, items []shop.Item) (int, error)
	close func() error
}

// Open opens the database and builds the store and the queue. The embedded
// default migrates on open; PostgreSQL only checks that `shop migrate` has
// run (see Migrate), so N replicas starting together do not race.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.DatabaseURL != "" {
		return openPostgres(ctx, cfg)
	}
	db, err := sqlite.Open(ctx, cfg.SQLitePath, cfg.SQLiteOptions...)
	if err != nil {
		return nil, err
	}
	// The queue's workers get the store once it exists: it needs the queue
	// to enqueue in its checkout transaction.
	late := &lateStore{}
	q, err := jobs.New[*sql.Tx](ctx, riversqlite.New(db.WriteDB()), late, cfg.Jobs)
	if err != nil {
		db.Close()
		return nil, err
	}
	raw := sqlite.NewStore(db, q, cfg.Now)
	b := &Backend{Queue: q, Where: db.Path(), SQLite: db, seed: raw.SeedIfEmpty, close: raw.Close}
	b.finish(cfg, raw, late)
	return b, nil
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
	late := &lateStore{}
	jc := cfg.Jobs
	jc.NoMigrate = true
	if jc.PollInterval == 0 {
		// Workers are woken by LISTEN/NOTIFY when a job is inserted; the
		// poll is only the fallback for a lost notification.
		jc.PollInterval = time.Second
	}
	q, err := jobs.New[pgx.Tx](ctx, riverpgxv5.New(db.Pool()), late, jc)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres at %s: %w", db.Where(), err)
	}
	raw := postgres.NewStore(db, q, cfg.Now)
	b := &Backend{Queue: q, Where: "postgres " + db.Where(), Postgres: db, seed: raw.SeedIfEmpty, close: raw.Close}
	b.finish(cfg, raw, late)
	return b, nil
}

func (b *Backend) finish(cfg Config, raw shop.Store, late *lateStore) {
	b.Store = wrap(cfg.Wrap, raw)
	b.Orders = shop.NewOrders(b.Store, cfg.Now)
	late.Store = b.Store
}

// Migrate brings the database's tables, the shop's and River's, up to
// date: `shop migrate`. It is safe to run while replicas serve, and two
// runs at once wait for each other.
func Migrate(ctx context.Context, cfg Config) (where string, err error) {
	if cfg.DatabaseURL == "" {
		db, err := sqlite.Open(ctx, cfg.SQLitePath, cfg.SQLiteOptions...)
		if err != nil {
			return "", err
		}
		defer db.Close()
		return db.Path(), jobs.Migrate(ctx, riversqlite.New(db.WriteDB()), cfg.Jobs.Logger)
	}
	db, err := postgres.Open(ctx, cfg.DatabaseURL, cfg.Postgres)
	if err != nil {
		return "", err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return db.Where(), err
	}
	if err := jobs.Migrate(ctx, riverpgxv5.New(db.Pool()), cfg.Jobs.Logger); err != nil {
		return db.Where(), fmt.Errorf("postgres at %s: %w", db.Where(), err)
	}
	return db.Where(), nil
}

func wrap(w func(shop.Store) shop.Store, s shop.Store) shop.Store {
	if w == nil {
		return s
	}
	return w(s)
}

// lateStore lets the workers be built before the store they use.
type lateStore struct{ shop.Store }

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
