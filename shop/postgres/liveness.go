package postgres

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
)

// WorkerLiveness tells live job workers from dead ones by a session-level
// advisory lock each worker holds on a connection of its own for its
// life: PostgreSQL drops the lock when the session ends, so a worker
// killed with -9 (its socket closed by the kernel) is seen dead at once,
// and the jobs it left running can be taken up without waiting for
// River's rescuer (jobs.Liveness).
type WorkerLiveness struct{ db *DB }

// WorkerLiveness returns the liveness of the workers on db.
func (db *DB) WorkerLiveness() WorkerLiveness { return WorkerLiveness{db: db} }

// workerLockKey is the advisory lock key of worker id: a 64-bit hash in a
// namespace of its own.
func workerLockKey(id string) int64 {
	h := fnv.New64a()
	h.Write([]byte("shop job worker " + id))
	return int64(h.Sum64()) // #nosec G115 -- a hash: wrapping into the negative keys is what bigint locks take
}

// Hold takes worker id's lock on a connection outside the pools, kept
// until release.
func (l WorkerLiveness) Hold(ctx context.Context, id string) (release func(), err error) {
	conn, err := pgx.ConnectConfig(ctx, l.db.primary.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connect for the worker's lock: %w", unavailable(err))
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, workerLockKey(id)); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("take the worker's lock: %w", unavailable(err))
	}
	return func() { conn.Close(context.Background()) }, nil
}

// Dead reports whether worker id's lock is free: it tries the lock and,
// having got it, lets it go at once.
func (l WorkerLiveness) Dead(ctx context.Context, id string) (bool, error) {
	conn, err := l.db.primary.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("is worker %s alive: %w", id, unavailable(err))
	}
	defer conn.Release()
	key := workerLockKey(id)
	var free bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&free); err != nil {
		return false, fmt.Errorf("is worker %s alive: %w", id, unavailable(err))
	}
	if free {
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			// The lock must not stay with a pooled session: drop it.
			conn.Conn().Close(context.WithoutCancel(ctx))
			return true, nil
		}
	}
	return free, nil
}
