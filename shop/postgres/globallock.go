package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// GlobalLockKey is the advisory lock the global-lock anti-pattern takes
// (shop --antipattern global-lock). Advisory locks belong to one database,
// so every replica of one deployment shares it and other deployments on
// the same server do not.
const GlobalLockKey int64 = 0x73686f70_676c6f62 // "shopglob"

// GlobalLockConns is how many of one process's requests hold or wait for
// the lock in the database at once; more wait for a connection first.
const GlobalLockConns = 16

// GlobalLock is global-lock on PostgreSQL: one read/write lock shared by
// every replica, which every request holds while it runs, as a service
// guarding its state with one global read/write lock does: a writing
// request holds the session advisory lock alone (pg_advisory_lock), a
// reading one shares it with the other reads (pg_advisory_lock_shared).
// PostgreSQL queues a shared request behind an exclusive one already
// waiting, so a write waits for the reads in flight on every replica to
// end, and the reads after it wait for it. Each request waits for the
// lock in the database on a connection of a pool of its own, outside the
// store's pools, so a request waiting for it never keeps the request
// holding it from the connection it needs. Every waiter, from this
// replica or another, queues in PostgreSQL's lock manager, which hands
// the lock to the next on release: the section between two holders is
// the same on one replica as on many (a queue in the process first would
// add a round trip to each hand-over on one replica only).
type GlobalLock struct {
	pool *pgxpool.Pool
}

// NewGlobalLock prepares the lock on the database at url (connecting on
// first use).
func NewGlobalLock(url string, o Options) (*GlobalLock, error) {
	o.defaults()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%q is not a PostgreSQL URL: %s", redact(url), oneLine(err))
	}
	cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	cfg.ConnConfig.RuntimeParams["application_name"] = "shop global-lock"
	cfg.MaxConns = GlobalLockConns
	cfg.MinConns = 0
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("the global lock's pool: %s", oneLine(err))
	}
	return &GlobalLock{pool: pool}, nil
}

// Lock takes the lock, alone for a write, shared for a read, and returns
// its release. It gives up when ctx ends.
func (g *GlobalLock) Lock(ctx context.Context, write bool) (func(), error) {
	take, give := `SELECT pg_advisory_lock_shared($1)`, `SELECT pg_advisory_unlock_shared($1)`
	if write {
		take, give = `SELECT pg_advisory_lock($1)`, `SELECT pg_advisory_unlock($1)`
	}
	conn, err := g.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect for the global lock: %s", oneLine(err))
	}
	if _, err := conn.Exec(ctx, take, GlobalLockKey); err != nil {
		// The lock may have been granted as the wait was given up:
		// closing the session releases it, and the pool drops the
		// closed connection.
		closeConn(conn)
		conn.Release()
		return nil, fmt.Errorf("take the global lock: %w", err)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, give, GlobalLockKey); err != nil {
			closeConn(conn) // closing the session releases its locks
		}
		conn.Release()
	}, nil
}

func closeConn(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn.Conn().Close(ctx) //nolint:errcheck // the session ends either way
}

// Close closes the lock's connections.
func (g *GlobalLock) Close() error {
	g.pool.Close()
	return nil
}
