package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/perfscale/perfscale/shop/sqlstore"
)

// Read routing. Transactions and every write go to the primary. Reads that
// need no session (the menu, items, item pages) go to a read replica when
// there is one. A session's own reads (its orders) go to a replica only
// when the replica has replayed the session's last write: each write of a
// session records the primary's WAL position after it in the session's row
// (markWrite), and the read compares it with the replica's
// pg_last_wal_replay_lsn(), falling back to the primary when the replica
// lags. The marker lives in the database, so it holds across any number of
// stateless API replicas; nothing is kept in process memory.

// A replica is read through its guard (Options.ReplicaGuard: a circuit
// breaker in the service) and within ReplicaTimeout. A read the replica
// fails, refuses or answers too slowly is read again on the primary, and
// while the replica's breaker is open its reads go to the primary at once:
// a replica that dies or crawls costs reads their speed, never their
// answer.

// Guard is a circuit breaker around one read replica (resilience.Guard in
// the service): Do refuses at once, without calling fn, while the replica
// fails, and counts fn's failures.
type Guard interface {
	Do(ctx context.Context, fn func(ctx context.Context) error) error
}

// noGuard calls through: a replica without Options.ReplicaGuard.
type noGuard struct{}

func (noGuard) Do(ctx context.Context, fn func(ctx context.Context) error) error { return fn(ctx) }

// replicaPool is a read replica's pool behind its guard.
type replicaPool struct {
	pool  *pgxpool.Pool
	guard Guard
}

// catalogReader is the querier for reads that need no session: a replica
// falling back to the primary, or the primary.
func (db *DB) catalogReader() sqlstore.Querier {
	if r := db.replica(); r != nil {
		return catalogQuerier{db: db, r: r}
	}
	return querier[poolQuerier]{db.primary}
}

// replica picks a replica round-robin; nil without replicas.
func (db *DB) replica() *replicaPool {
	if len(db.replicas) == 0 {
		return nil
	}
	return &db.replicas[int(db.next.Add(1))%len(db.replicas)]
}

// onReplica runs read on the replica through its guard, within the
// replica timeout, and reports whether the primary should run it instead:
// the replica failed it (a broken or refused connection, a conflict with
// recovery, the timeout) or its guard refused it. A read that found no
// rows is an answer, neither a failure for the guard nor a reason to ask
// the primary; nor is a caller that gave up.
func (db *DB) onReplica(ctx context.Context, r *replicaPool, read func(ctx context.Context) error) (onPrimary bool, err error) {
	var noRows error
	err = r.guard.Do(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, db.replicaTimeout)
		defer cancel()
		err := read(ctx)
		if errors.Is(err, pgx.ErrNoRows) {
			noRows, err = err, nil
		}
		return err
	})
	switch {
	case noRows != nil:
		return false, noRows
	case err == nil || ctx.Err() != nil:
		return false, err
	}
	return true, err
}

// catalogQuerier reads on a replica and, when the replica cannot answer,
// on the primary. Reads that need no session are the same wherever they
// run, so asking the primary again is safe.
type catalogQuerier struct {
	db *DB
	r  *replicaPool
}

func (c catalogQuerier) primary() sqlstore.Querier { return c.db.primaryReader() }

func (c catalogQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	onPrimary, err := c.db.onReplica(ctx, c.r, func(ctx context.Context) (err error) {
		n, err = querier[poolQuerier]{c.r.pool}.Exec(ctx, query, args...)
		return err
	})
	if onPrimary {
		return c.primary().Exec(ctx, query, args...)
	}
	return n, err
}

// Query runs on the replica until its rows are read: the replica timeout
// ends when they are closed. The first row is read within the guarded
// call, since an answer that never comes shows only there (the query may
// return before the server has answered); the rest of a page has come
// with it.
func (c catalogQuerier) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	var rows sqlstore.Rows
	onPrimary, err := c.db.onReplica(ctx, c.r, func(context.Context) error {
		// The rows outlive this call: their own deadline, the same.
		qctx, cancel := context.WithTimeout(ctx, c.db.replicaTimeout)
		r, err := querier[poolQuerier]{c.r.pool}.Query(qctx, query, args...)
		if err != nil {
			cancel()
			return err
		}
		first := r.Next()
		if err := r.Err(); !first && err != nil {
			r.Close()
			cancel()
			return err
		}
		rows = &peekedRows{Rows: r, cancel: cancel, first: first}
		return nil
	})
	if onPrimary {
		return c.primary().Query(ctx, query, args...)
	}
	return rows, err
}

func (c catalogQuerier) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return catalogRow{c: c, ctx: ctx, query: query, args: args}
}

// catalogRow runs its query when it is scanned.
type catalogRow struct {
	c     catalogQuerier
	ctx   context.Context
	query string
	args  []any
}

func (r catalogRow) Scan(dest ...any) error {
	onPrimary, err := r.c.db.onReplica(r.ctx, r.c.r, func(ctx context.Context) error {
		return querier[poolQuerier]{r.c.r.pool}.QueryRow(ctx, r.query, r.args...).Scan(dest...)
	})
	if onPrimary {
		return r.c.primary().QueryRow(r.ctx, r.query, r.args...).Scan(dest...)
	}
	return err
}

// peekedRows are a replica's rows whose first row was read ahead; they
// end the replica timeout when they are closed.
type peekedRows struct {
	sqlstore.Rows
	cancel        context.CancelFunc
	first, peeked bool
}

func (r *peekedRows) Next() bool {
	if !r.peeked {
		r.peeked = true
		return r.first
	}
	return r.Rows.Next()
}

func (r *peekedRows) Close() {
	r.Rows.Close()
	r.cancel()
}

// inSnapshot runs fn in a read-only repeatable-read transaction on a
// replica, or on the primary when the replica cannot begin one within the
// replica timeout. Only the beginning is timed: a huge catalog's menu may
// rightly take seconds to read. Once fn has begun, a failure is returned
// rather than fn run again (fn gathers its results as it goes); the
// store's retry asks again, on the primary if the replica's breaker has
// opened.
func (db *DB) inSnapshot(ctx context.Context, fn func(q sqlstore.Querier) error) error {
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	r := db.replica()
	if r == nil {
		return unavailable(pgx.BeginTxFunc(ctx, db.primary, opts, func(tx pgx.Tx) error { return fn(querier[pgx.Tx]{tx}) }))
	}
	var tx pgx.Tx
	onPrimary, err := db.onReplica(ctx, r, func(bctx context.Context) (err error) {
		tx, err = r.pool.BeginTx(bctx, opts)
		return unavailable(err)
	})
	switch {
	case onPrimary:
		return unavailable(pgx.BeginTxFunc(ctx, db.primary, opts, func(tx pgx.Tx) error { return fn(querier[pgx.Tx]{tx}) }))
	case err != nil:
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a read-only transaction: nothing to undo
	if err := fn(querier[pgx.Tx]{tx}); err != nil {
		return unavailable(err)
	}
	return unavailable(tx.Commit(ctx))
}

// sessionReader returns the querier a session reads its own writes with:
// a replica that has replayed them, else the primary. Each read on the
// replica is a catalog read's (guarded, within the replica timeout, read
// again on the primary when the replica fails it): it used to run on a
// replica connection held for the request without either, so a replica
// that stalled after the connection was taken cost the read a 503 after
// the route's 5 s, where a catalog read fell back. Replay only moves
// forward, so a later connection to the same replica has replayed the
// writes too. release is kept for the callers; there is nothing to return.
func (db *DB) sessionReader(ctx context.Context, sessionID int64) (q sqlstore.Querier, release func(), err error) {
	primary := db.primaryReader()
	r := db.replica()
	if r == nil {
		return primary, func() {}, nil
	}
	var wrote *string
	if err := primary.QueryRow(ctx, `SELECT wrote_lsn::text FROM sessions WHERE id = ?`, sessionID).Scan(&wrote); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, fmt.Errorf("read session's write position: %w", err)
	}
	if wrote != nil {
		// A replica that cannot be reached, or has not replayed the
		// session's writes, does not take the reads down: the primary
		// answers.
		caughtUp := false
		_, err := db.onReplica(ctx, r, func(ctx context.Context) error {
			return unavailable(r.pool.QueryRow(ctx, `SELECT COALESCE(pg_last_wal_replay_lsn() >= $1::pg_lsn, FALSE)`, *wrote).Scan(&caughtUp))
		})
		if err != nil || !caughtUp {
			return primary, func() {}, nil
		}
	}
	return catalogQuerier{db: db, r: r}, func() {}, nil
}

// markWrite records, for read routing, that the session has just written:
// the primary's WAL position now is past the write's commit. It runs only
// when there are replicas to route to.
func (db *DB) markWrite(ctx context.Context, sessionID int64) error {
	if len(db.replicas) == 0 {
		return nil
	}
	if _, err := db.primary.Exec(ctx, `UPDATE sessions SET wrote_lsn = pg_current_wal_lsn() WHERE id = $1`, sessionID); err != nil {
		return fmt.Errorf("mark the session's write: %w", unavailable(err))
	}
	return nil
}

// primaryReader is the querier for reads on the primary: with replicas,
// through the primary's own read guard (Options.PrimaryReadGuard). The
// store's read guard sees the replicas' answers as the database's
// progress, so a primary that stopped answering while its replicas
// answered tripped nothing, and a session's order list (which asks the
// primary for the session's write position) waited out its route's
// deadline; the primary's guard sees only the primary's reads, gives
// them up when they stall and refuses new ones at once.
func (db *DB) primaryReader() sqlstore.Querier {
	q := querier[poolQuerier]{db.primary}
	if _, none := db.primaryReads.(noGuard); none {
		return q
	}
	return guardedQuerier{guard: db.primaryReads, q: q}
}

// guardedQuerier runs each statement through guard: the wait for the
// server's answer (a statement's result, a query's first row) is the
// guarded call.
type guardedQuerier struct {
	guard Guard
	q     sqlstore.Querier
}

func (g guardedQuerier) Exec(ctx context.Context, query string, args ...any) (n int64, err error) {
	err = g.guard.Do(ctx, func(ctx context.Context) error {
		n, err = g.q.Exec(ctx, query, args...)
		return err
	})
	return n, err
}

// Query reads the first row within the guarded call, since an answer that
// never comes shows only there. The rows outlive the call: they run under
// a context of their own that the guard's trip ends until the first row
// has come (the rest of a page comes with it), and their Close ends.
func (g guardedQuerier) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	var rows sqlstore.Rows
	err := g.guard.Do(ctx, func(gctx context.Context) error {
		qctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(gctx, cancel)
		r, err := g.q.Query(qctx, query, args...)
		if err != nil {
			cancel()
			return err
		}
		first := r.Next()
		if !stop() {
			r.Close()
			cancel()
			return context.Cause(gctx) // given up at the guard's trip
		}
		if err := r.Err(); !first && err != nil {
			r.Close()
			cancel()
			return err
		}
		rows = &peekedRows{Rows: r, cancel: cancel, first: first}
		return nil
	})
	return rows, err
}

func (g guardedQuerier) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return guardedRow{g: g, ctx: ctx, query: query, args: args}
}

// guardedRow runs its query when it is scanned; no row is an answer, not
// a failure of the server.
type guardedRow struct {
	g     guardedQuerier
	ctx   context.Context
	query string
	args  []any
}

func (r guardedRow) Scan(dest ...any) error {
	var noRows error
	err := r.g.guard.Do(r.ctx, func(ctx context.Context) error {
		err := r.g.q.QueryRow(ctx, r.query, r.args...).Scan(dest...)
		if errors.Is(err, pgx.ErrNoRows) {
			noRows, err = err, nil
		}
		return err
	})
	if err == nil {
		return noRows
	}
	return err
}
