package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop/sqlite"
)

// A migration waiting for another process's gives up when its context
// ends, saying what it waited for; the lock it would have taken is given
// back, so the next migration is not stuck behind the one that gave up.
func TestMigratingWaitsForTheLockAndGivesUp(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shop.db")
	first, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()

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

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	err = second.Migrating(cancelled, func(context.Context) error { ran = true; return nil })
	if ran {
		t.Fatal("the second migration ran while the first held the lock")
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "another process is migrating") {
		t.Fatalf("gave up with %v, want the wait for another process's migration, cancelled", err)
	}

	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := second.Migrating(ctx, func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("after the first let go: ran %v, %v", ran, err)
	}
}

// What the migration fails with reaches the caller, and the lock is given
// back.
func TestMigratingReturnsItsError(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	boom := errors.New("boom")
	if err := db.Migrating(ctx, func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if err := db.Migrating(ctx, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
}
