// Package shop is the domain of the ordering service: menu items, guest
// sessions, carts and orders, the rules that keep them valid, and the
// interfaces that storage adapters implement. It imports no database, cache,
// queue or HTTP code, so the same rules hold for the embedded SQLite default,
// for PostgreSQL, and behind any transport.
package shop

import (
	"context"
	"time"
)

// Limits shared by every adapter, so validation cannot drift between them.
const (
	MaxQuantity        = 99  // per cart line
	MaxCartLines       = 100 // distinct items in one cart
	DefaultPageSize    = 20
	MaxPageSize        = 100
	MaxSearchQueryLen  = 100
	MaxIdempotencyKey  = 255
	MaxCustomerNameLen = 100
	MaxEmailLen        = 254 // the longest address SMTP can deliver to (RFC 5321 path limit)
	MaxNotesLen        = 500
	MaxPriceCents      = 1_000_000_00 // one million in currency units
	MaxStock           = 1_000_000_000

	// IdempotencyRetention is how long a checkout's idempotency key is
	// honoured; clients retrying within this window get the same order.
	IdempotencyRetention = 7 * 24 * time.Hour
	// SessionTTL is how long an unused guest session stays valid.
	SessionTTL = 30 * 24 * time.Hour
)

// Item is a menu item. Stock is the number of units that can still be
// ordered; an item with zero stock can stay on the menu as unavailable.
type Item struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	PriceCents  int64     `json:"price_cents"`
	Category    string    `json:"category"`
	Available   bool      `json:"available"`
	Stock       int64     `json:"stock"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// MenuItem is an item as the menu shows it: orderable, without stock
// figures, so that selling a unit does not change the menu document.
type MenuItem struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	PriceCents  int64  `json:"price_cents"`
	Category    string `json:"category"`
	Available   bool   `json:"available"`
}

// MenuCategory is one section of the menu with its available items.
type MenuCategory struct {
	Name  string     `json:"name"`
	Items []MenuItem `json:"items"`
}

// Menu is the whole read-heavy catalog document: the items that are
// available and in stock. Version changes whenever the document could change
// (an admin change, or an item selling out), so it can serve as a cheap
// validator (ETag) and cache key.
type Menu struct {
	Version    int64          `json:"version"`
	Categories []MenuCategory `json:"categories"`
}

// ItemFilter selects a page of items. Keyset pagination: After is the last
// item id of the previous page (0 for the first page); items come in id order.
type ItemFilter struct {
	Category string
	Query    string // case-insensitive substring of the name
	Limit    int
	After    int64
}

// ItemPage is one page of items. Next is the keyset position of the next page
// (0 when this page is the last).
type ItemPage struct {
	Items []Item
	Next  int64
}

// ItemUpdate is an admin change to an item; nil fields stay as they are.
type ItemUpdate struct {
	PriceCents *int64 `json:"price_cents,omitempty"`
	Stock      *int64 `json:"stock,omitempty"`
	Available  *bool  `json:"available,omitempty"`
}

// Session is a guest session. The bearer token itself is never stored; only
// its hash (see HashToken).
type Session struct {
	ID        int64     `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CartLine is one item in a cart, priced at the item's current price.
type CartLine struct {
	ItemID         int64  `json:"item_id"`
	Name           string `json:"name"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	LineTotalCents int64  `json:"line_total_cents"`
}

// Cart is a session's cart. Lines come in item id order.
type Cart struct {
	Lines      []CartLine `json:"lines"`
	TotalCents int64      `json:"total_cents"`
}

// Status is where an order is in its life.
type Status string

// Order statuses, in the only order they may be taken.
const (
	StatusPlaced    Status = "placed"
	StatusConfirmed Status = "confirmed"
	StatusReady     Status = "ready"
)

// ParseStatus reads an order status given as text (a query parameter).
func ParseStatus(raw string) (Status, error) {
	switch s := Status(raw); s {
	case StatusPlaced, StatusConfirmed, StatusReady:
		return s, nil
	}
	return "", Errorf(EINVALID, "status must be one of %s, %s, %s, got %q", StatusPlaced, StatusConfirmed, StatusReady, raw)
}

// CanMoveTo reports whether an order may go from s to next: one step forward.
func (s Status) CanMoveTo(next Status) bool {
	switch s {
	case StatusPlaced:
		return next == StatusConfirmed
	case StatusConfirmed:
		return next == StatusReady
	}
	return false
}

// OrderLine is an item as it was bought: name and price are copied at
// checkout so later menu changes do not rewrite history.
type OrderLine struct {
	ItemID         int64  `json:"item_id"`
	Name           string `json:"name"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	LineTotalCents int64  `json:"line_total_cents"`
}

// Order is a placed order.
type Order struct {
	ID           int64       `json:"id"`
	SessionID    int64       `json:"-"`
	Status       Status      `json:"status"`
	CustomerName string      `json:"customer_name"`
	Email        string      `json:"email"`
	Notes        string      `json:"notes,omitempty"`
	Lines        []OrderLine `json:"lines"`
	TotalCents   int64       `json:"total_cents"`
	CreatedAt    time.Time   `json:"created_at"`
	UpdatedAt    time.Time   `json:"updated_at"`
	// SoldOut is set on an order its checkout just placed when a line took
	// the last of its item's stock (of the shard's quota, when sharded):
	// then, and only then, the catalog's version may have moved with it, so
	// a cache reads the version again. Never stored; false when read back.
	SoldOut bool `json:"-"`
}

// OrderFilter selects a page of a session's orders, newest first. Before is
// the last order id of the previous page (0 for the first page).
type OrderFilter struct {
	Limit  int
	Before int64
}

// OrderPage is one page of orders; Next is 0 when this page is the last.
type OrderPage struct {
	Orders []Order
	Next   int64
}

// Checkout is what a client sends to turn its cart into an order.
type Checkout struct {
	CustomerName string `json:"customer_name"`
	Email        string `json:"email"`
	Notes        string `json:"notes,omitempty"`
	// ExpectedTotalCents is the cart total the customer saw (optional for
	// old clients): when prices changed since, nothing is ordered.
	ExpectedTotalCents *int64 `json:"expected_total_cents,omitempty"`
}

// PlaceOrder is a checkout request: the session, its Idempotency-Key, and
// the body.
type PlaceOrder struct {
	SessionID      int64
	IdempotencyKey string
	Checkout       Checkout
}

// Mail is a confirmation message as recorded by the mail sink.
type Mail struct {
	OrderID int64     `json:"order_id"`
	To      string    `json:"to"`
	Subject string    `json:"subject"`
	Body    string    `json:"body"`
	SentAt  time.Time `json:"sent_at"`
}

// CatalogService reads and changes the menu.
type CatalogService interface {
	// Menu returns every category with its available items.
	Menu(ctx context.Context) (*Menu, error)
	// CatalogVersion returns Menu().Version without building the menu.
	CatalogVersion(ctx context.Context) (int64, error)
	// Item returns one item, available or not; ENOTFOUND if absent.
	Item(ctx context.Context, id int64) (*Item, error)
	// Items returns the items among ids that exist, in id order, in one
	// read where the store can (a cache refreshing what it holds makes
	// one call, not one per item); ids absent are left out.
	Items(ctx context.Context, ids []int64) ([]Item, error)
	ListItems(ctx context.Context, f ItemFilter) (*ItemPage, error)
	// UpdateItem applies an admin change and bumps the catalog version.
	UpdateItem(ctx context.Context, id int64, u ItemUpdate) (*Item, error)
}

// SessionService creates and authenticates guest sessions.
type SessionService interface {
	// CreateSession stores a new session under the hash of token.
	CreateSession(ctx context.Context, tokenHash string) (*Session, error)
	// SessionByTokenHash returns the live session; EUNAUTHORIZED if none.
	SessionByTokenHash(ctx context.Context, tokenHash string) (*Session, error)
}

// CartService keeps a session's cart.
type CartService interface {
	Cart(ctx context.Context, sessionID int64) (*Cart, error)
	// SetCartItem sets an item's quantity; 0 removes it. An unknown item is
	// ENOTFOUND; an unavailable one is ECONFLICT.
	SetCartItem(ctx context.Context, sessionID, itemID int64, quantity int) (*Cart, error)
	ClearCart(ctx context.Context, sessionID int64) error
}

// OrderReader reads a session's orders back.
type OrderReader interface {
	// Order returns the session's order; another session's order is ENOTFOUND.
	Order(ctx context.Context, sessionID, orderID int64) (*Order, error)
	ListOrders(ctx context.Context, sessionID int64, f OrderFilter) (*OrderPage, error)
}

// OrderService is a store's side of ordering: checkout transactions (the
// rules are in OrderDesk, which runs them) and orders read back.
type OrderService interface {
	CheckoutStore
	OrderReader
}

// Tx is a store's open write transaction as its database driver knows it:
// *sql.Tx on SQLite, pgx.Tx on PostgreSQL. A store hands it to work that
// must commit or roll back with the store's own writes, the job queue's
// (a job scheduled, a job completed). The domain never looks inside; the
// code that does is built for one store (shop/backend pairs each store
// with a queue over the same driver) and asserts the type.
type Tx any

// JobDone is a running job of the queue that a store completes in the
// statement that does the job's work, as the queue would complete it in
// the store's transaction: completed at At, and only while it runs (a job
// already taken from its worker, rescued or cancelled, stays as it is).
type JobDone struct {
	ID int64
	At time.Time
}

// UniqueJobRow is a queued job as a store writes it in its own statement,
// what the queue's own insert would have written: due at ScheduledAt,
// unique by UniqueKey among the jobs in the states UniqueStates names (the
// queue's bitmask), and not written when such a job is there.
type UniqueJobRow struct {
	Kind         string
	Args         []byte // the job's arguments as the queue encodes them
	Queue        string
	Priority     int
	MaxAttempts  int
	ScheduledAt  time.Time
	UniqueKey    []byte
	UniqueStates byte
}

// ConfirmAtOnce is an order's confirmation as a store does it in two round
// trips (FulfilmentService.ConfirmOrderAtOnce).
type ConfirmAtOnce struct {
	OrderID int64
	// Mail composes the order's mail; it is called only for an order
	// still placed, before the writes.
	Mail func(*Order) Mail
	// Next is the job of the order's next step, written (or found there)
	// whether or not the order moved, as a retry needs it.
	Next UniqueJobRow
	// Done is the confirmation's own job, completed with the writes.
	Done JobDone
	// BeforeCommit, when set, runs with the writes made and not yet
	// committed (moved: the order moved to confirmed); it costs a round
	// trip, the commit sent on its own (a crash test's point of death).
	BeforeCommit func(moved bool)
}

// ConfirmedAtOnce is what ConfirmOrderAtOnce did: Handled false when the
// store declined; Mailed when it recorded the order's mail.
type ConfirmedAtOnce struct {
	Handled, Mailed bool
}

// FulfilmentService is what the background worker does with orders once
// they are placed: mail the confirmation once, move the status on, forget
// old idempotency keys.
type FulfilmentService interface {
	// OrderByID returns any session's order; ENOTFOUND if absent.
	OrderByID(ctx context.Context, orderID int64) (*Order, error)
	// ConfirmOrder confirms an order in one transaction: it reads the
	// order (ENOTFOUND if absent, nothing done), moves it from placed to
	// confirmed with the change's event in the outbox, records mail(order)
	// in the mail sink (one mail per order), and runs inTx on the same
	// transaction, so everything commits together or not at all (an error
	// from inTx rolls it all back and is returned). The read is the
	// transaction's own, so a confirmation costs one commit, not a read
	// before it and then its writes. An order no longer placed (a retried
	// job) is left as it is and gets no mail (mail is not called), but
	// inTx still runs and commits: the retry may have the queue's side to
	// finish (inTx may be nil: nothing more to do). mailed reports whether
	// this call recorded the mail.
	ConfirmOrder(ctx context.Context, orderID int64, mail func(*Order) Mail, inTx func(ctx context.Context, tx Tx) error) (mailed bool, err error)
	// MarkOrderReady moves an order from confirmed to ready with its event,
	// and runs inTx on the same transaction, as ConfirmOrder does: inTx
	// runs (and commits) whether or not the order moved. moved reports
	// whether it did.
	MarkOrderReady(ctx context.Context, orderID int64, inTx func(ctx context.Context, tx Tx) error) (moved bool, err error)
	// MarkOrderReadyAtOnce is MarkOrderReady for a step that is a queue
	// job, on a store that can do it in one statement: the order's move
	// with its event (if it is still confirmed), and the job's completion
	// (done) in the place of inTx, committed together or not at all.
	// handled is false, and nothing done, on a store that cannot (the
	// caller then takes MarkOrderReady).
	MarkOrderReadyAtOnce(ctx context.Context, orderID int64, done JobDone) (handled bool, err error)
	// ConfirmOrderAtOnce is ConfirmOrder for a confirmation that is a
	// queue job, on a store that can do it in two round trips: the
	// order's read, then its move with its event and mail, the next
	// step's job (c.Next) and the job's completion (c.Done) in the place
	// of inTx, all in one transaction. Handled is false, and nothing done,
	// on a store that cannot (the caller then takes ConfirmOrder).
	ConfirmOrderAtOnce(ctx context.Context, c ConfirmAtOnce) (ConfirmedAtOnce, error)
	// AdvanceOrder moves an order from one status to the next and appends
	// the change to the outbox in the same transaction; false (and no
	// change) when it is no longer in status from.
	AdvanceOrder(ctx context.Context, orderID int64, from, to Status) (bool, error)
	// PruneIdempotencyKeys deletes keys past IdempotencyRetention; it
	// reports how many.
	PruneIdempotencyKeys(ctx context.Context) (int64, error)
	// PruneSessions deletes the sessions past their expiry, with their
	// carts and idempotency keys. An expired session that placed orders
	// keeps its row, since its orders name it, but loses its cart. It
	// reports how many sessions it deleted.
	PruneSessions(ctx context.Context) (int64, error)
	// Mails returns the mail sink in order id order.
	Mails(ctx context.Context) ([]Mail, error)
}

// Store is everything a storage adapter provides to the service. The store
// contract test suite (package storetest) holds every implementation to it.
type Store interface {
	CatalogService
	SessionService
	CartService
	OrderService
	FulfilmentService
	OutboxService
	Ping(ctx context.Context) error
	Close() error
}
