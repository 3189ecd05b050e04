package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
)

// openCountingResets opens a database whose pools count their resets.
func openCountingResets(t *testing.T) (*postgres.DB, *atomic.Int64) {
	t.Helper()
	var resets atomic.Int64
	db, err := postgres.Open(context.Background(), pgtest.NewDatabase(t), postgres.Options{
		OnReset: func(at string, cause error) {
			resets.Add(1)
			t.Logf("pool of %s reset: %v", at, cause)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db, &resets
}

// holdConnections checks n connections out of the pool at once (so n
// different backends) and returns them with their backends' pids.
func holdConnections(t *testing.T, pool *pgxpool.Pool, n int) ([]*pgxpool.Conn, []uint32) {
	t.Helper()
	conns := make([]*pgxpool.Conn, n)
	pids := make([]uint32, n)
	for i := range conns {
		c, err := pool.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conns[i], pids[i] = c, c.Conn().PgConn().PID()
		t.Cleanup(c.Release) // if the test failed holding it: the pool closes only once all are back
	}
	return conns, pids
}

// terminate ends the backends as a shutdown does (pg_terminate_backend:
// each is told 57P01 admin_shutdown and exits) and waits until they have.
func terminate(t *testing.T, pids []uint32) {
	t.Helper()
	admin := pgtest.Admin(t)
	defer admin.Close(context.Background())
	ctx := context.Background()
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid`, pids); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 30*time.Second, func() error {
		var left int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])`, pids).Scan(&left); err != nil {
			return err
		}
		if left > 0 {
			return fmt.Errorf("%d of %d terminated backends still there", left, len(pids))
		}
		return nil
	})
}

// waitActive waits until backend pid runs a statement.
func waitActive(t *testing.T, pool *pgxpool.Pool, pid uint32) {
	t.Helper()
	testwait.Eventually(t, 30*time.Second, func() error {
		var state string
		if err := pool.QueryRow(context.Background(), `SELECT coalesce(state, '') FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&state); err != nil {
			return err
		}
		if state != "active" {
			return fmt.Errorf("backend %d is %q, want active", pid, state)
		}
		return nil
	})
}

// requestsSucceed runs n statements one after another, as n customers'
// requests, each on a backend other than the ended ones.
func requestsSucceed(t *testing.T, pool *pgxpool.Pool, n int, ended []uint32) {
	t.Helper()
	for i := range n {
		var pid uint32
		if err := pool.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatalf("request %d of %d after the server ended its connections: %v", i+1, n, err)
		}
		if slices.Contains(ended, pid) {
			t.Fatalf("request %d ran on ended backend %d", i+1, pid)
		}
	}
}

// A server that ended every connection of an idle pool (a shutdown and
// restart, as cluster.sh kill-db and start-db do) costs no request: the
// pool finds the first broken connection before sending anything on it,
// drops them all once, and the statement runs on a new one. Before,
// pgxpool pinged only connections idle over a second, and each broken
// one was a failed request (a 503).
func TestAServerThatEndedEveryConnectionCostsNoRequest(t *testing.T) {
	db, resets := openCountingResets(t)
	conns, pids := holdConnections(t, db.Pool(), 4)
	terminate(t, pids)
	for _, c := range conns {
		c.Release() // back in the pool, idle for less than a second
	}
	requestsSucceed(t, db.Pool(), 4, pids)
	if n := resets.Load(); n != 1 {
		t.Errorf("the pool was reset %d times, want once for the 4 broken connections", n)
	}
}

// A statement the server cut off while it ran is the caller's failure
// (it may have done its work; it is not run again), and it resets the
// pool at once, so the other connections the server ended, checked out
// at the time, are dropped when given back and cost no request.
func TestAStatementCutOffByTheServerResetsThePoolOnce(t *testing.T) {
	db, resets := openCountingResets(t)
	conns, pids := holdConnections(t, db.Pool(), 4)
	running := make(chan error, 1)
	go func() {
		_, err := conns[0].Exec(context.Background(), `SELECT pg_sleep(60)`)
		running <- err
	}()
	waitActive(t, db.Pool(), pids[0])
	terminate(t, pids)
	err := <-running
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57P01" {
		t.Fatalf("the cut-off statement: %v, want 57P01 admin_shutdown", err)
	}
	if n := resets.Load(); n != 1 {
		t.Fatalf("after the cut-off statement the pool was reset %d times, want 1", n)
	}
	for _, c := range conns {
		c.Release()
	}
	requestsSucceed(t, db.Pool(), 4, pids)
	if n := resets.Load(); n != 1 {
		t.Errorf("the pool was reset %d times, want once", n)
	}
}

// A server that goes away again after a reset resets the pool again: the
// debounce is per generation of connections, not a window of time.
func TestAServerGoneTwiceResetsThePoolTwice(t *testing.T) {
	db, resets := openCountingResets(t)
	for round := 1; round <= 2; round++ {
		conns, pids := holdConnections(t, db.Pool(), 2)
		terminate(t, pids)
		for _, c := range conns {
			c.Release()
		}
		requestsSucceed(t, db.Pool(), 2, pids)
		if n := resets.Load(); n != int64(round) {
			t.Fatalf("after the server went away %d times the pool was reset %d times", round, n)
		}
	}
}

// An ordinary failure (a bad statement, a constraint, the server's
// statement timeout, the caller's cancelled context) is no sign that the
// server went away: the pool keeps its connections.
func TestOrdinaryErrorsDoNotResetThePool(t *testing.T) {
	db, resets := openCountingResets(t)
	pool := db.Pool()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE once (id int PRIMARY KEY); INSERT INTO once VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		run  func() error
	}{
		{"syntax error", func() error { _, err := pool.Exec(ctx, `SELEC 1`); return err }},
		{"unique violation", func() error { _, err := pool.Exec(ctx, `INSERT INTO once VALUES (1)`); return err }},
		{"statement timeout", func() error {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = 1`); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `SELECT pg_sleep(10)`)
			return err
		}},
		{"cancelled context", func() error {
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			conn, err := pool.Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			done := make(chan error, 1)
			go func() {
				_, err := conn.Exec(cctx, `SELECT pg_sleep(60)`)
				done <- err
			}()
			waitActive(t, pool, conn.Conn().PgConn().PID())
			cancel()
			return <-done
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); err == nil {
				t.Fatal("no error")
			}
			if n := resets.Load(); n != 0 {
				t.Fatalf("the pool was reset %d times", n)
			}
			requestsSucceed(t, pool, 1, nil)
		})
	}
}
