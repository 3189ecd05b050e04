package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/storetest"
)

// planNode is the part of EXPLAIN (FORMAT JSON) the check reads.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	IndexCond string     `json:"Index Cond"`
	Plans     []planNode `json:"Plans"`
}

// fullScans EXPLAINs q on conn, where sequential scans and hash and merge
// joins are switched off: a Seq Scan left in the plan has no index to
// replace it. An index scan
// with no condition and no LIMIT above it reads the whole index, which is
// a full scan too.
func fullScans(ctx context.Context, conn *pgx.Conn, q storetest.Query) ([]string, error) {
	var raw []byte
	if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+q.SQL, q.Args...).Scan(&raw); err != nil {
		return nil, err
	}
	var doc []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	var tables []string
	add := func(rel string) {
		// A month's partition is its table's.
		rel = partitionName.ReplaceAllString(rel, "")
		if !slices.Contains(tables, rel) {
			tables = append(tables, rel)
		}
	}
	var walk func(n planNode, underLimit bool)
	walk = func(n planNode, underLimit bool) {
		switch n.NodeType {
		case "Seq Scan":
			add(n.Relation)
		case "Index Scan", "Index Only Scan":
			if n.IndexCond == "" && !underLimit {
				add(n.Relation)
			}
		}
		for _, c := range n.Plans {
			walk(c, underLimit || n.NodeType == "Limit")
		}
	}
	for _, d := range doc {
		walk(d.Plan, false)
	}
	return tables, nil
}

// partitionName is the suffix of an order month's partition (or the
// legacy one's).
var partitionName = regexp.MustCompile(`_(p[0-9]{6}|legacy)$`)

func explainConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	// On a test's tiny tables the planner rightly prefers reading a table
	// whole; with sequential scans and hash and merge joins off it uses an
	// index wherever one can serve, so a table still read whole has none.
	for _, set := range []string{"SET enable_seqscan = off", "SET enable_hashjoin = off", "SET enable_mergejoin = off"} {
		if _, err := conn.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

// TestEveryQueryUsesAnIndex is the SQLite test's twin: every store and
// worker method and the job queue, through a pgx tracer, each distinct
// statement EXPLAINed.
func TestEveryQueryUsesAnIndex(t *testing.T) {
	ctx := context.Background()
	rec := &storetest.Recorder{}
	cfg := backend.Config{DatabaseURL: pgtest.NewDatabase(t)}
	cfg.Postgres.QueryHook = rec.Add
	cfg.Jobs = jobs.Config{Work: true, PrepTime: time.Millisecond, PollInterval: 10 * time.Millisecond}
	if _, err := backend.Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Seed(ctx, seed.Items(60)); err != nil {
		t.Fatal(err)
	}
	conn := explainConn(t, cfg.DatabaseURL)
	storetest.RunPlans(t, storetest.PlanHarness{
		Store:   b.Store,
		Reset:   rec.Reset,
		Queries: rec.All,
		FullScans: func(ctx context.Context, q storetest.Query) ([]string, error) {
			return fullScans(ctx, conn, q)
		},
		Background: func(t *testing.T, _ int64) { storetest.CheckoutThroughQueue(t, b.Store, b.Queue) },
	})
}

// TestPlanCheckFindsAFullScan proves the checker can fail on PostgreSQL.
func TestPlanCheckFindsAFullScan(t *testing.T) {
	ctx := context.Background()
	cfg := backend.Config{DatabaseURL: pgtest.NewDatabase(t)}
	if _, err := backend.Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	conn := explainConn(t, cfg.DatabaseURL)
	for _, tc := range []struct {
		sql  string
		args []any
		want string
	}{
		{`SELECT id FROM orders WHERE email = $1`, []any{"a@example.com"}, "orders"},
		{`SELECT id FROM orders WHERE session_id = $1 AND id < $2 ORDER BY id DESC LIMIT 5`, []any{1, 10}, ""},
	} {
		got, err := fullScans(ctx, conn, storetest.Query{SQL: tc.sql, Args: tc.args})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%s: full scans %v, want %q", tc.sql, got, tc.want)
		}
	}
}
