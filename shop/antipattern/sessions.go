package antipattern

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/perfscale/perfscale/shop"
)

// SessionStore is what local-sessions needs of the store: a session's row
// (orders name it) and the store's cart, which a checkout reads in its
// transaction.
type SessionStore interface {
	CreateSession(ctx context.Context, tokenHash string) (*shop.Session, error)
	SetCartItem(ctx context.Context, sessionID, itemID int64, quantity int) (*shop.Cart, error)
	ClearCart(ctx context.Context, sessionID int64) error
}

// MemorySessions is local-sessions: this replica authenticates only the
// sessions it created itself, from its memory, and keeps their carts in
// its memory only, as a service holding sessions in a server's memory
// does. Another replica does not know the token (401) and sees none of the
// cart. The session's row is still written, since orders name it, and a
// checkout copies the cart into the store's just before it runs, as such
// a service saves the cart when the order is placed.
type MemorySessions struct {
	store SessionStore
	items ItemReader
	mu    sync.Mutex
	byKey map[string]shop.Session
	carts map[int64]map[int64]int // session -> item -> quantity
}

// ItemReader reads the items that carts are priced with.
type ItemReader interface {
	Item(ctx context.Context, id int64) (*shop.Item, error)
}

// NewMemorySessions returns sessions and carts held in this process, over
// the store and the catalog (items, read through whatever cache is in
// front of the store).
func NewMemorySessions(store SessionStore, items ItemReader) *MemorySessions {
	return &MemorySessions{store: store, items: items, byKey: map[string]shop.Session{}, carts: map[int64]map[int64]int{}}
}

// CreateSession writes the session's row and remembers the token here only.
func (l *MemorySessions) CreateSession(ctx context.Context, tokenHash string) (*shop.Session, error) {
	s, err := l.store.CreateSession(ctx, tokenHash)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.byKey[tokenHash] = *s
	l.mu.Unlock()
	return s, nil
}

// SessionByTokenHash knows only the sessions this process created.
func (l *MemorySessions) SessionByTokenHash(_ context.Context, tokenHash string) (*shop.Session, error) {
	l.mu.Lock()
	s, ok := l.byKey[tokenHash]
	l.mu.Unlock()
	if !ok {
		return nil, shop.Errorf(shop.EUNAUTHORIZED, "the session token is unknown or expired; create a session with POST /v1/sessions")
	}
	return &s, nil
}

// Cart prices the session's cart, held here, at current prices.
func (l *MemorySessions) Cart(ctx context.Context, sessionID int64) (*shop.Cart, error) {
	l.mu.Lock()
	qty := l.cartCopy(sessionID)
	l.mu.Unlock()
	ids := make([]int64, 0, len(qty))
	for id := range qty {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	lines := make([]shop.CheckoutLine, 0, len(ids))
	for _, id := range ids {
		it, err := l.items.Item(ctx, id)
		if shop.ErrorCode(err) == shop.ENOTFOUND {
			continue
		}
		if err != nil {
			return nil, err
		}
		lines = append(lines, shop.CheckoutLine{CartLine: shop.CartLine{ItemID: id, Name: it.Name, Quantity: qty[id],
			UnitPriceCents: it.PriceCents, LineTotalCents: it.PriceCents * int64(qty[id])}})
	}
	return shop.CartOf(lines), nil
}

func (l *MemorySessions) cartCopy(sessionID int64) map[int64]int {
	out := make(map[int64]int, len(l.carts[sessionID]))
	for id, n := range l.carts[sessionID] {
		out[id] = n
	}
	return out
}

// SetCartItem sets an item's quantity in the cart held here, under the
// store's rules: an unknown item is ENOTFOUND, an unavailable one
// ECONFLICT, and a cart holds at most shop.MaxCartLines items.
func (l *MemorySessions) SetCartItem(ctx context.Context, sessionID, itemID int64, quantity int) (*shop.Cart, error) {
	if err := shop.ValidateQuantity(quantity); err != nil {
		return nil, err
	}
	if quantity > 0 {
		it, err := l.items.Item(ctx, itemID)
		if err != nil {
			return nil, err
		}
		if !it.Available {
			return nil, shop.Errorf(shop.ECONFLICT, "%q is not available at the moment", it.Name)
		}
	}
	l.mu.Lock()
	cart := l.carts[sessionID]
	switch {
	case quantity == 0:
		delete(cart, itemID)
	case cart == nil:
		l.carts[sessionID] = map[int64]int{itemID: quantity}
	case cart[itemID] == 0 && len(cart) >= shop.MaxCartLines:
		l.mu.Unlock()
		return nil, shop.Errorf(shop.EUNPROCESSABLE, "a cart holds at most %d different items", shop.MaxCartLines)
	default:
		cart[itemID] = quantity
	}
	l.mu.Unlock()
	return l.Cart(ctx, sessionID)
}

// ClearCart empties the cart held here.
func (l *MemorySessions) ClearCart(_ context.Context, sessionID int64) error {
	l.mu.Lock()
	delete(l.carts, sessionID)
	l.mu.Unlock()
	return nil
}

// Ordering returns next with the session's cart, held here, copied into
// the store just before each checkout, and forgotten once it became an
// order.
func (l *MemorySessions) Ordering(next shop.Ordering) shop.Ordering {
	return &localOrdering{Ordering: next, l: l}
}

type localOrdering struct {
	shop.Ordering
	l *MemorySessions
}

func (o *localOrdering) PlaceOrder(ctx context.Context, p shop.PlaceOrder) (*shop.Order, bool, error) {
	if err := o.l.save(ctx, p.SessionID); err != nil {
		return nil, false, err
	}
	order, created, err := o.Ordering.PlaceOrder(ctx, p)
	if err == nil && created {
		o.l.ClearCart(ctx, p.SessionID) //nolint:errcheck // never fails
	}
	return order, created, err
}

// save writes the cart held here into the store's.
func (l *MemorySessions) save(ctx context.Context, sessionID int64) error {
	l.mu.Lock()
	qty := l.cartCopy(sessionID)
	l.mu.Unlock()
	if err := l.store.ClearCart(ctx, sessionID); err != nil {
		return fmt.Errorf("save the cart held in memory: %w", err)
	}
	for id, n := range qty {
		if _, err := l.store.SetCartItem(ctx, sessionID, id, n); err != nil && shop.ErrorCode(err) == shop.EINTERNAL {
			return fmt.Errorf("save the cart held in memory: %w", err)
		}
	}
	return nil
}
