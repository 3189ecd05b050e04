package backend_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
)

// After `shop migrate` on PostgreSQL, ANALYZE keeps statistics of
// river_job's columns that River's statements filter and sort by and of
// none of the others (the payloads, their histories, the unique key), so
// an autovacuum ANALYZE of the job table costs a third of what it did
// (docs/scaleout.md); migrating again keeps it so.
func TestMigrateLeavesRiverJobsUnsortedColumnsUnanalyzed(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	for range 2 {
		if _, err := backend.Migrate(ctx, backend.Config{DatabaseURL: url}); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
		INSERT INTO river_job (kind, args, metadata, max_attempts, queue, state, tags)
		SELECT 'test', jsonb_build_object('n', n), '{}', 25, 'default', 'available', '{}'
		FROM generate_series(1, 100) AS n`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE river_job"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT attname FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'river_job' ORDER BY attname")
	if err != nil {
		t.Fatal(err)
	}
	analyzed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"attempted_at", "finalized_at", "id", "kind", "priority", "queue", "scheduled_at", "state"}
	if !slices.Equal(analyzed, want) {
		t.Errorf("ANALYZE kept statistics of river_job's %q, want %q", analyzed, want)
	}
}
