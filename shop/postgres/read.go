package postgres

import (
	"context"
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

// catalogReader is the pool for a read that needs no session.
func (db *DB) catalogReader() *pgxpool.Pool {
	if p := db.replica(); p != nil {
		return p
	}
	return db.primary
}

// replica picks a replica pool round-robin; nil without replicas.
func (db *DB) replica() *pgxpool.Pool {
	if len(db.replicas) == 0 {
		return nil
	}
	return db.replicas[int(db.next.Add(1))%len(db.replicas)]
}

// sessionReader returns a connection on which the session reads its own
// writes: a replica that has replayed them, else the primary. release
// returns the connection.
func (db *DB) sessionReader(ctx context.Context, sessionID int64) (q sqlstore.Querier, release func(), err error) {
	primary := querier[poolQuerier]{db.primary}
	replica := db.replica()
	if replica == nil {
		return primary, func() {}, nil
	}
	var wrote *string
	if err := db.primary.QueryRow(ctx, `SELECT wrote_lsn::text FROM sessions WHERE id = $1`, sessionID).Scan(&wrote); err != nil && err != pgx.ErrNoRows {
		return nil, nil, fmt.Errorf("read session's write position: %w", unavailable(err))
	}
	conn, err := replica.Acquire(ctx)
	if err != nil {
		// A replica that cannot be reached does not take the reads down.
		return primary, func() {}, nil
	}
	if wrote == nil {
		return querier[poolQuerier]{conn}, conn.Release, nil // the session never wrote: nothing to miss
	}
	var caughtUp bool
	err = conn.QueryRow(ctx, `SELECT COALESCE(pg_last_wal_replay_lsn() >= $1::pg_lsn, FALSE)`, *wrote).Scan(&caughtUp)
	if err != nil || !caughtUp {
		conn.Release()
		return primary, func() {}, nil
	}
	return querier[poolQuerier]{conn}, conn.Release, nil
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
