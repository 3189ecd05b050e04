package backend_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// startTogether opens n backends on cfg at once, released together by a
// barrier, each as a shop process starts: store, seed, queue. It returns
// each start's error.
func startTogether(ctx context.Context, n int, cfg backend.Config) []error {
	errs := make([]error, n)
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			b, err := backend.Open(ctx, cfg)
			if err != nil {
				errs[i] = err
				return
			}
			defer b.Close()
			if _, err := b.Seed(ctx, seed.Items(20)); err != nil {
				errs[i] = fmt.Errorf("seed: %w", err)
			}
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	return errs
}

// Two shops started at once on one fresh data directory both start: the
// schema (the shop's and River's) is migrated by one while the other
// waits, and the catalog is seeded once. Before the migrations were
// serialised, one of them failed with "table ... already exists" in most
// rounds.
func TestSQLiteTwoStartsOnAFreshFile(t *testing.T) {
	ctx := context.Background()
	rounds := 20 // the old code failed within seven in each of six runs
	if testing.Short() {
		rounds = 3
	}
	for round := range rounds {
		path := filepath.Join(t.TempDir(), "shop.db")
		cfg := backend.Config{SQLitePath: path}
		for k, err := range startTogether(ctx, 2, cfg) {
			if err != nil {
				t.Fatalf("round %d: start %d of 2: %v", round+1, k+1, err)
			}
		}
		b, err := backend.OpenStore(ctx, cfg)
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round+1, err)
		}
		var items int
		if err := b.SQLite.WriteDB().QueryRowContext(ctx, `SELECT count(*) FROM items`).Scan(&items); err != nil {
			t.Fatal(err)
		}
		b.Close()
		if items != 20 {
			t.Fatalf("round %d: %d items after two starts, want the 20 seeded once", round+1, items)
		}
	}
}

// together runs fn n times at once, released together by a barrier, and
// returns each run's error.
func together(n int, fn func() error) []error {
	errs := make([]error, n)
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			errs[i] = fn()
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	return errs
}

// Two `shop migrate` at once on one fresh PostgreSQL database (an
// operator's and a deployment's) both succeed: goose runs under its
// advisory lock, and River's migrator, which takes none, under the
// shop's. Then two replicas starting at once on it both start and seed
// the catalog once.
func TestPostgresTwoMigratesOnAFreshDatabase(t *testing.T) {
	ctx := context.Background()
	pgtest.Admin(t).Close(ctx) // skips without PostgreSQL
	rounds := 6                // the old code failed in two of four rounds
	if testing.Short() {
		rounds = 1
	}
	for round := range rounds {
		t.Run(fmt.Sprint("round", round+1), func(t *testing.T) {
			cfg := backend.Config{DatabaseURL: pgtest.NewDatabase(t)}
			// Beside CPU hogs a connection can take seconds.
			cfg.Postgres.ConnectTimeout = time.Minute
			for k, err := range together(2, func() error { _, err := backend.Migrate(ctx, cfg); return err }) {
				if err != nil {
					t.Fatalf("migrate %d of 2: %v", k+1, err)
				}
			}
			for k, err := range startTogether(ctx, 2, cfg) {
				if err != nil {
					t.Fatalf("replica %d of 2: %v", k+1, err)
				}
			}
			b, err := backend.OpenStore(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			var items int
			if err := b.Postgres.Pool().QueryRow(ctx, `SELECT count(*) FROM items`).Scan(&items); err != nil {
				t.Fatal(err)
			}
			if items != 20 {
				t.Fatalf("%d items after two starts, want the 20 seeded once", items)
			}
		})
	}
}
