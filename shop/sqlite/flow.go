package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/sqlstore"
)

// flowDB is the shared store's view of SQLite: every read, fresh or not,
// goes to the read pool (WAL shows a reader every committed write), every
// write to the single write connection, whose BEGIN IMMEDIATE makes each
// write transaction run alone, so sessions need no lock of their own and
// no write position is recorded.
type flowDB struct{ db *DB }

func (f flowDB) Catalog() sqlstore.Querier { return pool{f.db.read} }
func (f flowDB) Fresh() sqlstore.Querier   { return pool{f.db.read} }
func (f flowDB) Writer() sqlstore.Querier  { return pool{f.db.write} }

func (f flowDB) SessionReader(context.Context, int64) (sqlstore.Querier, func(), error) {
	return pool{f.db.read}, func() {}, nil
}

func (f flowDB) InSnapshot(ctx context.Context, fn func(q sqlstore.Querier) error) error {
	tx, err := f.db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to keep
	return fn(querier[*sql.Tx]{tx})
}

func (f flowDB) InTx(ctx context.Context, fn func(tx sqlstore.Tx) error) error {
	return f.db.inTx(ctx, func(tx *sql.Tx) error { return fn(txQuerier{querier[*sql.Tx]{tx}}) })
}

func (flowDB) LockSession(context.Context, sqlstore.Tx, int64) error { return nil }
func (flowDB) SessionWrote(context.Context, int64) error             { return nil }

// inTx runs fn in a write transaction and commits it if fn succeeds.
func (db *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(fmt.Errorf("begin: %w", err))
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := fn(tx); err != nil {
		return unavailable(err)
	}
	if err := tx.Commit(); err != nil {
		return unavailable(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// querier adapts a database/sql pool or transaction to sqlstore.Querier.
// It holds one pointer, so making one costs no allocation on the hot read
// paths.
type querier[C conn] struct{ c C }

// conn is what *sql.DB and *sql.Tx both offer.
type conn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (q querier[C]) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := q.c.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, unavailable(err)
	}
	return res.RowsAffected()
}

func (q querier[C]) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := q.c.QueryContext(ctx, query, args...)
	return sqlRows{rows}, unavailable(err)
}

func (q querier[C]) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return sqlRow{q.c.QueryRowContext(ctx, query, args...)}
}

// sqlRow maps a full database's failure, which a write's RETURNING shows
// only at Scan, as Exec's does.
type sqlRow struct{ *sql.Row }

func (r sqlRow) Scan(dest ...any) error { return unavailable(r.Row.Scan(dest...)) }

type pool = querier[*sql.DB]

// txQuerier is a write transaction.
type txQuerier struct{ querier[*sql.Tx] }

func (t txQuerier) Driver() shop.Tx { return t.c }

// sqlRows gives sql.Rows the Close that pgx.Rows has: a read error shows
// in Err, and closing frees the statement either way.
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() } //nolint:errcheck // see Err

func (r sqlRows) Err() error { return unavailable(r.Rows.Err()) }
