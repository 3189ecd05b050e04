package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/storetest"
)

// skipShort: each partition test makes a database of its own (a few
// seconds); the full run has them, the -race -short run does not.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("a database of its own: not under -short")
	}
}

// setClock is a clock the test sets to any instant.
type setClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *setClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *setClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// openBackend migrates a fresh database (or url's) and opens the service's
// backend on it with cfg's clock and options, items seeded.
func openBackend(t *testing.T, cfg backend.Config) *backend.Backend {
	t.Helper()
	ctx := context.Background()
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = pgtest.NewDatabase(t)
	}
	if _, err := backend.Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Seed(ctx, seed.Items(10)); err != nil {
		t.Fatal(err)
	}
	return b
}

// placeAt places an order of item 1 in a new session with the clock at at.
func placeAt(t *testing.T, b *backend.Backend, clock *setClock, at time.Time) *shop.Order {
	t.Helper()
	ctx := context.Background()
	clock.Set(at)
	_, hash := shop.NewToken()
	sess, err := b.Store.CreateSession(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Store.SetCartItem(ctx, sess.ID, 1, 1); err != nil {
		t.Fatal(err)
	}
	o, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "k",
		Checkout: shop.Checkout{CustomerName: "Ada Lovelace", Email: "ada@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// rowsOf counts, per table, the rows that name order id.
func rowsOf(t *testing.T, b *backend.Backend, id int64) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, q := range []struct{ table, col string }{
		{"orders", "id"}, {"order_lines", "order_id"}, {"order_events", "order_id"},
		{"idempotency_keys", "order_id"}, {"mail_outbox", "order_id"},
	} {
		var n int
		if err := b.Postgres.Pool().QueryRow(context.Background(),
			`SELECT COUNT(*) FROM `+q.table+` WHERE `+q.col+` = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		got[q.table] = n
	}
	return got
}

func TestOrderIDsCarryTheirMonth(t *testing.T) {
	skipShort(t)
	clock := &setClock{t: utc("2026-01-10T12:00:00Z")}
	b := openBackend(t, backend.Config{Now: clock.Now})
	var prev int64
	for _, at := range []string{"2026-01-31T23:59:59.999999Z", "2026-02-01T00:00:00Z"} {
		o := placeAt(t, b, clock, utc(at))
		var month string
		if err := b.Postgres.Pool().QueryRow(context.Background(),
			`SELECT c.relname FROM orders o JOIN pg_class c ON c.oid = o.tableoid WHERE o.id = $1`, o.ID).Scan(&month); err != nil {
			t.Fatal(err)
		}
		want := "orders_p" + utc(at).Format("200601")
		if month != want || o.ID <= prev || o.ID >= 1<<53 || o.ID&1023 != 0 {
			t.Errorf("order created at %s: id %d in %s, want %s, ids increasing, below 2^53, the low 10 bits (a shard's bucket) 0", at, o.ID, month, want)
		}
		prev = o.ID
	}
}

func TestRetentionDropsWholeOldMonths(t *testing.T) {
	skipShort(t)
	ctx := context.Background()
	const retention = 60 * 24 * time.Hour
	clock := &setClock{t: utc("2026-01-10T12:00:00Z")}
	cfg := backend.Config{Now: clock.Now}
	cfg.Postgres.OrderRetention = retention
	b := openBackend(t, cfg)
	store := b.Store.(*postgres.Store)

	early := placeAt(t, b, clock, utc("2026-01-10T12:00:00Z"))
	edge := placeAt(t, b, clock, utc("2026-01-31T23:59:59.999999Z")) // the month's last microsecond
	next := placeAt(t, b, clock, utc("2026-02-01T00:00:00Z"))        // the next month's first
	later := placeAt(t, b, clock, utc("2026-03-05T08:00:00Z"))
	for _, o := range []*shop.Order{early, edge, next} {
		if _, err := store.ConfirmOrder(ctx, o.ID, jobs.ConfirmationMail, nil); err != nil {
			t.Fatal(err)
		}
	}
	full := map[string]int{"orders": 1, "order_lines": 1, "order_events": 2, "idempotency_keys": 1, "mail_outbox": 1}
	if got := rowsOf(t, b, edge.ID); !maps(got, full) {
		t.Fatalf("before retention, order %d has %v, want %v", edge.ID, got, full)
	}
	// The sessions of January and February have expired by April and are
	// kept for their orders.
	clock.Set(utc("2026-04-02T00:00:00Z"))
	if n, err := store.PruneSessions(ctx); err != nil || n != 0 {
		t.Fatalf("pruning sessions that all have orders deleted %d (%v)", n, err)
	}

	// A microsecond short of February's start plus the retention, January
	// still has an order within it: nothing goes.
	ch, err := b.Postgres.MaintainPartitions(ctx, utc("2026-02-01T00:00:00Z").Add(retention-time.Microsecond))
	if err != nil || len(ch.Dropped) != 0 {
		t.Fatalf("maintenance a microsecond early dropped %v (%v), want nothing", ch.Dropped, err)
	}
	if !slices.Equal(ch.Created, []string{"2026-04", "2026-05", "2026-06"}) {
		t.Errorf("maintenance on 1 April created %v, want [2026-04 2026-05 2026-06]", ch.Created)
	}
	// At February's start plus the retention, January goes whole.
	ch, err = b.Postgres.MaintainPartitions(ctx, utc("2026-02-01T00:00:00Z").Add(retention))
	if err != nil || !slices.Equal(ch.Dropped, []string{"2026-01"}) {
		t.Fatalf("maintenance at the cutoff dropped %v (%v), want [2026-01]", ch.Dropped, err)
	}
	none := map[string]int{"orders": 0, "order_lines": 0, "order_events": 0, "idempotency_keys": 0, "mail_outbox": 0}
	for _, o := range []*shop.Order{early, edge} {
		if got := rowsOf(t, b, o.ID); !maps(got, none) {
			t.Errorf("order %d of January left %v behind", o.ID, got)
		}
		if _, err := store.OrderByID(ctx, o.ID); shop.ErrorCode(err) != shop.ENOTFOUND {
			t.Errorf("a dropped order's confirmation job reads it: %v, want ENOTFOUND (the job cancels)", err)
		}
		if moved, err := store.MarkOrderReady(ctx, o.ID, nil); moved || err != nil {
			t.Errorf("a dropped order's ready job: moved %v, %v; want a no-op", moved, err)
		}
	}
	if got := rowsOf(t, b, next.ID); !maps(got, full) {
		t.Errorf("February's first order has %v after January went, want %v", got, full)
	}
	if got, err := store.OrderByID(ctx, later.ID); err != nil || len(got.Lines) != 1 {
		t.Errorf("March's order after January went: %+v, %v", got, err)
	}
	// The outbox relay sees only what is left.
	events, err := store.UnpublishedOrderEvents(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.OrderID == early.ID || e.OrderID == edge.ID {
			t.Errorf("the relay still finds event %+v of a dropped order", e)
		}
	}
	if len(events) != 3 { // next: placed, confirmed; later: placed
		t.Errorf("the relay finds %d events, want 3", len(events))
	}
	// A kept session goes once every month it could have ordered in is
	// gone: early's (it expired 9 February) with February, not with
	// January; edge's (expired 2 March) stays while March is there.
	sessionExists := func(id int64) bool {
		var n int
		if err := b.Postgres.Pool().QueryRow(ctx, `SELECT count(*) FROM sessions WHERE id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	if !sessionExists(early.SessionID) {
		t.Errorf("early's session went with January; it lived into February")
	}
	if _, err := b.Postgres.MaintainPartitions(ctx, utc("2026-03-01T00:00:00Z").Add(retention)); err != nil {
		t.Fatal(err)
	}
	if sessionExists(early.SessionID) {
		t.Errorf("early's session is left after every month it lived in went")
	}
	if !sessionExists(edge.SessionID) || !sessionExists(later.SessionID) {
		t.Errorf("a session that lived into March went with February")
	}
}

func TestRetentionOffKeepsEveryOrder(t *testing.T) {
	skipShort(t)
	ctx := context.Background()
	clock := &setClock{t: utc("2026-01-10T12:00:00Z")}
	b := openBackend(t, backend.Config{Now: clock.Now})
	o := placeAt(t, b, clock, utc("2026-01-10T12:00:00Z"))
	ch, err := b.Postgres.MaintainPartitions(ctx, utc("2036-01-01T00:00:00Z"))
	if err != nil || len(ch.Dropped) != 0 {
		t.Fatalf("without a retention maintenance dropped %v (%v)", ch.Dropped, err)
	}
	if got, err := b.Store.(*postgres.Store).OrderByID(ctx, o.ID); err != nil || got.ID != o.ID {
		t.Fatalf("without a retention the order is %+v, %v", got, err)
	}
}

func TestOrderRetentionBelowTheSessionLifetimeIsRefused(t *testing.T) {
	_, err := postgres.Open(context.Background(), pgtest.AdminURL(), postgres.Options{OrderRetention: 24 * time.Hour})
	if !errors.Is(err, postgres.ErrOrderRetention) || !strings.Contains(err.Error(), "720h0m0s") {
		t.Fatalf("a retention of a day: %v, want ErrOrderRetention naming the minimum", err)
	}
}

// TestMigrationPartitionsExistingOrders migrates a database holding orders
// (as the release before partitioning left it): every order keeps its id,
// lines, events, key and mail; new orders go to their months; a session
// from before lists both; retention later drops the old orders whole.
func TestMigrationPartitionsExistingOrders(t *testing.T) {
	skipShort(t)
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	db, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.MigrateTo(ctx, 3); err != nil {
		t.Fatal(err)
	}
	old := utc("2026-01-15T00:00:00Z").UnixMicro()
	for _, q := range []string{
		`INSERT INTO sessions (token_hash, created_at, expires_at) SELECT 'old' || i, $1::BIGINT, $1::BIGINT + 2592000000000 FROM generate_series(1, 10) i`,
		`INSERT INTO orders (session_id, status, customer_name, email, total_cents, created_at, updated_at)
			SELECT 1 + i % 10, 'ready', 'Ada', 'ada@example.com', 300, $1::BIGINT + i, $1::BIGINT + i FROM generate_series(1, 1000) i`,
		`INSERT INTO order_lines SELECT o.id, l, 'item', 1, 150, 150 FROM orders o, generate_series(1, 2) l`,
		`INSERT INTO order_events (order_id, seq, status, created_at) SELECT id, 1, 'placed', created_at FROM orders`,
		`INSERT INTO idempotency_keys SELECT session_id, 'k' || id, 'h', id, created_at FROM orders WHERE id <= 5`,
		`INSERT INTO mail_outbox SELECT id, email, 's', 'b', created_at FROM orders WHERE id <= 5`,
	} {
		args := []any{old}
		if !strings.Contains(q, "$1") {
			args = nil
		}
		if _, err := db.Pool().Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	counts := func() string {
		var s string
		if err := db.Pool().QueryRow(ctx, `SELECT format('%s orders (ids %s), %s lines, %s events, %s keys, %s mails',
			(SELECT COUNT(*) FROM orders), (SELECT SUM(id) FROM orders), (SELECT COUNT(*) FROM order_lines),
			(SELECT COUNT(*) FROM order_events), (SELECT COUNT(*) FROM idempotency_keys), (SELECT COUNT(*) FROM mail_outbox))`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := counts()

	clock := &setClock{t: utc("2026-02-03T10:00:00Z")}
	cfg := backend.Config{DatabaseURL: url, Now: clock.Now}
	b := openBackend(t, cfg)
	if after := counts(); after != before {
		t.Fatalf("the migration changed the orders: %s, was %s", after, before)
	}
	store := b.Store.(*postgres.Store)
	o, err := store.Order(ctx, 3, 2)
	if err != nil || len(o.Lines) != 2 || o.ID != 2 {
		t.Fatalf("order 2 after the migration: %+v, %v", o, err)
	}
	// An old session orders again: the new order is in February's
	// partition and its list has both, newest first.
	clock.Set(utc("2026-02-03T10:00:00Z"))
	if _, err := store.SetCartItem(ctx, 3, 1, 1); err != nil {
		t.Fatal(err)
	}
	fresh, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: 3, IdempotencyKey: "new",
		Checkout: shop.Checkout{CustomerName: "Ada Lovelace", Email: "ada@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	page, err := store.ListOrders(ctx, 3, shop.OrderFilter{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if ids := orderIDs(page.Orders); len(ids) != 3 || ids[0] != fresh.ID || ids[1] >= 1<<40 || page.Next == 0 {
		t.Fatalf("the old session's orders after it ordered again: %v (next %d), want %d then its legacy orders", ids, page.Next, fresh.ID)
	}

	// Retention: once the newest legacy order is older than the cutoff the
	// legacy partitions go whole, keys and mails with them.
	retained, err := postgres.Open(ctx, url, postgres.Options{OrderRetention: 40 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer retained.Close()
	if ch, err := retained.MaintainPartitions(ctx, utc("2026-02-20T00:00:00Z")); err != nil || len(ch.Dropped) != 0 {
		t.Fatalf("legacy orders of 2026-01-15 at 2026-02-20 with 40 days' retention: dropped %v (%v)", ch.Dropped, err)
	}
	ch, err := retained.MaintainPartitions(ctx, utc("2026-02-25T00:00:00Z"))
	if err != nil || !slices.Equal(ch.Dropped, []string{"legacy"}) {
		t.Fatalf("at 2026-02-25: dropped %v (%v), want [legacy]", ch.Dropped, err)
	}
	if got := counts(); !strings.HasPrefix(got, "1 orders") || !strings.HasSuffix(got, "1 lines, 1 events, 1 keys, 0 mails") {
		t.Errorf("after the legacy orders went: %s, want the one new order", got)
	}
}

func TestMigrationDownKeepsOrders(t *testing.T) {
	skipShort(t)
	ctx := context.Background()
	clock := &setClock{t: utc("2026-01-10T12:00:00Z")}
	b := openBackend(t, backend.Config{Now: clock.Now})
	o := placeAt(t, b, clock, utc("2026-01-10T12:00:00Z"))
	if err := b.Postgres.MigrateTo(ctx, 3); err != nil {
		t.Fatal(err)
	}
	var lines, events int
	if err := b.Postgres.Pool().QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM order_lines WHERE order_id = $1),
		(SELECT COUNT(*) FROM order_events WHERE order_id = $1)`, o.ID).Scan(&lines, &events); err != nil || lines != 1 || events != 1 {
		t.Fatalf("order %d after migrating down: %d lines, %d events (%v)", o.ID, lines, events, err)
	}
	if err := b.Postgres.MigrateTo(ctx, 10); err != nil {
		t.Fatalf("up again: %v", err)
	}
}

func orderIDs(orders []shop.Order) []int64 {
	ids := make([]int64, len(orders))
	for i, o := range orders {
		ids[i] = o.ID
	}
	return ids
}

func maps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// partitionPlanNode is the part of EXPLAIN (ANALYZE, FORMAT JSON) that says
// which partitions a statement read.
type partitionPlanNode struct {
	Relation string              `json:"Relation Name"`
	Loops    float64             `json:"Actual Loops"`
	Plans    []partitionPlanNode `json:"Plans"`
}

// partitionsRead returns, per partitioned table, how many of its
// partitions q reads: a query's by EXPLAIN ANALYZE (what it read, after
// the pruning done as it runs), a write's by EXPLAIN (the partitions left
// after planning; it is not run twice).
//
// generic plans q as a prepared statement does once its plan is cached
// (plan_cache_mode = force_generic_plan): the partitions are then pruned
// as it runs, by its parameters, or not at all.
func partitionsRead(ctx context.Context, conn *pgx.Conn, q storetest.Query, generic bool) (map[string]int, error) {
	explain := "EXPLAIN (FORMAT JSON) "
	run := readOnly(q.SQL)
	if run {
		explain = "EXPLAIN (ANALYZE, FORMAT JSON) "
	}
	stmt := q.SQL
	if generic {
		if _, err := conn.Exec(ctx, "PREPARE partitions_read AS "+q.SQL); err != nil {
			return nil, err
		}
		defer conn.Exec(ctx, "DEALLOCATE partitions_read")
		// EXECUTE takes its arguments as text of the statement, not as
		// parameters of the protocol.
		params := make([]string, len(q.Args))
		for i, a := range q.Args {
			params[i] = literal(a)
		}
		stmt = "EXECUTE partitions_read"
		if len(params) > 0 {
			stmt += "(" + strings.Join(params, ", ") + ")"
		}
	}
	args := q.Args
	if generic {
		args = nil
	}
	var raw []byte
	if err := conn.QueryRow(ctx, explain+stmt, args...).Scan(&raw); err != nil {
		return nil, err
	}
	var doc []struct {
		Plan partitionPlanNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	read := map[string]map[string]bool{}
	var walk func(n partitionPlanNode)
	walk = func(n partitionPlanNode) {
		if parent := partitionName.ReplaceAllString(n.Relation, ""); parent != n.Relation && (n.Loops > 0 || !run) {
			if read[parent] == nil {
				read[parent] = map[string]bool{}
			}
			read[parent][n.Relation] = true
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	for _, d := range doc {
		walk(d.Plan)
	}
	out := map[string]int{}
	for table, parts := range read {
		out[table] = len(parts)
	}
	return out, nil
}

// TestCheckoutAndMyOrdersReadFewPartitions: with two years of months, a
// checkout's statements read one partition of each table, and a "my
// orders" page (an order's page too) those of the months the session
// lived in and the ones made ahead.
func TestCheckoutAndMyOrdersReadFewPartitions(t *testing.T) {
	skipShort(t)
	ctx := context.Background()
	rec := &storetest.Recorder{}
	cfg := backend.Config{DatabaseURL: pgtest.NewDatabase(t)}
	cfg.Postgres.QueryHook = rec.Add
	b := openBackend(t, cfg)
	for m := 1; m <= 24; m++ {
		if _, err := b.Postgres.MaintainPartitions(ctx, time.Now().AddDate(0, -m, 0)); err != nil {
			t.Fatal(err)
		}
	}
	_, hash := shop.NewToken()
	sess, err := b.Store.CreateSession(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Store.SetCartItem(ctx, sess.ID, 1, 1); err != nil {
		t.Fatal(err)
	}
	rec.Reset()
	o, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "k",
		Checkout: shop.Checkout{CustomerName: "Ada Lovelace", Email: "ada@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	checkout := rec.All()
	rec.Reset()
	if _, err := b.Store.ListOrders(ctx, sess.ID, shop.OrderFilter{Limit: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Store.Order(ctx, sess.ID, o.ID); err != nil {
		t.Fatal(err)
	}
	pages := rec.All()

	conn, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	check := func(what string, qs []storetest.Query, most int, generic bool) {
		seen := 0
		for _, q := range qs {
			if !strings.Contains(q.SQL, "order") || !storetestExplainable(q.SQL) {
				continue
			}
			read, err := partitionsRead(ctx, conn, q, generic)
			if err != nil {
				t.Fatalf("%s: %v", q.SQL, err)
			}
			// A statement that only inserts into the order tables (a
			// checkout at once) reads none of their partitions.
			seen++
			for table, n := range read {
				if n > most {
					t.Errorf("%s (generic plan %v) reads %d partitions of %s, want at most %d: %s", what, generic, n, table, most, q.SQL)
				}
			}
		}
		if seen == 0 {
			t.Errorf("%s: no statement named an order table", what)
		}
	}
	for _, generic := range []bool{false, true} {
		if _, err := conn.Exec(ctx, map[bool]string{false: "SET plan_cache_mode = auto", true: "SET plan_cache_mode = force_generic_plan"}[generic]); err != nil {
			t.Fatal(err)
		}
		check("checkout", checkout, 1, generic)
		check("my orders", pages, postgres.MonthsAhead+2, generic)
		// On these small tables a page's lines are joined by nested loop,
		// pruned per order as it runs; on other statistics the planner
		// may hash them, and the page must still read only its months.
		if _, err := conn.Exec(ctx, "SET enable_nestloop = off"); err != nil {
			t.Fatal(err)
		}
		check("my orders, lines joined without a nested loop", pages, postgres.MonthsAhead+2, generic)
		if _, err := conn.Exec(ctx, "RESET enable_nestloop"); err != nil {
			t.Fatal(err)
		}
	}
}

// literal is a statement's argument as SQL text.
func literal(a any) string {
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	array := func(items []string, typ string) string {
		return "ARRAY[" + strings.Join(items, ", ") + "]::" + typ + "[]"
	}
	switch v := a.(type) {
	case string:
		return quote(v)
	case []string:
		items := make([]string, len(v))
		for i, s := range v {
			items[i] = quote(s)
		}
		return array(items, "text")
	case []int64:
		items := make([]string, len(v))
		for i, n := range v {
			items[i] = fmt.Sprint(n)
		}
		return array(items, "bigint")
	case []int32:
		items := make([]string, len(v))
		for i, n := range v {
			items[i] = fmt.Sprint(n)
		}
		return array(items, "int")
	case nil:
		return "NULL"
	default:
		if reflect.ValueOf(v).Kind() == reflect.String { // shop.Status
			return quote(reflect.ValueOf(v).String())
		}
		return fmt.Sprint(v)
	}
}

// readOnly reports whether q only reads (a SELECT, or a WITH query
// without a data-modifying part), so EXPLAIN ANALYZE may run it.
func readOnly(q string) bool {
	q = strings.ToUpper(strings.TrimSpace(q))
	if strings.HasPrefix(q, "SELECT") {
		return true
	}
	if !strings.HasPrefix(q, "WITH") {
		return false
	}
	for _, w := range strings.FieldsFunc(q, func(r rune) bool { return r != '_' && (r < 'A' || r > 'Z') }) {
		if w == "INSERT" || w == "UPDATE" || w == "DELETE" || w == "MERGE" {
			return false
		}
	}
	return true
}

// storetestExplainable: statements EXPLAIN can run (not transaction
// control or locks).
func storetestExplainable(q string) bool {
	q = strings.TrimSpace(strings.ToUpper(q))
	for _, p := range []string{"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"} {
		if strings.HasPrefix(q, p) && !strings.Contains(q, "PG_ADVISORY") {
			return true
		}
	}
	return false
}
