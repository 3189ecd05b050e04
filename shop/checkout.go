package shop

import (
	"context"
	"fmt"
	"time"
)

// Checkout's rules live here, once, over small transactional primitives
// that each store provides (CheckoutTx): validation, the idempotency
// decision, re-reading prices, the total the customer saw, reserving stock
// without going below zero, and what a placed order consists of. A store
// only says how to run each primitive on its database and how to keep two
// checkouts with one key apart (see docs/architecture.md).

// CheckoutLine is a cart line as checkout reads it inside its transaction:
// priced at the current price, with what reserving it needs.
type CheckoutLine struct {
	CartLine
	Available bool
	Stock     int64
}

// CartOf is the cart the lines make, totalled.
func CartOf(lines []CheckoutLine) *Cart {
	c := &Cart{Lines: make([]CartLine, 0, len(lines))}
	for _, l := range lines {
		c.Lines = append(c.Lines, l.CartLine)
		c.TotalCents += l.LineTotalCents
	}
	return c
}

// CheckoutTx is one checkout's transaction.
type CheckoutTx interface {
	// IdempotencyKey returns the request hash and order of the key the
	// session stored after since; found is false if there is none.
	IdempotencyKey(ctx context.Context, sessionID int64, key string, since time.Time) (hash string, orderID int64, found bool, err error)
	// ForgetIdempotencyKey deletes the session's key whatever its age (a
	// key past its retention may be used for a new order).
	ForgetIdempotencyKey(ctx context.Context, sessionID int64, key string) error
	// CheckoutCart reads the session's cart at current prices, in item id
	// order (the order stock is reserved in, so checkouts never deadlock).
	CheckoutCart(ctx context.Context, sessionID int64) ([]CheckoutLine, error)
	// ReserveStock takes n units of an available item unless fewer are
	// left; ok false changes nothing. left is the stock after it.
	ReserveStock(ctx context.Context, itemID int64, n int) (left int64, ok bool, err error)
	// InsertOrder writes the order and its lines, sets o.ID, and appends
	// the order's first event (Seq 1, its status) to the outbox.
	InsertOrder(ctx context.Context, o *Order) error
	// RememberIdempotencyKey stores the key with its request and order.
	RememberIdempotencyKey(ctx context.Context, sessionID int64, key, requestHash string, orderID int64, at time.Time) error
	EmptyCart(ctx context.Context, sessionID int64) error
	// BumpCatalogVersion tells menu readers that the menu changed.
	BumpCatalogVersion(ctx context.Context) error
	// RunInTx runs fn on this transaction as its database driver knows it,
	// so that the caller's writes (the job queue's) commit or roll back
	// with the checkout's.
	RunInTx(ctx context.Context, fn func(ctx context.Context, tx Tx) error) error
	// Order reads one of the session's orders.
	Order(ctx context.Context, sessionID, orderID int64) (*Order, error)
}

// CheckoutStore runs checkout transactions.
type CheckoutStore interface {
	// InCheckout runs fn in one transaction that no other checkout with the
	// same session and key runs alongside, and commits it if fn returns nil.
	InCheckout(ctx context.Context, sessionID int64, key string, fn func(tx CheckoutTx) error) error
	// PlaceAtOnce places the order of a plain checkout in one round trip
	// to the database where the store can: a new key, a cart that is not
	// empty, every line available and in stock, the total the customer saw
	// (AtOnce says what it must write). A nil order means it wrote nothing
	// and the checkout takes the general path (InCheckout), which decides
	// whatever was not plain (a replay, a shortage, a price change) and
	// says why; a store that cannot place at once always answers nil.
	PlaceAtOnce(ctx context.Context, c AtOnce) (*Order, error)
}

// AtOnce is a plain checkout as a store places it in one round trip: it
// must write exactly what PlaceOrder's general path writes for it (the
// order with its lines and first event, the key, the empty cart, the
// stock, the menu's version when an item sold out, and Job's row), or
// nothing.
type AtOnce struct {
	SessionID      int64
	IdempotencyKey string
	RequestHash    string
	Checkout       Checkout
	Now            time.Time
	// Job is the confirmation job's row, to insert with the order (nil:
	// no job, as without a queue).
	Job *JobRow
	// Emptied, when set, is told each item whose stock the placed order
	// took to zero, once the order is committed: what a sharded store
	// refills a shard's quota on, as after the general path
	// (CheckoutTx.ReserveStock's left).
	Emptied func(itemID int64)
}

// JobRow is a queued job as a store writes it in its own statement, with
// the order's id as the job's only argument: what the queue's own insert
// would have written, so the queue works it as its own.
type JobRow struct {
	Kind        string
	ArgName     string // the argument that holds the order id
	Queue       string
	Priority    int
	MaxAttempts int
	// NotifyTopic and NotifyPayload, when set, wake the workers as the
	// queue's own insert would have.
	NotifyTopic, NotifyPayload string
}

// AtOnceQueue is a confirmation queue whose job a store may write in the
// checkout's own statement: ConfirmationJob is the row for a new order's
// job (called once per checkout; it may say to wake the workers).
type AtOnceQueue interface {
	ConfirmationJob() JobRow
}

// ConfirmationQueue schedules the confirmation of a placed order: the job
// queue. It inserts the job in the checkout's own transaction (tx, as
// CheckoutTx.RunInTx hands it), so the job exists if and only if the order
// does.
type ConfirmationQueue interface {
	EnqueueOrderPlaced(ctx context.Context, tx Tx, orderID int64) error
}

// Ordering is placing an order under the rules and reading a session's
// orders back: what the HTTP adapter and the cache layers in front of it
// use. OrderDesk implements it over a store.
type Ordering interface {
	// PlaceOrder turns the session's cart into an order (see
	// OrderDesk.PlaceOrder); created is false for a retry.
	PlaceOrder(ctx context.Context, p PlaceOrder) (order *Order, created bool, err error)
	OrderReader
}

// OrderDesk is the ordering use case: checkout under the rules, over a
// store's checkout transactions, with the confirmation scheduled in each;
// and a session's orders read back.
type OrderDesk struct {
	store OrderService
	queue ConfirmationQueue
	now   func() time.Time
}

var _ Ordering = (*OrderDesk)(nil)

// NewOrderDesk returns the use case over store, scheduling confirmations
// on queue (nil: orders are placed without a confirmation job, as in store
// tests with no worker); now is the clock (nil: the wall clock).
func NewOrderDesk(store OrderService, queue ConfirmationQueue, now func() time.Time) *OrderDesk {
	if now == nil {
		now = time.Now
	}
	return &OrderDesk{store: store, queue: queue, now: now}
}

// PriceChangedError: the cart's total at current prices is not the total
// the customer saw, so nothing was ordered. Cart is the cart as it is now.
type PriceChangedError struct {
	Expected int64
	Cart     *Cart
}

func (e *PriceChangedError) Error() string {
	return fmt.Sprintf("the cart's total is now %s, not the %s you saw: prices changed; review the cart and check out again with the new total",
		formatCents(e.Cart.TotalCents), formatCents(e.Expected))
}

func formatCents(c int64) string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}

// PlaceOrder turns the session's cart into an order, or returns the order
// an earlier checkout with the same key and body made (created false).
// Errors: EINVALID (bad key or body), ErrIdempotencyMismatch (same key,
// other body), ErrCartEmpty, *PriceChangedError, *OutOfStockError.
func (o *OrderDesk) PlaceOrder(ctx context.Context, p PlaceOrder) (order *Order, created bool, err error) {
	if err := ValidateIdempotencyKey(p.IdempotencyKey); err != nil {
		return nil, false, err
	}
	if err := p.Checkout.Validate(); err != nil {
		return nil, false, err
	}
	requestHash := p.Checkout.Fingerprint()
	if order, err := o.placeAtOnce(ctx, p, requestHash); err != nil || order != nil {
		if err != nil {
			return nil, false, fmt.Errorf("place order: %w", err)
		}
		return order, true, nil
	}
	err = o.store.InCheckout(ctx, p.SessionID, p.IdempotencyKey, func(tx CheckoutTx) error {
		now := o.now().UTC().Truncate(time.Microsecond)
		// 1. A retry of an earlier checkout gets that checkout's order.
		earlier, err := replay(ctx, tx, p, requestHash, now)
		if err != nil || earlier != nil {
			order = earlier
			return err
		}
		// 2. The cart at current prices, and the total the customer saw.
		lines, cart, err := pricedCart(ctx, tx, p)
		if err != nil {
			return err
		}
		// 3. Stock for every line, or every shortage at once.
		soldOut, err := reserveStock(ctx, tx, lines)
		if err != nil {
			return err
		}
		// 4. The order and everything that commits with it.
		order, err = o.record(ctx, tx, p, cart, requestHash, now, soldOut)
		created = err == nil
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("place order: %w", err)
	}
	return order, created, nil
}

// placeAtOnce places a plain checkout in one round trip where the store
// and the queue allow it (PlaceAtOnce); no order leaves the checkout to
// the general path.
func (o *OrderDesk) placeAtOnce(ctx context.Context, p PlaceOrder, requestHash string) (*Order, error) {
	c := AtOnce{SessionID: p.SessionID, IdempotencyKey: p.IdempotencyKey, RequestHash: requestHash,
		Checkout: p.Checkout, Now: o.now().UTC().Truncate(time.Microsecond)}
	if o.queue != nil {
		q, ok := o.queue.(AtOnceQueue)
		if !ok {
			return nil, nil // the job can only be inserted by the queue itself
		}
		job := q.ConfirmationJob()
		c.Job = &job
	}
	return o.store.PlaceAtOnce(ctx, c)
}

// replay returns the order an earlier checkout with p's key made (nil if
// none within IdempotencyRetention, whose expired key it forgets), or
// ErrIdempotencyMismatch when that checkout sent another body.
func replay(ctx context.Context, tx CheckoutTx, p PlaceOrder, requestHash string, now time.Time) (*Order, error) {
	hash, earlier, found, err := tx.IdempotencyKey(ctx, p.SessionID, p.IdempotencyKey, now.Add(-IdempotencyRetention))
	if err != nil {
		return nil, err
	}
	if found {
		if hash != requestHash {
			return nil, ErrIdempotencyMismatch
		}
		return tx.Order(ctx, p.SessionID, earlier)
	}
	return nil, tx.ForgetIdempotencyKey(ctx, p.SessionID, p.IdempotencyKey)
}

// pricedCart reads the session's cart at current prices; a total other
// than the one the customer saw orders nothing.
func pricedCart(ctx context.Context, tx CheckoutTx, p PlaceOrder) ([]CheckoutLine, *Cart, error) {
	lines, err := tx.CheckoutCart(ctx, p.SessionID)
	if err != nil {
		return nil, nil, err
	}
	if len(lines) == 0 {
		return nil, nil, ErrCartEmpty
	}
	cart := CartOf(lines)
	if want := p.Checkout.ExpectedTotalCents; want != nil && *want != cart.TotalCents {
		return nil, nil, &PriceChangedError{Expected: *want, Cart: cart}
	}
	return lines, cart, nil
}

// reserveStock takes each line's quantity from stock, collecting every
// shortage so the client can fix the whole cart at once; soldOut reports
// whether an item's stock reached zero.
func reserveStock(ctx context.Context, tx CheckoutTx, lines []CheckoutLine) (soldOut bool, err error) {
	var short []Shortage
	for _, l := range lines {
		if !l.Available {
			short = append(short, Shortage{ItemID: l.ItemID, Name: l.Name, Requested: l.Quantity, Available: 0})
			continue
		}
		left, ok, err := tx.ReserveStock(ctx, l.ItemID, l.Quantity)
		if err != nil {
			return false, err
		}
		if !ok {
			short = append(short, Shortage{ItemID: l.ItemID, Name: l.Name, Requested: l.Quantity, Available: l.Stock})
			continue
		}
		soldOut = soldOut || left == 0
	}
	if len(short) > 0 {
		return false, &OutOfStockError{Items: short}
	}
	return soldOut, nil
}

// record writes the order, priced as just read; the key; the empty cart;
// the menu's new version if an item sold out; and the confirmation job,
// which commits or rolls back with the order.
func (o *OrderDesk) record(ctx context.Context, tx CheckoutTx, p PlaceOrder, cart *Cart, requestHash string, now time.Time, soldOut bool) (*Order, error) {
	c := p.Checkout
	placed := &Order{SessionID: p.SessionID, Status: StatusPlaced, CustomerName: c.CustomerName,
		Email: c.Email, Notes: c.Notes, TotalCents: cart.TotalCents, CreatedAt: now, UpdatedAt: now, SoldOut: soldOut}
	for _, l := range cart.Lines {
		placed.Lines = append(placed.Lines, OrderLine(l))
	}
	if err := tx.InsertOrder(ctx, placed); err != nil {
		return nil, err
	}
	if err := tx.RememberIdempotencyKey(ctx, p.SessionID, p.IdempotencyKey, requestHash, placed.ID, now); err != nil {
		return nil, err
	}
	if err := tx.EmptyCart(ctx, p.SessionID); err != nil {
		return nil, err
	}
	if soldOut {
		if err := tx.BumpCatalogVersion(ctx); err != nil {
			return nil, err
		}
	}
	if o.queue != nil {
		if err := tx.RunInTx(ctx, func(ctx context.Context, dtx Tx) error {
			return o.queue.EnqueueOrderPlaced(ctx, dtx, placed.ID)
		}); err != nil {
			return nil, fmt.Errorf("enqueue confirmation of order %d: %w", placed.ID, err)
		}
	}
	return placed, nil
}

// Order returns one of the session's orders; another session's is ENOTFOUND.
func (o *OrderDesk) Order(ctx context.Context, sessionID, orderID int64) (*Order, error) {
	return o.store.Order(ctx, sessionID, orderID)
}

// ListOrders returns a page of the session's orders, newest first.
func (o *OrderDesk) ListOrders(ctx context.Context, sessionID int64, f OrderFilter) (*OrderPage, error) {
	return o.store.ListOrders(ctx, sessionID, f)
}
