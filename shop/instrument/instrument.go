// Package instrument times every call into a shop.Store, so a slow request
// can be told apart from a slow database. The wrapper is built in cmd/shop
// and handed to the adapters (HTTP, jobs) as the narrow interfaces they
// define.
//
// Store implements shop.Store method by method and embeds nothing: a method
// added to shop.Store does not compile here until it is wrapped, and the
// package's test calls every method of shop.Store through the wrapper and
// checks that each one was observed under its own operation name.
package instrument

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/shop"
)

// Buckets resolve the range the service's objectives live in (a few ms for
// reads, tens of ms for checkout) and its failure modes (seconds).
var Buckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Store is a shop.Store whose every call is observed in the histogram
// shop_store_call_duration_seconds{op, outcome}.
type Store struct {
	next shop.Store
	dur  *prometheus.HistogramVec
}

var _ shop.Store = (*Store)(nil)

// Metrics is the store-call histogram, registered once per registry and
// shared by every wrapper built from it.
type Metrics struct {
	dur *prometheus.HistogramVec
}

// NewMetrics registers the store-call histogram with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "shop_store_call_duration_seconds",
		Help:    "Time spent in store calls, by operation and outcome.",
		Buckets: Buckets,
	}, []string{"op", "outcome"})
	reg.MustRegister(dur)
	return &Metrics{dur: dur}
}

// Wrap returns next with every call timed.
func (m *Metrics) Wrap(next shop.Store) shop.Store {
	return &Store{next: next, dur: m.dur}
}

// Outcome classifies a store call's error: "ok", "refused" (a domain answer
// such as not found or out of stock, not a store failure) or "error".
func Outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case shop.ErrorCode(err) != shop.EINTERNAL:
		return "refused"
	}
	return "error"
}

func (s *Store) observe(op string, start time.Time, err error) {
	s.dur.WithLabelValues(op, Outcome(err)).Observe(time.Since(start).Seconds())
}

func timed[T any](s *Store, op string, f func() (T, error)) (T, error) {
	start := time.Now()
	v, err := f()
	s.observe(op, start, err)
	return v, err
}

func timedErr(s *Store, op string, f func() error) error {
	start := time.Now()
	err := f()
	s.observe(op, start, err)
	return err
}

// --- catalog ---

func (s *Store) Menu(ctx context.Context) (*shop.Menu, error) {
	return timed(s, "menu", func() (*shop.Menu, error) { return s.next.Menu(ctx) })
}

func (s *Store) CatalogVersion(ctx context.Context) (int64, error) {
	return timed(s, "catalog_version", func() (int64, error) { return s.next.CatalogVersion(ctx) })
}

func (s *Store) Item(ctx context.Context, id int64) (*shop.Item, error) {
	return timed(s, "item", func() (*shop.Item, error) { return s.next.Item(ctx, id) })
}

func (s *Store) ListItems(ctx context.Context, f shop.ItemFilter) (*shop.ItemPage, error) {
	return timed(s, "list_items", func() (*shop.ItemPage, error) { return s.next.ListItems(ctx, f) })
}

func (s *Store) UpdateItem(ctx context.Context, id int64, u shop.ItemUpdate) (*shop.Item, error) {
	return timed(s, "update_item", func() (*shop.Item, error) { return s.next.UpdateItem(ctx, id, u) })
}

// --- sessions ---

func (s *Store) CreateSession(ctx context.Context, hash string) (*shop.Session, error) {
	return timed(s, "create_session", func() (*shop.Session, error) { return s.next.CreateSession(ctx, hash) })
}

func (s *Store) SessionByTokenHash(ctx context.Context, hash string) (*shop.Session, error) {
	return timed(s, "session", func() (*shop.Session, error) { return s.next.SessionByTokenHash(ctx, hash) })
}

// --- cart ---

func (s *Store) Cart(ctx context.Context, session int64) (*shop.Cart, error) {
	return timed(s, "cart", func() (*shop.Cart, error) { return s.next.Cart(ctx, session) })
}

func (s *Store) SetCartItem(ctx context.Context, session, item int64, q int) (*shop.Cart, error) {
	return timed(s, "set_cart_item", func() (*shop.Cart, error) { return s.next.SetCartItem(ctx, session, item, q) })
}

func (s *Store) ClearCart(ctx context.Context, session int64) error {
	return timedErr(s, "clear_cart", func() error { return s.next.ClearCart(ctx, session) })
}

// --- orders ---

// InCheckout is timed as a whole: the checkout's transaction.
func (s *Store) InCheckout(ctx context.Context, session int64, key string, fn func(shop.CheckoutTx) error) error {
	return timedErr(s, "checkout", func() error { return s.next.InCheckout(ctx, session, key, fn) })
}

func (s *Store) Order(ctx context.Context, session, id int64) (*shop.Order, error) {
	return timed(s, "order", func() (*shop.Order, error) { return s.next.Order(ctx, session, id) })
}

func (s *Store) ListOrders(ctx context.Context, session int64, f shop.OrderFilter) (*shop.OrderPage, error) {
	return timed(s, "list_orders", func() (*shop.OrderPage, error) { return s.next.ListOrders(ctx, session, f) })
}

// --- fulfilment (the background worker) ---

func (s *Store) OrderByID(ctx context.Context, id int64) (*shop.Order, error) {
	return timed(s, "order_by_id", func() (*shop.Order, error) { return s.next.OrderByID(ctx, id) })
}

// ConfirmOrder is timed as a whole: the confirmation's transaction, the
// job queue's work in it included.
func (s *Store) ConfirmOrder(ctx context.Context, m shop.Mail, inTx func(context.Context, shop.Tx) error) (bool, error) {
	return timed(s, "confirm_order", func() (bool, error) { return s.next.ConfirmOrder(ctx, m, inTx) })
}

// MarkOrderReady is timed as a whole, as ConfirmOrder is.
func (s *Store) MarkOrderReady(ctx context.Context, id int64, inTx func(context.Context, shop.Tx) error) (bool, error) {
	return timed(s, "mark_order_ready", func() (bool, error) { return s.next.MarkOrderReady(ctx, id, inTx) })
}

func (s *Store) AdvanceOrder(ctx context.Context, id int64, from, to shop.Status) (bool, error) {
	return timed(s, "advance_order", func() (bool, error) { return s.next.AdvanceOrder(ctx, id, from, to) })
}

func (s *Store) PruneIdempotencyKeys(ctx context.Context) (int64, error) {
	return timed(s, "prune_idempotency_keys", func() (int64, error) { return s.next.PruneIdempotencyKeys(ctx) })
}

func (s *Store) PruneSessions(ctx context.Context) (int64, error) {
	return timed(s, "prune_sessions", func() (int64, error) { return s.next.PruneSessions(ctx) })
}

func (s *Store) Mails(ctx context.Context) ([]shop.Mail, error) {
	return timed(s, "mails", func() ([]shop.Mail, error) { return s.next.Mails(ctx) })
}

// --- outbox ---

func (s *Store) UnpublishedOrderEvents(ctx context.Context, limit int) ([]shop.OrderEvent, error) {
	return timed(s, "unpublished_order_events", func() ([]shop.OrderEvent, error) { return s.next.UnpublishedOrderEvents(ctx, limit) })
}

func (s *Store) MarkOrderEventsPublished(ctx context.Context, ids []int64) error {
	return timedErr(s, "mark_order_events_published", func() error { return s.next.MarkOrderEventsPublished(ctx, ids) })
}

func (s *Store) OrderEvents(ctx context.Context, session, order, after int64) ([]shop.OrderEvent, error) {
	return timed(s, "order_events", func() ([]shop.OrderEvent, error) { return s.next.OrderEvents(ctx, session, order, after) })
}

// --- lifecycle ---

func (s *Store) Ping(ctx context.Context) error {
	return timedErr(s, "ping", func() error { return s.next.Ping(ctx) })
}

// Close is not timed: it happens once, at shutdown.
func (s *Store) Close() error { return s.next.Close() }
