package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
)

// Processes opening a shard together (a Deployment's pods, started at
// once) each claim its number: one whose claim waited on another's
// uncommitted claim succeeds once that commits, and a claim of another
// number is refused naming the number recorded.
func TestClaimShardWaitingOnAnotherClaim(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	db, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO shard_identity (id, shard) VALUES (1, 1)`); err != nil {
		t.Fatal(err)
	}
	claimed := make(chan error, 1)
	go func() { claimed <- db.ClaimShard(ctx, 1) }()
	waitForALockWaiter(t, url, "shard_identity")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-claimed; err != nil {
		t.Fatalf("a claim that waited on another process's claim of the same number: %v", err)
	}
	if err := db.ClaimShard(ctx, 2); err == nil || !strings.Contains(err.Error(), "is shard 1") {
		t.Fatalf("claiming shard 1's database as shard 2: %v, want it refused naming shard 1", err)
	}
}

// waitForALockWaiter returns once a session of url's database waits on
// a lock in a statement mentioning table. It asks from a connection of its
// own, outside any transaction, since pg_stat_activity is read once per
// transaction.
func waitForALockWaiter(t *testing.T, url, table string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for {
		var waiting bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()
			AND wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%')`, table).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
	}
}
