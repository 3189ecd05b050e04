package sqlite_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlite"
	"github.com/perfscale/perfscale/shop/storetest"
)

// recorder keeps every statement the database runs.
type recorder struct {
	mu      sync.Mutex
	queries []storetest.Query
}

func (r *recorder) hook(query string, args []driver.NamedValue) {
	vals := make([]any, len(args))
	for i, a := range args {
		vals[i] = a.Value
		if a.Name != "" {
			vals[i] = sql.Named(a.Name, a.Value)
		}
	}
	r.mu.Lock()
	r.queries = append(r.queries, storetest.Query{SQL: query, Args: vals})
	r.mu.Unlock()
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.queries = nil
	r.mu.Unlock()
}

func (r *recorder) all() []storetest.Query {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]storetest.Query(nil), r.queries...)
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
	rec := &recorder{}
	db, err := sqlite.Open(ctx, path, sqlite.WithQueryHook(rec.hook))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var lazy struct{ *sqlite.Store }
	queue, err := jobs.New(ctx, riversqlite.New(db.WriteDB()), &lazy,
		jobs.Config{Work: true, PrepTime: time.Millisecond, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	store := sqlite.NewStore(db, queue, nil)
	lazy.Store = store
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
		Reset:   rec.reset,
		Queries: rec.all,
		FullScans: func(ctx context.Context, q storetest.Query) ([]string, error) {
			return fullScans(ctx, plain, q)
		},
		// River's own statements: fetching, running and completing a
		// checkout's jobs through to "ready".
		Background: func(t *testing.T, _ int64) {
			if err := queue.Start(ctx); err != nil {
				t.Fatal(err)
			}
			_, hash := shop.NewToken()
			sess, err := store.CreateSession(ctx, hash)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := store.SetCartItem(ctx, sess.ID, 7, 1); err != nil {
				t.Fatal(err)
			}
			c := shop.Checkout{CustomerName: "Grace Hopper", Email: "grace@example.com"}
			o, _, err := shop.NewOrders(store, nil).PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "river", Checkout: c})
			if err != nil {
				t.Fatal(err)
			}
			waitForStatus(t, store, o.ID, shop.StatusReady)
			stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := queue.Stop(stopCtx); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// waitForStatus waits for the worker to move order id to want; the worker
// runs on its own poll interval, so there is no event to wait on here.
func waitForStatus(t *testing.T, s *sqlite.Store, id int64, want shop.Status) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		o, err := s.OrderByID(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if o.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %d is %q, want %q", id, o.Status, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
