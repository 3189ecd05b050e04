package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// TestOrderGrowth measures a checkout and a "my orders" page on databases
// of different sizes, side by side in turns (scripts/bench-partitions.sh;
// docs/postgres.md). It is a measurement, not a test: it runs only with
// SHOP_GROWTH_SIZES set (e.g. 100000,10000000). Each size's database,
// shop_growth_<size> on the test server, is generated once with
// set-based SQL over SHOP_GROWTH_MONTHS months (default 12) and kept for
// later runs. Where the server loads pg_stat_statements and has
// track_io_timing on (the cluster's own server does), it also writes the
// page statement's time in the server and the part of it spent reading
// blocks from outside shared buffers.
func TestOrderGrowth(t *testing.T) {
	sizesEnv := os.Getenv("SHOP_GROWTH_SIZES")
	if sizesEnv == "" {
		t.Skip("a measurement: set SHOP_GROWTH_SIZES (scripts/bench-partitions.sh)")
	}
	months := 12
	if v := os.Getenv("SHOP_GROWTH_MONTHS"); v != "" {
		months, _ = strconv.Atoi(v)
	}
	rounds, perRound := 6, 300
	if v := os.Getenv("SHOP_GROWTH_ROUNDS"); v != "" {
		rounds, _ = strconv.Atoi(v) // 0: generate the databases only
	}
	ctx := context.Background()
	type sized struct {
		n    int
		b    *backend.Backend
		live []int64 // sessions of the last 30 days
	}
	var dbs []*sized
	for _, f := range strings.Split(sizesEnv, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1000 {
			t.Fatalf("SHOP_GROWTH_SIZES: %q is not a size of at least 1000", f)
		}
		b := growthDatabase(t, n, months)
		dbs = append(dbs, &sized{n: n, b: b, live: liveSessions(t, b)})
	}
	if rounds == 0 {
		return
	}
	statements := true
	for _, d := range dbs {
		statements = statements && resetStatements(t, d.b)
	}
	type key struct {
		n  int
		op string
	}
	lat := map[key][]time.Duration{}
	rows := map[key][4]int64{}
	addRows := func(k key, before, after [4]int64) {
		r := rows[k]
		for i := range r {
			r[i] += after[i] - before[i]
		}
		rows[k] = r
	}
	ops := map[key]int{}
	rng := rand.New(rand.NewPCG(1, 2))
	t.Logf("%s load average %s", time.Now().UTC().Format(time.RFC3339), loadAverage())
	for round := range rounds {
		for _, d := range dbs {
			// Checkouts: each of a new session with one item in its cart.
			k := key{d.n, "checkout"}
			sessions := make([]int64, perRound)
			for i := range sessions {
				_, hash := shop.NewToken()
				sess, err := d.b.Store.CreateSession(ctx, hash)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := d.b.Store.SetCartItem(ctx, sess.ID, int64(1+i%50), 1); err != nil {
					t.Fatal(err)
				}
				sessions[i] = sess.ID
			}
			before := rowsRead(t, d.b)
			for _, sess := range sessions {
				start := time.Now()
				if _, _, err := d.b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess, IdempotencyKey: "g",
					Checkout: shop.Checkout{CustomerName: "Ada Lovelace", Email: "ada@example.com"}}); err != nil {
					t.Fatal(err)
				}
				lat[k] = append(lat[k], time.Since(start))
			}
			addRows(k, before, rowsRead(t, d.b))
			ops[k] += perRound
			// "My orders": a live session's first page.
			k = key{d.n, "my orders"}
			before = rowsRead(t, d.b)
			for range perRound {
				sess := d.live[rng.IntN(len(d.live))]
				start := time.Now()
				page, err := d.b.Store.ListOrders(ctx, sess, shop.OrderFilter{Limit: 10})
				if err != nil {
					t.Fatal(err)
				}
				lat[k] = append(lat[k], time.Since(start))
				if len(page.Orders) == 0 {
					t.Fatalf("session %d of %d orders lists none", sess, d.n)
				}
			}
			addRows(k, before, rowsRead(t, d.b))
			ops[k] += perRound
		}
		t.Logf("round %d done, load average %s", round+1, loadAverage())
	}
	t.Logf("%-10s %-10s %8s %8s %8s %14s %10s %11s", "orders", "operation", "p50 ms", "p99 ms", "rows/op", "order rows/op", "hits/op", "reads/op")
	for _, op := range []string{"checkout", "my orders"} {
		for _, d := range dbs {
			k := key{d.n, op}
			l := lat[k]
			slices.Sort(l)
			per := func(i int) float64 { return float64(rows[k][i]) / float64(ops[k]) }
			t.Logf("%-10d %-10s %8.2f %8.2f %8.1f %14.1f %10.1f %11.1f", d.n, op, ms(l[len(l)/2]), ms(l[len(l)*99/100]),
				per(0), per(1), per(2), per(3))
		}
	}
	if statements {
		// The server's own time for a page, and how much of it went to
		// reading blocks from outside shared buffers (track_io_timing).
		t.Logf("%-10s %-10s %8s %14s %12s %16s", "orders", "server", "mean ms", "blocks read", "reading ms", "the rest ms")
		for _, d := range dbs {
			mean, read, readMs := pageStatement(t, d.b)
			t.Logf("%-10d %-10s %8.3f %14.2f %12.3f %16.3f", d.n, "my orders", mean, read, readMs, mean-readMs)
		}
	}
	t.Logf("%s load average %s", time.Now().UTC().Format(time.RFC3339), loadAverage())
}

// resetStatements empties pg_stat_statements for the database; false
// (logged) where the server does not load it or times no reads.
func resetStatements(t *testing.T, b *backend.Backend) bool {
	t.Helper()
	ctx := context.Background()
	var timing string
	if err := b.Postgres.Pool().QueryRow(ctx, `SHOW track_io_timing`).Scan(&timing); err != nil || timing != "on" {
		t.Logf("no server-side times: track_io_timing is %q (%v)", timing, err)
		return false
	}
	for _, q := range []string{`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`,
		`SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)`} {
		if _, err := b.Postgres.Pool().Exec(ctx, q); err != nil {
			t.Logf("no server-side times: %v", err)
			return false
		}
	}
	return true
}

// pageStatement is the "my orders" statement's mean execution time, the
// blocks it read from outside shared buffers and the time those reads
// took, per call, in the database.
func pageStatement(t *testing.T, b *backend.Backend) (meanMs, blocksRead, readMs float64) {
	t.Helper()
	if err := b.Postgres.Pool().QueryRow(context.Background(), `SELECT
			SUM(total_exec_time) / SUM(calls), SUM(shared_blks_read)::float8 / SUM(calls), SUM(blk_read_time) / SUM(calls)
		FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query LIKE 'WITH page AS%'`).
		Scan(&meanMs, &blocksRead, &readMs); err != nil {
		t.Fatalf("the page's statement in pg_stat_statements: %v", err)
	}
	return meanMs, blocksRead, readMs
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// rowsRead is the rows the database's tables have returned so far (read
// by sequential scans and fetched through indexes), as the statistics
// have them once this process's connections have reported: the pool is
// emptied first so every backend flushes its counts.
func rowsRead(t *testing.T, b *backend.Backend) [4]int64 {
	t.Helper()
	ctx := context.Background()
	b.Postgres.Pool().Reset()
	conn, err := b.Postgres.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// An exiting backend flushes its counts on its way out, after the
	// client has let go: read until two reads agree.
	prev := [4]int64{-1, -1, -1, -1}
	for {
		// Rows of all tables and of the order tables; blocks found in
		// shared buffers and read from outside them (the OS's cache or
		// the disk).
		var n [4]int64
		if _, err := conn.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, `SELECT COALESCE(SUM(r), 0)::BIGINT,
				COALESCE(SUM(r) FILTER (WHERE relname ~ '^(orders|order_lines|order_events)_(p[0-9]{6}|legacy)$'), 0)::BIGINT
			FROM (SELECT relname, COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) AS r FROM pg_stat_user_tables) t`).Scan(&n[0], &n[1]); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, `SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()`).Scan(&n[2], &n[3]); err != nil {
			t.Fatal(err)
		}
		if n == prev {
			return n
		}
		prev = n
		time.Sleep(200 * time.Millisecond)
	}
}

// liveSessions are the generated sessions of the last 30 days.
func liveSessions(t *testing.T, b *backend.Backend) []int64 {
	t.Helper()
	rows, err := b.Postgres.Pool().Query(context.Background(), `SELECT id FROM sessions
		WHERE token_hash LIKE 'growth%' AND expires_at > $1 ORDER BY id`, time.Now().UnixMicro())
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(ids) == 0 {
		t.Fatalf("live sessions: %d, %v", len(ids), err)
	}
	return ids
}

// growthDatabase opens shop_growth_<n>, generating it first when it does
// not hold n orders yet: n orders over the months before now, five to a
// session (a session's orders within a few minutes, as a session lives
// 30 days), each with two lines and three published events, all with
// set-based SQL; then ANALYZE, as autovacuum would in time.
func growthDatabase(t *testing.T, n, months int) *backend.Backend {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("shop_growth_%d", n)
	url := pgtest.WithDatabase(pgtest.AdminURL(), name)
	admin := pgtest.Admin(t)
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if !exists {
		if _, err := admin.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Fatal(err)
		}
	}
	admin.Close(ctx)
	cfg := backend.Config{DatabaseURL: url}
	if _, err := backend.Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Seed(ctx, seed.Items(10000)); err != nil {
		t.Fatal(err)
	}
	pool := b.Postgres.Pool()
	var have int
	if err := pool.QueryRow(ctx, `SELECT COUNT(*) FROM sessions WHERE token_hash = 'growth-done'`).Scan(&have); err != nil {
		t.Fatal(err)
	}
	if have > 0 {
		return b
	}
	now := time.Now().UTC()
	for m := months; m >= 1; m-- {
		if _, err := b.Postgres.MaintainPartitions(ctx, now.AddDate(0, -m, 0)); err != nil {
			t.Fatal(err)
		}
	}
	span := now.Sub(now.AddDate(0, -months, 0)).Microseconds()
	t0 := now.UnixMicro() - span
	step := span / int64(n)
	conn, err := pool.Acquire(ctx) // one connection: the temporary table is its
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	start := time.Now()
	at := fmt.Sprintf("(%d::BIGINT + i::BIGINT * %d)", t0, step) // order i's created_at
	for _, q := range []string{
		`SET statement_timeout = 0`,
		// The rows are consistent by construction: no per-row foreign key
		// checks (triggers), which would take hours at 10 M orders.
		`SET session_replication_role = replica`,
		`UPDATE items SET stock = 1000000000`,
		// Session s is made a minute before its first order, order 5(s-1)+1.
		fmt.Sprintf(`INSERT INTO sessions (token_hash, created_at, expires_at)
			SELECT 'growth' || s, %[1]s - 60000000, %[1]s - 60000000 + 2592000000000
			FROM generate_series(1, %[2]d) s, LATERAL (SELECT (s - 1) * 5 + 1 AS i) first`, at, n/5),
		`CREATE TEMP TABLE growth_sessions AS SELECT id, row_number() OVER (ORDER BY id) AS s FROM sessions WHERE token_hash LIKE 'growth%'`,
		// Ids floor + i: below the store's own (floor | serial << 10, the
		// serial set past n), so they never meet.
		fmt.Sprintf(`INSERT INTO orders (id, session_id, status, customer_name, email, notes, total_cents, created_at, updated_at)
			SELECT order_id_floor(%[1]s) + i, gs.id, 'ready', 'Ada Lovelace', 'ada@example.com', '', 3000, %[1]s, %[1]s
			FROM generate_series(1, %[2]d) i JOIN growth_sessions gs ON gs.s = (i - 1) / 5 + 1`, at, n),
		fmt.Sprintf(`SELECT setval('order_id_serial', %d)`, n+1),
		`INSERT INTO order_lines (order_id, item_id, name, quantity, unit_price_cents, line_total_cents)
			SELECT o.id, 1 + (o.id + l * 100) % 200, 'item', 1, 1500, 1500 FROM orders o, generate_series(0, 1) l`,
		`INSERT INTO order_events (order_id, seq, status, created_at, published_at)
			SELECT o.id, e.seq, e.status, o.created_at + e.seq, o.created_at + e.seq
			FROM orders o, (VALUES (1, 'placed'), (2, 'confirmed'), (3, 'ready')) e (seq, status)`,
		`INSERT INTO sessions (token_hash, created_at, expires_at) VALUES ('growth-done', 0, 0)`,
		`SET session_replication_role = DEFAULT`,
		`ANALYZE`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		t.Logf("%d orders: %.50s... done at %s", n, strings.Join(strings.Fields(q), " "), time.Since(start).Round(time.Second))
	}
	return b
}
