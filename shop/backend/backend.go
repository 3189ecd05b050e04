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

	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/sqlite"
)

// Config says which database to open and how to run its jobs.
type Config struct {
	// SQLitePath is the embedded default's database file.
	SQLitePath string
	// SQLiteOptions tune the embedded database (a query hook in tests).
	SQLiteOptions []sqlite.Option
	// Jobs configures the queue; Jobs.Work makes this process run jobs.
	Jobs jobs.Config
	// Wrap, if set, wraps the store (timing, metrics) before the workers
	// and the caller get it, so both use the wrapped store.
	Wrap func(shop.Store) shop.Store
}

// Queue is the job queue's life cycle.
type Queue interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
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

	seed  func(ctx context.Context, items []shop.Item) (int, error)
	close func() error
}

// Open opens the database, migrates it, and builds the store and the queue.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
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
	raw := sqlite.NewStore(db, q)
	b := &Backend{
		Store: wrap(cfg.Wrap, raw), Queue: q, Where: db.Path(), SQLite: db,
		seed: raw.SeedIfEmpty, close: raw.Close,
	}
	b.Orders = shop.NewOrders(b.Store, nil)
	late.Store = b.Store
	return b, nil
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
