package resilience

import (
	"context"
	"fmt"

	"github.com/perfscale/perfscale/shop"
)

// Store guards a shop.Store: its reads through one guard and its writes
// through another, since a database may fail one way and not the other
// (SQLite's writer blocked while its readers answer). Reads and the writes
// that may be applied twice (setting a cart line, clearing a cart, an
// admin change, marking events published) are retried; a checkout,
// a new session and the workers' transactions are not (the job queue
// retries its own). Ping fails while writes are refused, so readiness
// fails while writes cannot proceed.
//
// Like instrument.Store it embeds nothing: a method added to shop.Store
// does not compile here until it is guarded.
type Store struct {
	next          shop.Store
	reads, writes *Guard
}

var _ shop.Store = (*Store)(nil)

// NewStore guards next's reads with reads and its writes with writes.
func NewStore(next shop.Store, reads, writes *Guard) *Store {
	return &Store{next: next, reads: reads, writes: writes}
}

// Writes is the write guard (readiness, degraded answers).
func (s *Store) Writes() *Guard { return s.writes }

// Reads is the read guard.
func (s *Store) Reads() *Guard { return s.reads }

func get[T any](g *Guard, ctx context.Context, how call, fn func(ctx context.Context) (T, error)) (T, error) {
	return do(g, ctx, how, fn)
}

func run(g *Guard, ctx context.Context, how call, fn func(ctx context.Context) error) error {
	_, err := do(g, ctx, how, func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx) })
	return err
}

// Ping fails while writes are refused (the breaker open, or writes
// stalled), and otherwise asks the database.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.writes.Ready(); err != nil {
		return fmt.Errorf("writes cannot proceed: %w", err)
	}
	return run(s.reads, ctx, once, s.next.Ping)
}

// Close is not guarded.
func (s *Store) Close() error { return s.next.Close() }

// --- reads ---

func (s *Store) Menu(ctx context.Context) (*shop.Menu, error) {
	// Untracked: a huge catalog's menu takes seconds and is no stall.
	return get(s.reads, ctx, retried|untracked, s.next.Menu)
}

func (s *Store) CatalogVersion(ctx context.Context) (int64, error) {
	return get(s.reads, ctx, retried, s.next.CatalogVersion)
}

func (s *Store) Item(ctx context.Context, id int64) (*shop.Item, error) {
	return get(s.reads, ctx, retried, func(ctx context.Context) (*shop.Item, error) { return s.next.Item(ctx, id) })
}

func (s *Store) Items(ctx context.Context, ids []int64) ([]shop.Item, error) {
	return get(s.reads, ctx, retried, func(ctx context.Context) ([]shop.Item, error) { return s.next.Items(ctx, ids) })
}

func (s *Store) ListItems(ctx context.Context, f shop.ItemFilter) (*shop.ItemPage, error) {
	return get(s.reads, ctx, retried, func(ctx context.Context) (*shop.ItemPage, error) { return s.next.ListItems(ctx, f) })
}

func (s *Store) SessionByTokenHash(ctx context.Context, hash string) (*shop.Session, error) {
	return get(s.reads, ctx, retried, func(ctx context.Context) (*shop.Session, error) { return s.next.SessionByTokenHash(ctx, hash) })
}

func (s *Store) Cart(ctx context.Context, sessionID int64) (*shop.Cart, error) {
	return get(s.reads, ctx, retried, func(ctx context.Context) (*shop.Cart, error) { return s.next.Cart(ctx, sessionID) })
}

func (s *Store) Order(ctx context.Context, sessionID, orderID int64) (*shop.Order, error) {
	return get(s.reads, ctx, retried, func(ctx context.Context) (*shop.Order, error) { return s.next.Order(ctx, sessionID, orderID) })
}

func (s *Store) ListOrders(ctx context.Context, sessionID int64, f shop.OrderFilter) (*shop.OrderPage, error) {
	return get(s.reads, ctx, retried, func(ctx context.Context) (*shop.OrderPage, error) { return s.next.ListOrders(ctx, sessionID, f) })
}

func (s *Store) OrderByID(ctx context.Context, orderID int64) (*shop.Order, error) {
	return get(s.reads, ctx, retried, func(ctx context.Context) (*shop.Order, error) { return s.next.OrderByID(ctx, orderID) })
}

func (s *Store) OrderEvents(ctx context.Context, sessionID, orderID, after int64) ([]shop.OrderEvent, error) {
	return get(s.reads, ctx, retried, func(ctx context.Context) ([]shop.OrderEvent, error) {
		return s.next.OrderEvents(ctx, sessionID, orderID, after)
	})
}

func (s *Store) UnpublishedOrderEvents(ctx context.Context, limit int) ([]shop.OrderEvent, error) {
	return get(s.reads, ctx, retried, func(ctx context.Context) ([]shop.OrderEvent, error) { return s.next.UnpublishedOrderEvents(ctx, limit) })
}

func (s *Store) Mails(ctx context.Context) ([]shop.Mail, error) {
	return get(s.reads, ctx, retried|untracked, s.next.Mails)
}

// --- writes that may be applied twice: retried ---

func (s *Store) SetCartItem(ctx context.Context, sessionID, itemID int64, quantity int) (*shop.Cart, error) {
	return get(s.writes, ctx, retried, func(ctx context.Context) (*shop.Cart, error) {
		return s.next.SetCartItem(ctx, sessionID, itemID, quantity)
	})
}

func (s *Store) ClearCart(ctx context.Context, sessionID int64) error {
	return run(s.writes, ctx, retried, func(ctx context.Context) error { return s.next.ClearCart(ctx, sessionID) })
}

func (s *Store) UpdateItem(ctx context.Context, id int64, u shop.ItemUpdate) (*shop.Item, error) {
	return get(s.writes, ctx, retried, func(ctx context.Context) (*shop.Item, error) { return s.next.UpdateItem(ctx, id, u) })
}

func (s *Store) MarkOrderEventsPublished(ctx context.Context, ids []int64) error {
	return run(s.writes, ctx, retried, func(ctx context.Context) error { return s.next.MarkOrderEventsPublished(ctx, ids) })
}

// --- writes made once ---

func (s *Store) CreateSession(ctx context.Context, tokenHash string) (*shop.Session, error) {
	return get(s.writes, ctx, once, func(ctx context.Context) (*shop.Session, error) { return s.next.CreateSession(ctx, tokenHash) })
}

func (s *Store) InCheckout(ctx context.Context, sessionID int64, key string, fn func(tx shop.CheckoutTx) error) error {
	return run(s.writes, ctx, once, func(ctx context.Context) error { return s.next.InCheckout(ctx, sessionID, key, fn) })
}

func (s *Store) PlaceAtOnce(ctx context.Context, c shop.AtOnce) (*shop.Order, error) {
	return get(s.writes, ctx, once, func(ctx context.Context) (*shop.Order, error) { return s.next.PlaceAtOnce(ctx, c) })
}

func (s *Store) ConfirmOrder(ctx context.Context, orderID int64, mail func(*shop.Order) shop.Mail, inTx func(ctx context.Context, tx shop.Tx) error) (bool, error) {
	return get(s.writes, ctx, once, func(ctx context.Context) (bool, error) { return s.next.ConfirmOrder(ctx, orderID, mail, inTx) })
}

func (s *Store) MarkOrderReady(ctx context.Context, orderID int64, inTx func(ctx context.Context, tx shop.Tx) error) (bool, error) {
	return get(s.writes, ctx, once, func(ctx context.Context) (bool, error) { return s.next.MarkOrderReady(ctx, orderID, inTx) })
}

func (s *Store) ConfirmOrderAtOnce(ctx context.Context, c shop.ConfirmAtOnce) (shop.ConfirmedAtOnce, error) {
	return get(s.writes, ctx, once, func(ctx context.Context) (shop.ConfirmedAtOnce, error) { return s.next.ConfirmOrderAtOnce(ctx, c) })
}

func (s *Store) MarkOrderReadyAtOnce(ctx context.Context, orderID int64, done shop.JobDone) (bool, error) {
	return get(s.writes, ctx, once, func(ctx context.Context) (bool, error) { return s.next.MarkOrderReadyAtOnce(ctx, orderID, done) })
}

func (s *Store) AdvanceOrder(ctx context.Context, orderID int64, from, to shop.Status) (bool, error) {
	return get(s.writes, ctx, once, func(ctx context.Context) (bool, error) { return s.next.AdvanceOrder(ctx, orderID, from, to) })
}

// The prunes read and delete whole tables' worth: untracked, so their
// length is no stall.

func (s *Store) PruneIdempotencyKeys(ctx context.Context) (int64, error) {
	return get(s.writes, ctx, once|untracked, s.next.PruneIdempotencyKeys)
}

func (s *Store) PruneSessions(ctx context.Context) (int64, error) {
	return get(s.writes, ctx, once|untracked, s.next.PruneSessions)
}
