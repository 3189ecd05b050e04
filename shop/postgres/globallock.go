package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// GlobalLockKey is the advisory lock the global-lock anti-pattern takes
// (shop --antipattern global-lock). Advisory locks belong to one database,
// so every replica of one deployment shares it and other deployments on
// the same server do not.
const GlobalLockKey int64 = 0x73686f70_676c6f62 // "shopglob"

// GlobalLock is global-lock on PostgreSQL: every writing request of every
// replica holds one session advisory lock while it runs, as a service
// serialising its writes on one lock does. Each process takes it on a
// connection of its own, outside the pools, so a request waiting for it
// never keeps the request holding it from the connection it needs; the
// process's writing requests queue for that connection first.
type GlobalLock struct {
	cfg  *pgx.ConnConfig
	turn chan struct{} // holds one token: the connection's user
	conn *pgx.Conn
}

// NewGlobalLock prepares the lock on the database at url (connecting on
// first use).
func NewGlobalLock(url string, o Options) (*GlobalLock, error) {
	o.defaults()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%q is not a PostgreSQL URL: %s", redact(url), oneLine(err))
	}
	cfg.ConnectTimeout = o.ConnectTimeout
	cfg.RuntimeParams["application_name"] = "shop global-lock"
	g := &GlobalLock{cfg: cfg, turn: make(chan struct{}, 1)}
	g.turn <- struct{}{}
	return g, nil
}

// Lock takes the lock for a write and returns its release; reads take
// nothing. It gives up when ctx ends.
func (g *GlobalLock) Lock(ctx context.Context, write bool) (func(), error) {
	if !write {
		return func() {}, nil
	}
	select {
	case <-g.turn:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := g.lock(ctx); err != nil {
		g.turn <- struct{}{}
		return nil, err
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := g.conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, GlobalLockKey); err != nil {
			// Closing the session releases its locks.
			g.conn.Close(uctx) //nolint:errcheck
		}
		g.turn <- struct{}{}
	}, nil
}

func (g *GlobalLock) lock(ctx context.Context) error {
	if g.conn == nil || g.conn.IsClosed() {
		conn, err := pgx.ConnectConfig(ctx, g.cfg)
		if err != nil {
			return fmt.Errorf("connect for the global lock: %s", oneLine(err))
		}
		g.conn = conn
	}
	// A cancelled wait closes the connection (pgx), which drops the wait.
	if _, err := g.conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, GlobalLockKey); err != nil {
		return fmt.Errorf("take the global lock: %w", err)
	}
	return nil
}

// Close closes the lock's connection.
func (g *GlobalLock) Close() error {
	<-g.turn
	defer func() { g.turn <- struct{}{} }()
	if g.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return g.conn.Close(ctx)
}
