package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
)

// explainSizes is the history the EXPLAIN test runs on: 100,000 orders
// (about 10 s to generate on this loaded 2-core machine), 10,000 sessions
// and 10,000 items; SHOP_EXPLAIN_ORDERS sets the orders (and a tenth of
// them as sessions) for a run at full size (scripts/bench-statements.sh
// measures on 1,000,000).
func explainSizes(t *testing.T) postgres.Sizes {
	s := postgres.Sizes{Orders: 100_000, Sessions: 10_000, Items: 10_000}
	if v := os.Getenv("SHOP_EXPLAIN_ORDERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("SHOP_EXPLAIN_ORDERS=%q is not a positive number", v)
		}
		s.Orders, s.Sessions = n, max(n/10, 1)
	}
	return s
}

// A statement may read (rows its scans produced or filtered away) at most
// readFactor times the rows it returns or writes, plus readSlack; and
// touch at most bufferFactor buffers a row plus bufferSlack. A read of a
// table whole, or of every line of an order history, breaks them at
// these sizes by orders of magnitude.
const (
	readFactor   = 4
	readSlack    = 20
	bufferFactor = 8
	bufferSlack  = 40
	// A write also walks each index it adds to (river_job has seven, two
	// of them GIN) and the free space map; a table's first row of a page
	// extends the relation.
	writeBufferFactor = 32
	writeBufferSlack  = 100
)

// periodic are the statements that do not run per request but hourly or
// at start (pruning, River's maintenance and leadership, migration
// checks): their reads are logged, not held to the per-request rule.
// Pruning expired sessions has a test of its own on analyzed statistics
// (TestPruneSessionsReadsWhatExpired: it reads what expired since its last
// run); here, on a table never analyzed, its writes may read their whole
// batch of 1,000 sessions to delete the few without orders, and a run
// after a batch walks its dead index entries (no autovacuum in this
// test). River's scheduler (on its
// leader, about once a second) moves due jobs in batches, reading about
// 16 rows of river_job for each.
var periodic = []string{
	"SELECT s.id, s.expires_at, EXISTS (SELECT 1 FROM orders", "DELETE FROM sessions WHERE id = ANY(",
	"UPDATE sessions SET expires_at = -expires_at", "DELETE FROM cart_items WHERE session_id = ANY(",
	"DELETE FROM idempotency_keys WHERE created_at", "-- name: JobDeleteBefore", "-- name: JobGetStuck",
	"-- name: Leader", "-- name: Queue", "-- name: RiverMigration", "-- name: ColumnExists", "-- name: TableExists",
	"-- name: PGGetProductAndVersion", "-- name: JobSchedule", "SELECT max(version_id) FROM goose_db_version", "SELECT EXISTS ( SELECT 1 FROM pg_tables",
	// Order partitions' upkeep (at start and daily): the catalog's list.
	"SELECT c.relname FROM pg_inherits",
}

func isPeriodic(q string) bool {
	for _, p := range periodic {
		if strings.HasPrefix(q, p) {
			return true
		}
	}
	return false
}

// TestJourneyStatementsReadFewRows runs the journey's store operations
// (session, menu, items, cart, checkout through the job queue to "ready",
// orders, events, the outbox relay) on a generated history, with
// auto_explain (ANALYZE, BUFFERS) reporting every statement's plan as a
// notice, and checks what each execution read against what it returned.
// First on the database as generated, never analyzed (autovacuum off for
// its tables), then after ANALYZE: plans must be right on default
// statistics and on real ones, and each statement runs more than five
// times, so PostgreSQL's generic plans are checked too.
func TestJourneyStatementsReadFewRows(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 100,000 orders (about 10 s); runs without -short")
	}
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	if _, err := backend.Migrate(ctx, backend.Config{DatabaseURL: url}); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	// (The months Generate adds for its history are made after this.)
	autovacuumOff(t, admin)
	pg, err := postgres.Open(ctx, url, postgres.Options{StatementTimeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = postgres.Generate(ctx, pg, explainSizes(t), time.Now())
	pg.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %+v in %s", explainSizes(t), time.Since(start).Round(time.Millisecond))

	t.Run("never analyzed", func(t *testing.T) {
		checkJourneyPlans(t, url, nil)
		var analyzed []string
		rows, _ := admin.Query(ctx, `SELECT relname FROM pg_stat_user_tables
			WHERE last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL`)
		analyzed, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if len(analyzed) > 0 {
			t.Fatalf("tables %v were analyzed: the run proves nothing about default statistics", analyzed)
		}
	})
	if _, err := admin.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	t.Run("analyzed", func(t *testing.T) { checkJourneyPlans(t, url, nil) })
}

// autovacuumOff switches autovacuum off for every table of conn's
// database, so a server with it on cannot analyze behind a test's back
// (partitioned parents hold no rows and take no such setting).
func autovacuumOff(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	rows, _ := conn.Query(ctx, `SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
		WHERE c.relkind <> 'p'`)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if _, err := conn.Exec(ctx, `ALTER TABLE `+pgx.Identifier{tb}.Sanitize()+` SET (autovacuum_enabled = off)`); err != nil {
			t.Fatal(err)
		}
	}
}

// planCollector gathers auto_explain's plans, sent as notices.
type planCollector struct {
	mu    sync.Mutex
	plans []string
}

func (c *planCollector) configure(cc *pgx.ConnConfig) {
	for k, v := range map[string]string{
		"session_preload_libraries":          "auto_explain",
		"auto_explain.log_min_duration":      "0",
		"auto_explain.log_analyze":           "on",
		"auto_explain.log_buffers":           "on",
		"auto_explain.log_timing":            "off",
		"auto_explain.log_format":            "json",
		"auto_explain.log_level":             "notice",
		"auto_explain.log_nested_statements": "off",
	} {
		cc.RuntimeParams[k] = v
	}
	cc.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if _, plan, ok := strings.Cut(n.Message, "plan:\n"); ok {
			c.mu.Lock()
			c.plans = append(c.plans, plan)
			c.mu.Unlock()
		}
	}
}

func (c *planCollector) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.plans
	c.plans = nil
	return p
}

// journeyRounds is how often the journey runs: past the five executions
// after which PostgreSQL may switch a prepared statement to its generic
// plan.
const journeyRounds = 8

// checkJourneyPlans runs the journey journeyRounds times on the database
// at url and checks every statement's reads; params are more settings of
// the service's connections (e.g. plan_cache_mode). It returns the plans
// (auto_explain's JSON) it checked.
func checkJourneyPlans(t *testing.T, url string, params map[string]string) []string {
	ctx := context.Background()
	plans := &planCollector{}
	cfg := backend.Config{DatabaseURL: url}
	cfg.Postgres.ConnConfig = func(cc *pgx.ConnConfig) {
		plans.configure(cc)
		for k, v := range params {
			cc.RuntimeParams[k] = v
		}
	}
	cfg.Jobs = jobs.Config{Work: true, NoMigrate: true, PollInterval: 20 * time.Millisecond,
		// "ready" falls due as it is inserted (River's scheduler would
		// take seconds to move a job scheduled in the future).
		PrepTime: time.Nanosecond}
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Queue.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The rounds' checkouts first, then their orders' way to "ready"
	// waited for at once (River's scheduler moves due jobs every few
	// seconds), then the reads of each.
	placed := make([]placedOrder, journeyRounds)
	for i := range placed {
		placed[i] = checkout(t, b, i)
	}
	for _, p := range placed {
		afterCheckout(t, b, p)
	}
	stop, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Queue.Stop(stop); err != nil {
		t.Fatal(err)
	}
	taken := plans.take()
	checkPlans(t, taken)
	return taken
}

type placedOrder struct {
	session int64
	order   *shop.Order
}

// checkout is one guest's visit up to the order, as the built-in shop
// scenario makes it.
func checkout(t *testing.T, b *backend.Backend, round int) placedOrder {
	ctx := context.Background()
	s := b.Store
	_, hash := shop.NewToken()
	sess := must(s.CreateSession(ctx, hash))(t)
	must(s.SessionByTokenHash(ctx, hash))(t)
	must(s.CatalogVersion(ctx))(t)
	must(s.ListItems(ctx, shop.ItemFilter{Limit: 20}))(t)
	must(s.Item(ctx, int64(7+round)))(t)
	browsed := make([]int64, 200) // a replica's refresh of the items being browsed
	for i := range browsed {
		browsed[i] = int64(1 + (i*37+round)%10_000)
	}
	must(s.Items(ctx, browsed))(t)
	must(s.SetCartItem(ctx, sess.ID, int64(11+round), 2))(t)
	cart := must(s.SetCartItem(ctx, sess.ID, int64(100+round), 1))(t)
	must(s.Cart(ctx, sess.ID))(t)
	total := cart.TotalCents
	o, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: fmt.Sprintf("journey-%d", round),
		Checkout: shop.Checkout{CustomerName: "Ada Lovelace", Email: "ada@example.com", ExpectedTotalCents: &total}})
	if err != nil {
		t.Fatal(err)
	}
	return placedOrder{session: sess.ID, order: o}
}

// afterCheckout waits for the order to be ready, then reads it back as
// the guest and the event relay do.
func afterCheckout(t *testing.T, b *backend.Backend, p placedOrder) {
	ctx := context.Background()
	s := b.Store
	sess, o := struct{ ID int64 }{p.session}, p.order
	testwait.Eventually(t, 30*time.Second, func() error {
		if got := must(s.OrderByID(ctx, o.ID))(t); got.Status != shop.StatusReady {
			return fmt.Errorf("order %d is %q, want %q", o.ID, got.Status, shop.StatusReady)
		}
		return nil
	})
	must(s.ListOrders(ctx, sess.ID, shop.OrderFilter{}))(t)
	must(s.Order(ctx, sess.ID, o.ID))(t)
	must(s.OrderEvents(ctx, sess.ID, o.ID, 0))(t)
	events := must(s.UnpublishedOrderEvents(ctx, 100))(t)
	ids := make([]int64, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	if err := s.MarkOrderEventsPublished(ctx, ids); err != nil {
		t.Fatal(err)
	}
}

func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// explained is the part of auto_explain's JSON the check reads.
type explained struct {
	Query string       `json:"Query Text"`
	Plan  analyzedNode `json:"Plan"`
}

type analyzedNode struct {
	NodeType       string         `json:"Node Type"`
	Relation       string         `json:"Relation Name"`
	Index          string         `json:"Index Name"`
	ActualRows     float64        `json:"Actual Rows"`
	ActualLoops    float64        `json:"Actual Loops"`
	RemovedFilter  float64        `json:"Rows Removed by Filter"`
	RemovedRecheck float64        `json:"Rows Removed by Index Recheck"`
	RemovedJoin    float64        `json:"Rows Removed by Join Filter"`
	SharedHit      float64        `json:"Shared Hit Blocks"`
	SharedRead     float64        `json:"Shared Read Blocks"`
	Plans          []analyzedNode `json:"Plans"`
}

// cost is what one execution read and returned (or wrote).
type cost struct {
	read, returned, buffers float64
	writes                  bool
	scans                   []string
}

// over is how far c is over the rule (above 1: broken).
func (c cost) over() float64 {
	rows := max(c.returned, 1)
	buffers := bufferFactor*rows + bufferSlack
	if c.writes {
		buffers = writeBufferFactor*rows + writeBufferSlack
	}
	return max(c.read/(readFactor*rows+readSlack), c.buffers/buffers)
}

func measure(n analyzedNode) cost {
	c := cost{returned: n.ActualRows, buffers: n.SharedHit + n.SharedRead}
	var walk func(n analyzedNode)
	walk = func(n analyzedNode) {
		if n.Relation != "" && strings.Contains(n.NodeType, "Scan") {
			r := (n.ActualRows + n.RemovedFilter + n.RemovedRecheck) * max(n.ActualLoops, 1)
			c.read += r
			scan := n.NodeType + " on " + n.Relation
			if n.Index != "" {
				scan += " by " + n.Index
			}
			c.scans = append(c.scans, fmt.Sprintf("%s: %.0f", scan, r))
		}
		if n.NodeType == "ModifyTable" {
			c.writes = true
			if len(n.Plans) > 0 {
				c.returned = max(c.returned, n.Plans[0].ActualRows)
			}
		}
		for _, k := range n.Plans {
			walk(k)
		}
	}
	walk(n)
	return c
}

func checkPlans(t *testing.T, plans []string) {
	t.Helper()
	if len(plans) == 0 {
		t.Fatal("auto_explain sent no plans: is it installed (postgresql contrib)?")
	}
	type seen struct {
		runs  int
		worst cost
		ratio float64
	}
	byQuery := map[string]*seen{}
	for _, p := range plans {
		var e explained
		if err := json.Unmarshal([]byte(p), &e); err != nil {
			t.Fatalf("read a plan: %v\n%s", err, p)
		}
		q := strings.Join(strings.Fields(e.Query), " ")
		c := measure(e.Plan)
		s := byQuery[q]
		if s == nil {
			s = &seen{}
			byQuery[q] = s
		}
		s.runs++
		over := c.over()
		if s.runs == 1 || over > s.ratio {
			s.worst, s.ratio = c, over
		}
	}
	queries := make([]string, 0, len(byQuery))
	for q := range byQuery {
		queries = append(queries, q)
	}
	sort.Strings(queries)
	for _, q := range queries {
		s := byQuery[q]
		c := s.worst
		t.Logf("%4d runs, worst read %.0f rows for %.0f returned, %.0f buffers: %.110s", s.runs, c.read, c.returned, c.buffers, q)
		if s.ratio > 1 && !isPeriodic(q) {
			t.Errorf("reads too much: %.0f rows and %.0f buffers for %.0f rows returned or written (allowed %d× rows + %d, %d× buffers + %d, %d× + %d for a write); scans %v:\n%s",
				c.read, c.buffers, c.returned, readFactor, readSlack, bufferFactor, bufferSlack, writeBufferFactor, writeBufferSlack, c.scans, q)
		}
	}
}

// TestReadRuleFindsAWholeTableRead proves the check can fail: a sequential
// scan that reads a table of 100,000 rows to return one breaks it, the
// index scan of the same row does not, and a written row's index work
// is allowed.
func TestReadRuleFindsAWholeTableRead(t *testing.T) {
	for _, tc := range []struct {
		name, plan string
		broken     bool
	}{
		{"seq scan", `{"Node Type": "Seq Scan", "Relation Name": "orders", "Actual Rows": 1, "Actual Loops": 1,
			"Rows Removed by Filter": 99999, "Shared Hit Blocks": 1200}`, true},
		{"index scan", `{"Node Type": "Index Scan", "Relation Name": "orders", "Actual Rows": 1, "Actual Loops": 1,
			"Shared Hit Blocks": 4}`, false},
		{"nested loop over an index", `{"Node Type": "Nested Loop", "Actual Rows": 3, "Actual Loops": 1, "Plans": [
			{"Node Type": "Index Scan", "Relation Name": "cart_items", "Actual Rows": 3, "Actual Loops": 1},
			{"Node Type": "Index Scan", "Relation Name": "items", "Actual Rows": 1, "Actual Loops": 3, "Rows Removed by Filter": 0}]}`, false},
		{"loops multiply", `{"Node Type": "Nested Loop", "Actual Rows": 3, "Actual Loops": 1, "Plans": [
			{"Node Type": "Seq Scan", "Relation Name": "items", "Actual Rows": 1, "Actual Loops": 3, "Rows Removed by Filter": 199}]}`, true},
		{"insert", `{"Node Type": "ModifyTable", "Actual Rows": 0, "Actual Loops": 1, "Shared Hit Blocks": 60,
			"Plans": [{"Node Type": "Result", "Actual Rows": 1, "Actual Loops": 1}]}`, false},
	} {
		var n analyzedNode
		if err := json.Unmarshal([]byte(tc.plan), &n); err != nil {
			t.Fatal(err)
		}
		if got := measure(n).over() > 1; got != tc.broken {
			t.Errorf("%s: broken %v, want %v (%+v)", tc.name, got, tc.broken, measure(n))
		}
	}
}
