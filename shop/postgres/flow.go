package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/sqlstore"
)

// flowDB is the shared store's view of PostgreSQL: writes, transactions
// and fresh reads on the primary, catalog reads on a replica, a session's
// reads of its orders where its writes are (read.go); a session's row lock
// serialises its cart changes and checkouts, which otherwise run in
// parallel.
type flowDB struct {
	db *DB
	// atOnce is the checkout at once's statement for this database: one
	// shard's numbers its orders as a shard does (dialect.NewOrderID).
	atOnce string
}

func (f flowDB) Catalog() sqlstore.Querier { return f.db.catalogReader() }
func (f flowDB) Fresh() sqlstore.Querier   { return f.db.primaryReader() }
func (f flowDB) Writer() sqlstore.Querier  { return querier[poolQuerier]{f.db.primary} }

func (f flowDB) SessionReader(ctx context.Context, sessionID int64) (sqlstore.Querier, func(), error) {
	return f.db.sessionReader(ctx, sessionID)
}

// InSnapshot reads in one repeatable-read transaction, on a replica when
// there is one (read.go).
func (f flowDB) InSnapshot(ctx context.Context, fn func(q sqlstore.Querier) error) error {
	return f.db.inSnapshot(ctx, fn)
}

// InTx runs the store's write transactions (the worker's confirmation and
// "ready" step, a checkout or a cart change the general way, pruning),
// with their statements' generic plans (storeTx).
func (f flowDB) InTx(ctx context.Context, fn func(tx sqlstore.Tx) error) error {
	return unavailable(pgx.BeginTxFunc(ctx, f.db.primary, storeTx, func(tx pgx.Tx) error {
		return fn(txQuerier{querier[pgx.Tx]{tx}})
	}))
}

// storeTx begins a store's write transaction and, in the same round trip,
// has its statements run their generic plans, made once per connection.
// Left to choose (plan_cache_mode = auto), PostgreSQL planned anew on every
// run each statement naming one order of the partitioned tables (the
// worker's status update and order read): it prices a generic plan, which
// prunes the months' partitions as it runs, above a plan made for the
// values. Only here, not on every connection: River's own statements
// (its JobList among them) need plans made for their values
// (docs/postgres.md).
var storeTx = pgx.TxOptions{BeginQuery: "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan"}

// LockSession serialises the session's cart changes and checkouts: a line
// added while a checkout empties the cart must not be lost, and the cart's
// line limit must hold under concurrent adds.
//
// A session that is not there (pruned, or moved to another shard) is
// refused here: no foreign key refuses its rows any more (migration
// 00024), and a deleted session's rows are deleted with it.
func (flowDB) LockSession(ctx context.Context, tx sqlstore.Tx, sessionID int64) error {
	n, err := tx.Exec(ctx, `SELECT id FROM sessions WHERE id = ? FOR UPDATE`, sessionID)
	if err != nil {
		return fmt.Errorf("lock session: %w", err)
	}
	if n == 0 {
		// Moved to another shard (its bucket fenced here: the write
		// trigger refused it before, and the client retries on its new
		// shard), or pruned.
		if _, err := tx.Exec(ctx, `SELECT bucket_fence_check(?::BIGINT & 1023)`, sessionID); err != nil {
			return fmt.Errorf("lock session: %w", unavailable(err))
		}
		return ErrSessionGone
	}
	return nil
}

// ErrSessionGone refuses a cart change or checkout of a session that is no
// longer in the database (it expired and was pruned), on a shard that
// takes its bucket's writes.
var ErrSessionGone = shop.Errorf(shop.EUNAUTHORIZED, "the session has expired: start a new one")

func (f flowDB) SessionWrote(ctx context.Context, sessionID int64) error {
	return f.db.markWrite(ctx, sessionID)
}

// inTx runs fn in a transaction on the primary and commits it if fn
// succeeds.
func (db *DB) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return unavailable(pgx.BeginFunc(ctx, db.primary, fn))
}

// poolQuerier is what a pool, a pooled connection and a transaction offer.
type poolQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// querier adapts pgx to sqlstore.Querier: it numbers the shared SQL's
// placeholders and maps a failure to reach the server to
// shop.EUNAVAILABLE (unavailable).
type querier[Q poolQuerier] struct{ q Q }

func (q querier[Q]) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := q.q.Exec(ctx, numbered(query), args...)
	if err != nil {
		return 0, unavailable(err)
	}
	return tag.RowsAffected(), nil
}

func (q querier[Q]) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := q.q.Query(ctx, numbered(query), args...)
	if err != nil {
		return nil, unavailable(err)
	}
	return pgRows{rows}, nil
}

func (q querier[Q]) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return pgRow{q.q.QueryRow(ctx, numbered(query), args...)}
}

// txQuerier is a write transaction.
type txQuerier struct{ querier[pgx.Tx] }

func (t txQuerier) Driver() shop.Tx { return t.q }

type pgRows struct{ pgx.Rows }

func (r pgRows) Err() error { return unavailable(r.Rows.Err()) }

type pgRow struct{ pgx.Row }

func (r pgRow) Scan(dest ...any) error { return unavailable(r.Row.Scan(dest...)) }

// numbered turns the shared SQL's ? placeholders into PostgreSQL's $1,
// $2, ... in order, leaving quoted text alone. (No shared statement uses
// PostgreSQL's ? operators on jsonb.)
func numbered(query string) string {
	if strings.IndexByte(query, '?') < 0 {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
