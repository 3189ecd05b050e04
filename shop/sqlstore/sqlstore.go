// Package sqlstore is the store logic that the SQLite and PostgreSQL
// adapters share, written once: the catalog, sessions, carts, checkout's
// primitives, orders and their paging, the worker's status changes, the
// event outbox and pruning. Its SQL is plain text in the code, in the
// subset both databases run, with `?` placeholders (the PostgreSQL adapter
// numbers them). What genuinely differs per database stays in its adapter,
// behind DB (where each kind of read goes, how a write transaction is run
// and serialised, what an error means) and Dialect (the few statements
// whose text must differ).
package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// Row is one result row, read once.
type Row interface {
	Scan(dest ...any) error
}

// Rows is a result set (sql.Rows and pgx.Rows both fit, given a Close
// without a result).
type Rows interface {
	Row
	Next() bool
	Err() error
	Close()
}

// Querier runs statements: a pool, a connection or a transaction of
// either driver. A missing row is reported by Row.Scan as an error that
// errors.Is matches with sql.ErrNoRows (pgx.ErrNoRows does).
type Querier interface {
	// Exec runs a statement and reports how many rows it changed.
	Exec(ctx context.Context, query string, args ...any) (rowsAffected int64, err error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Tx is an open write transaction.
type Tx interface {
	Querier
	// Driver is the transaction as its driver knows it (*sql.Tx, pgx.Tx),
	// for work that must commit with it: the job queue's.
	Driver() shop.Tx
}

// DB is what a database does its own way: where each kind of read goes,
// how a write transaction is run and serialised, what a session's write
// must leave behind for later reads, and seeding.
type DB interface {
	// Ping checks that the database (the one writes go to) answers.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
	// Seed inserts items, stamped updated at now, when the catalog has
	// none, and bumps the catalog's version; it reports how many it
	// inserted.
	Seed(ctx context.Context, items []shop.Item, now time.Time) (int, error)
	// Catalog serves reads that need no session (items, the menu's
	// version); a read replica may answer them.
	Catalog() Querier
	// Fresh serves reads that must see every committed write: sessions,
	// carts, the worker's and the outbox relay's reads.
	Fresh() Querier
	// Writer runs writes that are one statement, outside a transaction.
	Writer() Querier
	// SessionReader serves a session's reads of its own orders; it must see
	// the session's writes. release gives a borrowed connection back.
	SessionReader(ctx context.Context, sessionID int64) (q Querier, release func(), err error)
	// InSnapshot runs fn in a read-only transaction that sees one
	// snapshot of the catalog.
	InSnapshot(ctx context.Context, fn func(q Querier) error) error
	// InTx runs fn in a write transaction and commits it if fn succeeds.
	InTx(ctx context.Context, fn func(tx Tx) error) error
	// LockSession, inside tx, keeps the session's cart changes and
	// checkouts from running alongside each other (a no-op where every
	// write transaction already runs alone).
	LockSession(ctx context.Context, tx Tx, sessionID int64) error
	// SessionWrote records, after a session's write committed, what later
	// reads of that session need to find it (a no-op where every read
	// sees every write).
	SessionWrote(ctx context.Context, sessionID int64) error
}

// Dialect holds the statements whose text must differ between the
// databases.
type Dialect interface {
	// InIDs is a condition that column is one of ids, with its arguments
	// (a list of placeholders, or one array).
	InIDs(column string, ids []int64) (cond string, args []any)
	// InsertOrderLines is the statement that inserts all of o's lines,
	// with its arguments.
	InsertOrderLines(o *shop.Order) (query string, args []any)
	// NewOrderID is the value of a new order's id column, created at
	// createdAt (unix microseconds), with its arguments: NULL lets the
	// database number it; PostgreSQL's ids carry their partition's month.
	// sessionID is the order's session: a sharded PostgreSQL store puts
	// the session's bucket in the order's id (docs/sharding.md).
	NewOrderID(createdAt, sessionID int64) (expr string, args []any)
	// NewSessionID is the value of a new session's id column, with its
	// arguments; empty lets the database number it as it always has. A
	// sharded store puts the bucket of the session's token in the id.
	NewSessionID(tokenHash string) (expr string, args []any, err error)
	// MenuInStock is the condition (on items) that puts an available item
	// on the menu: stock > 0 on one database; on a sharded store, where a
	// shard's stock is only its quota, not being sold out on every shard.
	MenuInStock() string
	// SessionOrders is a condition (empty, or starting with AND) that
	// narrows a session's orders to where they can be, with its arguments:
	// on PostgreSQL, the partitions of the months the session lived in.
	SessionOrders(sessionID int64) (cond string, args []any)
	// OrdersBefore is the condition (starting with AND) of a later page
	// of a session's orders, those with ids below the cursor, with its
	// arguments; it must let the (session_id, id) index start its scan
	// at the cursor.
	OrdersBefore(sessionID, before int64) (cond string, args []any)
	// OrdersOfSession is the same narrowing (empty, or starting with AND)
	// for a query over orders aliased orders, correlated with a session
	// row aliased sessions.
	OrdersOfSession(orders, sessions string) string
	// LockSessions is the locking clause (empty, or starting with a
	// space) that locks the session rows (aliased sessions) a query reads
	// until its transaction ends, where the database locks rows one by
	// one; SQLite's one writer at a time needs none.
	LockSessions(sessions string) string
	// DeleteSessions is the statement that deletes the sessions matching
	// cond (a condition on sessions, its arguments the caller's) with their
	// cart lines; counts says it returns the count of sessions deleted as
	// one row (else the count is its rows affected).
	DeleteSessions(cond string) (query string, counts bool)
	// JoinOrderLines is the outer join of the lines (aliased lines) to a
	// page of orders (aliased orders).
	JoinOrderLines(orders, lines string) string
}

// Store implements shop.Store over a DB: the one store type of both
// databases (sqlite.Store and postgres.Store are this type).
type Store struct {
	db      DB
	dialect Dialect
	now     func() time.Time
}

// New returns the shared store over db; now is the clock that expiry is
// judged by (nil: the wall clock).
func New(db DB, dialect Dialect, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, dialect: dialect, now: func() time.Time { return now().UTC() }}
}

var _ shop.Store = (*Store)(nil)

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// Close closes the underlying database.
func (s *Store) Close() error { return s.db.Close() }

// SeedIfEmpty inserts items when the catalog has none; it reports how many
// it inserted.
func (s *Store) SeedIfEmpty(ctx context.Context, items []shop.Item) (int, error) {
	return s.db.Seed(ctx, items, s.now())
}

// Micros is how both schemas store a time: microseconds since the epoch.
func Micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// microsTime scans a unix-microsecond column straight into a time.Time.
// Scanning into an int64 and converting would need a temporary whose
// address goes to the driver, and so to the heap: an allocation a row.
type microsTime struct{ t *time.Time }

// Scan implements sql.Scanner, which both drivers honour.
func (m microsTime) Scan(src any) error {
	us, ok := src.(int64)
	if !ok {
		return fmt.Errorf("a time in unix microseconds is an integer, not %T", src)
	}
	*m.t = fromMicros(us)
	return nil
}

// collect reads every row of rows with scan, closing rows; what the
// caller gets is never nil. It is generic over the row's type, and scan
// writes each row straight into its place in the slice, so rows cost no
// allocation of their own.
func collect[T any](rows Rows, scan func(r Row, v *T) error) ([]T, error) {
	defer rows.Close()
	var row Row = rows // converted once, not per row
	out := []T{}
	for rows.Next() {
		var zero T
		out = append(out, zero)
		if err := scan(row, &out[len(out)-1]); err != nil {
			return nil, err
		}
	}
	return out, rows.Err()
}

// query runs a query and collects its rows with scan.
func query[T any](ctx context.Context, q Querier, scan func(r Row, v *T) error, sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scan)
}

// BumpCatalogVersion tells menu readers that the menu changed.
func BumpCatalogVersion(ctx context.Context, q Querier) error {
	if _, err := q.Exec(ctx, `UPDATE catalog_version SET version = version + 1 WHERE id = 1`); err != nil {
		return fmt.Errorf("bump catalog version: %w", err)
	}
	return nil
}
