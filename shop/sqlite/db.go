// Package sqlite is the embedded storage adapter of the ordering service: a
// single SQLite file (modernc.org/sqlite, no cgo) that holds the catalog,
// sessions, carts, orders, the mail sink and, through River's SQLite driver,
// the background job queue, so an order and its job commit together.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"net/url"
	"runtime"
	"time"

	"github.com/pressly/goose/v3"
	msqlite "modernc.org/sqlite"

	"github.com/perfscale/perfscale/shop/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is an open SQLite database with two pools: SQLite allows one writer at
// a time, so every write goes through a single connection (no busy-waiting
// writers fighting for the lock), while reads use several connections that
// WAL lets run alongside the writer.
type DB struct {
	path  string
	write *sql.DB
	read  *sql.DB
}

// Open opens (creating if needed) the database file at path and migrates it
// to the latest schema, under the migration lock (migratelock.go), so
// processes opening one fresh file at once do not race.
func Open(ctx context.Context, path string, opts ...Option) (*DB, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	write, err := openPool(dsn(path, "immediate"), o)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	read, err := openPool(dsn(path, "deferred"), o)
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	if o.noPool {
		write.SetMaxIdleConns(0)
		read.SetMaxIdleConns(0)
	}
	db := &DB{path: path, write: write, read: read}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func openPool(dsn string, o options) (*sql.DB, error) {
	c, err := msqlite.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(hookConnector{Connector: c, hook: o.hook, noCache: o.noCache}), nil
}

// dsn builds a modernc.org/sqlite connection string. Immediate transactions
// take the write lock at BEGIN, so a read-then-write transaction cannot fail
// half-way with SQLITE_BUSY when another writer got there first.
//
// Every write goes through the immediate (write) pool, and it runs with
// synchronous(FULL): in WAL mode each commit then syncs the log before it
// returns, so a checkout answered 201 survives an OS crash or power loss,
// not only a process crash (NORMAL syncs only at checkpoints). The read
// pool never commits a write, so its setting costs nothing either way.
func dsn(path, txlock string) string {
	sync := "synchronous(NORMAL)"
	if txlock == "immediate" {
		sync = "synchronous(FULL)"
	}
	q := url.Values{}
	for _, p := range []string{
		"journal_mode(WAL)",
		"busy_timeout(10000)",
		"foreign_keys(ON)",
		sync,
	} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", txlock)
	q.Set("_time_format", "sqlite")
	return "file:" + path + "?" + q.Encode()
}

func (db *DB) migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db.write, fsys)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	// Another process opening the same file migrates it at the same time
	// only under the migration lock (migratelock.go).
	return db.Migrating(ctx, func(ctx context.Context) error {
		if _, err := p.Up(ctx); err != nil {
			return fmt.Errorf("migrate %s: %w", db.path, err)
		}
		return nil
	})
}

// WriteDB is the single-connection pool that every write, and River, use.
func (db *DB) WriteDB() *sql.DB { return db.write }

// Path is the database file.
func (db *DB) Path() string { return db.path }

// Stats are both pools' statistics: connections opened and closed.
func (db *DB) Stats() (write, read sql.DBStats) { return db.write.Stats(), db.read.Stats() }

// Close closes both pools.
func (db *DB) Close() error {
	rerr := db.read.Close()
	werr := db.write.Close()
	if werr != nil {
		return werr
	}
	return rerr
}

// Store is the shop's store on a SQLite database: the logic both stores
// share (sqlstore), over this database's pools.
type Store = sqlstore.Store

// NewStore returns a store on db; now is the clock that expiry is judged
// by (nil: the wall clock).
func NewStore(db *DB, now func() time.Time) *Store {
	return sqlstore.New(flowDB{db}, dialect{}, now)
}
