package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
)

// A migration waiting for another's lock gives up when its context ends,
// saying what it waited for, and runs nothing; once the other lets go,
// the lock is free.
func TestMigratingWaitsForTheLockAndGivesUp(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	open := func() *postgres.DB {
		db, err := postgres.Open(ctx, url, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		return db
	}
	first, second := open(), open()

	holding, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- first.Migrating(ctx, func(context.Context) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	waiting, giveUp := context.WithCancelCause(ctx)
	ran := false
	errc := make(chan error, 1)
	go func() {
		errc <- second.Migrating(waiting, func(context.Context) error { ran = true; return nil })
	}()
	// The wait is on the server: cancel once it is seen there.
	waitForLockWaiter(t, first)
	giveUp(errors.New("the operator gave up"))
	err := <-errc
	if ran {
		t.Fatal("the second migration ran while the first held the lock")
	}
	if err == nil || !strings.Contains(err.Error(), "another `shop migrate` is running") {
		t.Fatalf("gave up with %v, want the wait for another migration", err)
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := second.Migrating(ctx, func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("after the first let go: ran %v, %v", ran, err)
	}
}

// waitForLockWaiter returns once a session of db's database waits for an
// advisory lock, asking the server each round trip.
func waitForLockWaiter(t *testing.T, db *postgres.DB) {
	t.Helper()
	ctx := context.Background()
	for {
		var waiting bool
		if err := db.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
	}
}
