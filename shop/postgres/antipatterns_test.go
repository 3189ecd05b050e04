package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlstore"
	"github.com/perfscale/perfscale/shop/storetest"
)

// TestBadQueries: the n-plus-one and missing-index anti-patterns on
// PostgreSQL (storetest.RunBadQueries). The plans are EXPLAINed with the
// planner's defaults after ANALYZE, on a catalog large enough that an
// index serves a category's page when one can.
func TestBadQueries(t *testing.T) {
	ctx := context.Background()
	rec := &storetest.Recorder{}
	url := pgtest.NewDatabase(t)
	if _, err := backend.Migrate(ctx, backend.Config{DatabaseURL: url}); err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Open(ctx, url, postgres.Options{QueryHook: rec.Add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	raw := postgres.NewStore(db, nil)
	if _, err := raw.SeedIfEmpty(ctx, seed.Items(500)); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	storetest.RunBadQueries(t, storetest.BadQueriesHarness{
		Plain:        raw,
		NPlusOne:     sqlstore.WithBadQueries(raw, sqlstore.BadQueries{NPlusOne: true}),
		MissingIndex: sqlstore.WithBadQueries(raw, sqlstore.BadQueries{MissingIndex: true}),
		Reset:        rec.Reset,
		Queries:      rec.All,
		UsesIndex: func(ctx context.Context, q storetest.Query) (bool, error) {
			var raw []byte
			if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+q.SQL, q.Args...).Scan(&raw); err != nil {
				return false, err
			}
			// "Node Type": "Index Scan", "Index Only Scan", "Bitmap
			// Index Scan": an index serves the read.
			var doc []map[string]any
			if err := json.Unmarshal(raw, &doc); err != nil {
				return false, fmt.Errorf("read plan %s: %w", raw, err)
			}
			return strings.Contains(string(raw), `Index Scan"`) || strings.Contains(string(raw), `Index Only Scan"`), nil
		},
	})
}
