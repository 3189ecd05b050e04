package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlite"
	"github.com/perfscale/perfscale/shop/sqlstore"
	"github.com/perfscale/perfscale/shop/storetest"
)

// TestBadQueries: the n-plus-one and missing-index anti-patterns on the
// embedded store (storetest.RunBadQueries).
func TestBadQueries(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shop.db")
	rec := &storetest.Recorder{}
	db, err := sqlite.Open(ctx, path, sqlite.WithQueryHook(hook(rec)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	raw := sqlite.NewStore(db, nil)
	if _, err := raw.SeedIfEmpty(ctx, seed.Items(200)); err != nil {
		t.Fatal(err)
	}
	plain, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })
	storetest.RunBadQueries(t, storetest.BadQueriesHarness{
		Plain:        raw,
		NPlusOne:     sqlstore.WithBadQueries(raw, sqlstore.BadQueries{NPlusOne: true}),
		MissingIndex: sqlstore.WithBadQueries(raw, sqlstore.BadQueries{MissingIndex: true}),
		Reset:        rec.Reset,
		Queries:      rec.All,
		UsesIndex: func(ctx context.Context, q storetest.Query) (bool, error) {
			rows, err := plain.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q.SQL, q.Args...)
			if err != nil {
				return false, err
			}
			defer rows.Close()
			used := false
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					return false, err
				}
				// SEARCH items USING INDEX ..., SCAN items USING INDEX ...,
				// USING INTEGER PRIMARY KEY: an index serves the read.
				used = used || strings.Contains(detail, " USING ")
			}
			return used, rows.Err()
		},
	})
}
