package postgres_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// freshMonthOrders is how full the month's partition is when it is
// analyzed: between the sizes at which the (session_id, id) index needs a
// second leaf page (about 290 entries) and the primary key does (about
// 400). There, on statistics as autovacuum takes them early in a month
// (the cluster's server analyzes a table after 50 changes and 5 % more),
// the generic plan of "my orders" used to cost its two paths alike and
// take the primary key, reading every order of the month (docs/postgres.md,
// "Why rows read per request swing between runs").
const freshMonthOrders = 350

// TestJourneyOnAFreshMonthReadsFewRows runs the journey's statements on a
// month's partition that has just started to fill: freshMonthOrders
// orders of many sessions (a shop's guests) or of 16 (the benchmark's
// users, each of whom keeps one session), analyzed as autovacuum would,
// with every connection planning generic plans (those pgx's prepared
// statements are cached with). Each statement must read at most a small
// multiple of what it returns (checkPlans), "my orders" and the
// checkout, order and events reads among them.
func TestJourneyOnAFreshMonthReadsFewRows(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sessions int
	}{
		{"many sessions", 120},
		{"16 sessions", 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := freshMonth(t, tc.sessions)
			plans := checkJourneyPlans(t, url, map[string]string{"plan_cache_mode": "force_generic_plan"})
			pages := 0
			for _, p := range plans {
				var e explained
				if err := json.Unmarshal([]byte(p), &e); err == nil && strings.HasPrefix(strings.TrimSpace(e.Query), "WITH page AS") {
					pages++
				}
			}
			if pages < journeyRounds {
				t.Fatalf("%d plans of the \"my orders\" page, want %d: the check saw too little", pages, journeyRounds)
			}
		})
	}
}

// freshMonth makes a migrated database, with 10,000 items, whose current month's partitions
// hold freshMonthOrders orders (a line each) of the given number of
// sessions, analyzed; autovacuum is off for every table, so a server
// that runs it changes nothing behind the test's back.
func freshMonth(t *testing.T, sessions int) string {
	t.Helper()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	if _, err := backend.Migrate(ctx, backend.Config{DatabaseURL: url}); err != nil {
		t.Fatal(err)
	}
	b, err := backend.Open(ctx, backend.Config{DatabaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	// As many items as TestJourneyStatementsReadFewRows has: checkout
	// browses ids up to 10,000, a refresh of items that exist.
	_, err = b.Seed(ctx, seed.Items(explainSizes(t).Items))
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	autovacuumOff(t, conn)
	now := time.Now().UnixMicro()
	for _, q := range []string{
		`INSERT INTO sessions (token_hash, created_at, expires_at)
			SELECT 'fresh-' || g, @now::bigint, @now::bigint + 3600000000 FROM generate_series(1, @sessions::int) g`,
		`INSERT INTO orders (id, session_id, status, customer_name, email, notes, total_cents, created_at, updated_at)
			SELECT order_id_at(@now::bigint), s.id, 'ready', 'Load Test', 'load@example.com', '', 1000, @now::bigint, @now::bigint
			FROM generate_series(1, @orders::int) g
			JOIN sessions s ON s.token_hash = 'fresh-' || (1 + g % @sessions::int)`,
		`INSERT INTO order_lines (order_id, item_id, name, quantity, unit_price_cents, line_total_cents)
			SELECT id, 1, 'Item', 1, 1000, 1000 FROM orders`,
	} {
		if _, err := conn.Exec(ctx, q, pgx.NamedArgs{"now": now, "sessions": sessions, "orders": freshMonthOrders}); err != nil {
			t.Fatal(err)
		}
	}
	// The month's partitions, analyzed as autovacuum does once a table
	// has had 50 changes and 5 % more since its last analyze.
	rows, _ := conn.Query(ctx, `SELECT DISTINCT tableoid::regclass::text FROM orders
		UNION SELECT DISTINCT tableoid::regclass::text FROM order_lines`)
	parts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if _, err := conn.Exec(ctx, `ANALYZE `+pgx.Identifier{p}.Sanitize()); err != nil {
			t.Fatal(err)
		}
	}
	return url
}

// TestLaterPagesOnAFreshMonthReadFewRows walks every page of "my orders"
// of the sessions of a fresh month (freshMonth), with generic plans on
// every connection: a page after the first carries the cursor, an upper
// bound on id, so its statement differs from the first page's and is
// planned on its own. Each page must read at most a small multiple of
// what it returns (checkPlans).
func TestLaterPagesOnAFreshMonthReadFewRows(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sessions int
		limit    int
	}{
		// About 3 orders a session: pages of 2.
		{"many sessions", 120, 2},
		// About 22 orders a session: the default page, then a short one.
		{"16 sessions", 16, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			url := freshMonth(t, tc.sessions)
			plans := &planCollector{}
			cfg := backend.Config{DatabaseURL: url}
			cfg.Postgres.ConnConfig = func(cc *pgx.ConnConfig) {
				plans.configure(cc)
				cc.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
			}
			b, err := backend.Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			rows, _ := conn.Query(ctx, `SELECT id FROM sessions WHERE token_hash LIKE 'fresh-%' ORDER BY id LIMIT @n`,
				pgx.NamedArgs{"n": 2 * journeyRounds})
			sessions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				t.Fatal(err)
			}
			later := 0
			for _, sess := range sessions {
				f := shop.OrderFilter{Limit: tc.limit}
				for {
					page := must(b.Store.ListOrders(ctx, sess, f))(t)
					if page.Next == 0 {
						break
					}
					f.Before = page.Next
					later++
				}
			}
			if later < journeyRounds {
				t.Fatalf("%d later pages, want at least %d: the check saw too little", later, journeyRounds)
			}
			checkPlans(t, plans.take())
		})
	}
}
