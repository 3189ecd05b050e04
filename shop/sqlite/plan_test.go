package sqlite_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlite"
	"github.com/perfscale/perfscale/shop/storetest"
)

// hook adapts the connector's hook to the recorder.
func hook(rec *storetest.Recorder) sqlite.QueryHook {
	return func(query string, args []driver.NamedValue) {
		vals := make([]any, len(args))
		for i, a := range args {
			vals[i] = a.Value
			if a.Name != "" {
				vals[i] = sql.Named(a.Name, a.Value)
			}
		}
		rec.Add(query, vals)
	}
}

// planLine is one line of EXPLAIN QUERY PLAN: "SCAN t", "SCAN t USING
// INDEX i", "SEARCH t USING INDEX i (a=?)". SCAN reads a table, or a whole
// index of it, from end to end.
var planLine = regexp.MustCompile(`^SCAN (\S+)`)

// fullScans EXPLAINs q on db and returns the tables its plan scans whole.
func fullScans(ctx context.Context, db *sql.DB, q storetest.Query) ([]string, error) {
	rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q.SQL, q.Args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	aliases := storetest.TableAliases(q.SQL)
	var tables []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			return nil, err
		}
		m := planLine.FindStringSubmatch(detail)
		if m == nil {
			continue
		}
		name := m[1]
		if t, ok := aliases[strings.ToLower(name)]; ok {
			name = t
		}
		tables = append(tables, name)
	}
	return tables, rows.Err()
}

// TestEveryQueryUsesAnIndex drives every store method and the job queue
// through a query-capturing connector and EXPLAINs what it captured.
func TestEveryQueryUsesAnIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shop.db")
	rec := &storetest.Recorder{}
	db, err := sqlite.Open(ctx, path, sqlite.WithQueryHook(hook(rec)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store := sqlite.NewStore(db, nil)
	queue, err := jobs.New(ctx, riversqlite.New(db.WriteDB()), store,
		jobs.Config{Work: true, PrepTime: time.Millisecond, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.SeedIfEmpty(ctx, seed.Items(60)); err != nil {
		t.Fatal(err)
	}
	// EXPLAIN on a connection of its own, so it is not captured itself.
	plain, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })

	storetest.RunPlans(t, storetest.PlanHarness{
		Store:   store,
		Reset:   rec.Reset,
		Queries: rec.All,
		FullScans: func(ctx context.Context, q storetest.Query) ([]string, error) {
			return fullScans(ctx, plain, q)
		},
		// River's own statements: fetching, running and completing a
		// checkout's jobs through to "ready".
		Background: func(t *testing.T, _ int64) { storetest.CheckoutThroughQueue(t, store, queue) },
	})
}

// TestPlanCheckFindsAFullScan proves the checker can fail: a lookup by a
// column with no index is reported as a full scan of its table.
func TestPlanCheckFindsAFullScan(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shop.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	plain, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	for _, tc := range []struct {
		sql  string
		want []string
	}{
		{`SELECT id FROM orders WHERE email = ?`, []string{"orders"}},
		{`SELECT c.item_id FROM cart_items c JOIN items i ON i.id = c.item_id WHERE i.name = ?`, []string{"cart_items"}},
		{`SELECT id FROM orders WHERE session_id = ? AND id < ? ORDER BY id DESC LIMIT 5`, nil},
	} {
		n := strings.Count(tc.sql, "?")
		args := make([]any, n)
		for i := range args {
			args[i] = 1
		}
		got, err := fullScans(ctx, plain, storetest.Query{SQL: tc.sql, Args: args})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: full scans %v, want %v", tc.sql, got, tc.want)
		}
	}
}
