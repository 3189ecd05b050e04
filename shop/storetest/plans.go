package storetest

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop"
)

// Query is one statement a store ran, with the arguments it ran with, as a
// store's query hook (SQLite: a database/sql connector wrapper; PostgreSQL:
// a pgx tracer) captured it.
type Query struct {
	SQL  string
	Args []any
}

// PlanHarness is what a store's test hands RunPlans: a store whose
// statements are captured, and how to EXPLAIN one on that store's engine.
type PlanHarness struct {
	Store shop.Store
	// Reset forgets the statements captured so far (set-up, migrations).
	Reset func()
	// Queries returns every statement captured since the last Reset.
	Queries func() []Query
	// FullScans EXPLAINs q and returns the tables (by their real names,
	// not aliases) that its plan reads whole.
	FullScans func(ctx context.Context, q Query) ([]string, error)
	// Background, if set, runs after the store's methods and may issue
	// more statements that are checked too (the job queue's, for one).
	Background func(t *testing.T, orderID int64)
}

// GrowingTables are the tables that grow with use; a query that reads one of
// them whole gets slower every day the service runs.
var GrowingTables = []string{
	"items", "sessions", "cart_items", "orders", "order_lines",
	"idempotency_keys", "mail_outbox", "river_job", "order_events",
}

// AllowedFullScans are the statements that read a growing table whole on
// purpose, each with the reason. A statement matches when it contains the
// key (whitespace collapsed).
var AllowedFullScans = map[string]string{
	// The menu is the whole orderable catalog: it is built once per catalog
	// version and served from memory, never per request.
	"FROM items WHERE available AND stock > 0 ORDER BY category, id": "the menu document is the whole catalog, built once per catalog version",
	// The mail sink is read by tests and by hand, never by a request.
	"FROM mail_outbox ORDER BY order_id": "the mail sink is read by tests, not by the service",
	// Counted once at start-up to decide whether to seed.
	"SELECT COUNT(*) FROM items": "start-up only: seed when the catalog is empty",
}

// workerStore is the background worker's side of a store (see shop/jobs).
type workerStore interface {
	OrderByID(ctx context.Context, orderID int64) (*shop.Order, error)
	ConfirmOrder(ctx context.Context, orderID int64, mail func(*shop.Order) shop.Mail, inTx func(ctx context.Context, tx shop.Tx) error) (bool, error)
	MarkOrderReady(ctx context.Context, orderID int64, inTx func(ctx context.Context, tx shop.Tx) error) (bool, error)
	AdvanceOrder(ctx context.Context, orderID int64, from, to shop.Status) (bool, error)
	PruneIdempotencyKeys(ctx context.Context) (int64, error)
	PruneSessions(ctx context.Context) (int64, error)
}

// RunPlans drives every store method (and the worker's, when the store has
// them) through the paths a client can take, then EXPLAINs each distinct
// statement captured and fails on a full scan of a growing table that is not
// in AllowedFullScans.
func RunPlans(t *testing.T, h PlanHarness) {
	ctx := context.Background()
	h.Reset()
	orderID := Exercise(t, h.Store)
	if h.Background != nil {
		h.Background(t, orderID)
	}
	seen := map[string]bool{}
	var checked int
	for _, q := range h.Queries() {
		norm := normalizeSQL(q.SQL)
		if seen[norm] || !explainable(norm) {
			continue
		}
		seen[norm] = true
		checked++
		tables, err := h.FullScans(ctx, q)
		if testing.Verbose() {
			t.Logf("explained: %s", norm)
		}
		if err != nil {
			t.Errorf("explain %s: %v", norm, err)
			continue
		}
		for _, table := range tables {
			if !isGrowing(table) {
				continue
			}
			if why, ok := allowed(norm); ok {
				t.Logf("full scan of %s allowed (%s): %s", table, why, norm)
				continue
			}
			t.Errorf("full scan of growing table %s: %s", table, norm)
		}
	}
	if checked < 20 {
		t.Errorf("only %d distinct statements were captured; the query hook is not seeing the store", checked)
	}
	t.Logf("%d distinct statements explained", checked)
}

// Exercise calls every method of s, and of its worker side, with data that
// takes each branch a client can reach: pages, filters, carts, checkout and
// its replays and refusals, orders. It returns an order id for Background.
func Exercise(t *testing.T, s shop.Store) int64 {
	t.Helper()
	ctx := context.Background()
	must(s.CatalogVersion(ctx))(t)
	must(s.Menu(ctx))(t)
	must(s.Item(ctx, 1))(t)
	_, _ = s.Item(ctx, 1<<40) // not found
	page := must(s.ListItems(ctx, shop.ItemFilter{Limit: 5}))(t)
	must(s.ListItems(ctx, shop.ItemFilter{Limit: 5, After: page.Next}))(t)
	must(s.ListItems(ctx, shop.ItemFilter{Category: "pizza", Limit: 5, After: 3}))(t)
	must(s.ListItems(ctx, shop.ItemFilter{Query: "a", Limit: 5}))(t)
	must(s.ListItems(ctx, shop.ItemFilter{Category: "pizza", Query: "a", Limit: 5}))(t)
	must(s.UpdateItem(ctx, 2, shop.ItemUpdate{PriceCents: ptr(int64(1234))}))(t)
	_, _ = s.UpdateItem(ctx, 1<<40, shop.ItemUpdate{Stock: ptr(int64(1))})

	_, hash := shop.NewToken()
	sess := must(s.CreateSession(ctx, hash))(t)
	must(s.SessionByTokenHash(ctx, hash))(t)
	_, _ = s.SessionByTokenHash(ctx, "unknown")

	must(s.Cart(ctx, sess.ID))(t)
	must(s.SetCartItem(ctx, sess.ID, 3, 2))(t)
	must(s.SetCartItem(ctx, sess.ID, 3, 1))(t)
	must(s.SetCartItem(ctx, sess.ID, 4, 1))(t)
	must(s.SetCartItem(ctx, sess.ID, 4, 0))(t)
	_, _ = s.SetCartItem(ctx, sess.ID, 1<<40, 1)
	must(s.Cart(ctx, sess.ID))(t)

	o, _ := must3(place(ctx, s, sess.ID, "plan-1"))(t)
	must3(place(ctx, s, sess.ID, "plan-1"))(t) // replay
	c := checkout()
	c.Notes = "other body"
	_, _, _ = shop.NewOrderDesk(s, nil, nil).PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "plan-1", Checkout: c})
	_, _, _ = place(ctx, s, sess.ID, "plan-empty") // empty cart
	must(s.SetCartItem(ctx, sess.ID, 5, 1))(t)
	must(s.UpdateItem(ctx, 5, shop.ItemUpdate{Stock: ptr(int64(0))}))(t)
	_, _, _ = place(ctx, s, sess.ID, "plan-short") // out of stock
	if err := s.ClearCart(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}

	must(s.Order(ctx, sess.ID, o.ID))(t)
	_, _ = s.Order(ctx, sess.ID, 1<<40)
	orders := must(s.ListOrders(ctx, sess.ID, shop.OrderFilter{Limit: 1}))(t)
	must(s.ListOrders(ctx, sess.ID, shop.OrderFilter{Limit: 1, Before: orders.Orders[0].ID}))(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	if w, ok := s.(workerStore); ok {
		must(w.OrderByID(ctx, o.ID))(t)
		must(w.ConfirmOrder(ctx, o.ID, func(o *shop.Order) shop.Mail { return shop.Mail{OrderID: o.ID, To: o.Email, Subject: "s", Body: "b"} }, nil))(t)
		must(w.AdvanceOrder(ctx, o.ID, shop.StatusPlaced, shop.StatusConfirmed))(t) // no longer placed
		must(w.MarkOrderReady(ctx, o.ID, nil))(t)
		must(w.PruneIdempotencyKeys(ctx))(t)
		must(w.PruneSessions(ctx))(t)
	}
	events := must(s.UnpublishedOrderEvents(ctx, 100))(t)
	if len(events) == 0 {
		t.Fatal("checkout recorded no order event")
	}
	if err := s.MarkOrderEventsPublished(ctx, []int64{events[0].ID}); err != nil {
		t.Fatal(err)
	}
	must(s.OrderEvents(ctx, sess.ID, o.ID, 0))(t)
	return o.ID
}

func must3[A, B any](a A, b B, err error) func(t *testing.T) (A, B) {
	return func(t *testing.T) (A, B) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

var (
	spaces   = regexp.MustCompile(`\s+`)
	comments = regexp.MustCompile(`(?m)--[^\n]*$|/\*(?s:.*?)\*/`)
)

// normalizeSQL drops comments (sqlc-generated statements, River's among
// them, start with "-- name: ...") and collapses whitespace.
func normalizeSQL(q string) string {
	return strings.TrimSpace(spaces.ReplaceAllString(comments.ReplaceAllString(q, " "), " "))
}

// explainable: only data statements have plans (not BEGIN, PRAGMA, DDL).
func explainable(q string) bool {
	verb, _, _ := strings.Cut(strings.ToUpper(q), " ")
	switch verb {
	case "SELECT", "INSERT", "UPDATE", "DELETE", "WITH":
		return true
	}
	return false
}

func isGrowing(table string) bool {
	for _, g := range GrowingTables {
		if strings.EqualFold(g, table) {
			return true
		}
	}
	return false
}

func allowed(q string) (string, bool) {
	for k, why := range AllowedFullScans {
		if strings.Contains(q, k) {
			return why, true
		}
	}
	return "", false
}

// TableAliases maps each name a statement gives a table (the table's own
// name and any alias after it in FROM, JOIN, UPDATE, INTO) to the table, so
// that an engine's plan that names aliases can be read back to tables.
func TableAliases(q string) map[string]string {
	m := map[string]string{}
	re := regexp.MustCompile(`(?i)\b(?:FROM|JOIN|UPDATE|INTO)\s+("?[A-Za-z_][A-Za-z0-9_.]*"?)(?:\s+(?:AS\s+)?([A-Za-z_][A-Za-z0-9_]*))?`)
	for _, g := range re.FindAllStringSubmatch(q, -1) {
		table := strings.Trim(g[1], `"`)
		if i := strings.LastIndexByte(table, '.'); i >= 0 {
			table = table[i+1:]
		}
		m[strings.ToLower(table)] = table
		if a := g[2]; a != "" && !isKeyword(a) {
			m[strings.ToLower(a)] = table
		}
	}
	return m
}

func isKeyword(w string) bool {
	switch strings.ToUpper(w) {
	case "WHERE", "ON", "SET", "VALUES", "ORDER", "GROUP", "LIMIT", "JOIN", "LEFT", "INNER", "CROSS",
		"USING", "RETURNING", "DEFAULT", "SELECT", "AND", "OR", "AS", "NATURAL", "OUTER", "FULL", "RIGHT":
		return true
	}
	return false
}

// Recorder keeps every statement a store's query hook reports.
type Recorder struct {
	mu      sync.Mutex
	queries []Query
}

// Add records one statement; args are copied.
func (r *Recorder) Add(sql string, args []any) {
	r.mu.Lock()
	r.queries = append(r.queries, Query{SQL: sql, Args: append([]any(nil), args...)})
	r.mu.Unlock()
}

// Reset forgets what was recorded.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.queries = nil
	r.mu.Unlock()
}

// All returns what was recorded since the last Reset.
func (r *Recorder) All() []Query {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Query(nil), r.queries...)
}

// Queue is a job queue: it schedules confirmations, and has a life cycle.
type Queue interface {
	shop.ConfirmationQueue
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// CheckoutThroughQueue starts q, places one order on s and waits until the
// worker has taken it to ready, then stops q: the job queue's statements,
// for PlanHarness.Background.
func CheckoutThroughQueue(t *testing.T, s shop.Store, q Queue) {
	t.Helper()
	ctx := context.Background()
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	_, hash := shop.NewToken()
	sess := must(s.CreateSession(ctx, hash))(t)
	must(s.SetCartItem(ctx, sess.ID, 7, 1))(t)
	c := shop.Checkout{CustomerName: "Grace Hopper", Email: "grace@example.com"}
	o, _ := must3(shop.NewOrderDesk(s, q, nil).PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "river", Checkout: c}))(t)
	// The worker runs on its own poll interval: there is no event to wait on.
	testwait.Eventually(t, 30*time.Second, func() error {
		if got := must(s.OrderByID(ctx, o.ID))(t); got.Status != shop.StatusReady {
			return fmt.Errorf("order %d is %q, want %q", o.ID, got.Status, shop.StatusReady)
		}
		return nil
	})
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := q.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
}
