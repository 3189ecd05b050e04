package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// InCheckout runs a checkout transaction; see shop.CheckoutStore. The
// database's LockSession keeps the checkouts of one session (and so those
// sharing a key, which is per session) apart from each other and from the
// session's cart changes. Stock is reserved by conditional updates in item
// id order, so two checkouts never deadlock and a unit is never sold twice.
func (s *Store) InCheckout(ctx context.Context, sessionID int64, key string, fn func(tx shop.CheckoutTx) error) error {
	err := s.db.InTx(ctx, func(tx Tx) error {
		if err := s.db.LockSession(ctx, tx, sessionID); err != nil {
			return err
		}
		return fn(&checkoutTx{tx: tx, store: s})
	})
	if err != nil {
		return err
	}
	// The client is told its order exists: its reads must find it.
	return s.db.SessionWrote(ctx, sessionID)
}

// checkoutTx is checkout's primitives on one transaction.
type checkoutTx struct {
	tx    Tx
	store *Store
}

func (c *checkoutTx) IdempotencyKey(ctx context.Context, sessionID int64, key string, since time.Time) (string, int64, bool, error) {
	var hash string
	var orderID int64
	err := c.tx.QueryRow(ctx, `SELECT request_hash, order_id FROM idempotency_keys
		WHERE session_id = ? AND key = ? AND created_at > ?`, sessionID, key, Micros(since)).Scan(&hash, &orderID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", 0, false, nil
	case err != nil:
		return "", 0, false, fmt.Errorf("read idempotency key: %w", err)
	}
	return hash, orderID, true, nil
}

func (c *checkoutTx) ForgetIdempotencyKey(ctx context.Context, sessionID int64, key string) error {
	if _, err := c.tx.Exec(ctx, `DELETE FROM idempotency_keys WHERE session_id = ? AND key = ?`, sessionID, key); err != nil {
		return fmt.Errorf("drop expired idempotency key: %w", err)
	}
	return nil
}

func (c *checkoutTx) CheckoutCart(ctx context.Context, sessionID int64) ([]shop.CheckoutLine, error) {
	return readCart(ctx, c.tx, sessionID)
}

func (c *checkoutTx) ReserveStock(ctx context.Context, itemID int64, n int) (int64, bool, error) {
	var left int64
	err := c.tx.QueryRow(ctx, `UPDATE items SET stock = stock - ?
		WHERE id = ? AND available AND stock >= ? RETURNING stock`, n, itemID, n).Scan(&left)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("reserve stock of item %d: %w", itemID, err)
	}
	return left, true, nil
}

func (c *checkoutTx) InsertOrder(ctx context.Context, o *shop.Order) error {
	id, args := c.store.dialect.NewOrderID(Micros(o.CreatedAt), o.SessionID)
	args = append(args, o.SessionID, o.Status, o.CustomerName, o.Email, o.Notes, o.TotalCents,
		Micros(o.CreatedAt), Micros(o.UpdatedAt))
	if err := c.tx.QueryRow(ctx, `INSERT INTO orders
		(id, session_id, status, customer_name, email, notes, total_cents, created_at, updated_at)
		VALUES (`+id+`, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, args...).Scan(&o.ID); err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	// One statement for every line, not a statement each.
	lines, args := c.store.dialect.InsertOrderLines(o)
	if _, err := c.tx.Exec(ctx, lines, args...); err != nil {
		return fmt.Errorf("insert order lines: %w", err)
	}
	return appendOrderEvent(ctx, c.tx, o.ID, o.Status, Micros(o.CreatedAt))
}

func (c *checkoutTx) RememberIdempotencyKey(ctx context.Context, sessionID int64, key, hash string, orderID int64, at time.Time) error {
	if _, err := c.tx.Exec(ctx, `INSERT INTO idempotency_keys
		(session_id, key, request_hash, order_id, created_at) VALUES (?, ?, ?, ?, ?)`,
		sessionID, key, hash, orderID, Micros(at)); err != nil {
		return fmt.Errorf("record idempotency key: %w", err)
	}
	return nil
}

func (c *checkoutTx) EmptyCart(ctx context.Context, sessionID int64) error {
	if _, err := c.tx.Exec(ctx, `DELETE FROM cart_items WHERE session_id = ?`, sessionID); err != nil {
		return fmt.Errorf("empty cart: %w", err)
	}
	return nil
}

func (c *checkoutTx) BumpCatalogVersion(ctx context.Context) error {
	return BumpCatalogVersion(ctx, c.tx)
}

// RunInTx runs the caller's work (the job queue's) on the checkout's
// transaction.
func (c *checkoutTx) RunInTx(ctx context.Context, fn func(ctx context.Context, tx shop.Tx) error) error {
	return runInTx(ctx, c.tx, fn)
}

func (c *checkoutTx) Order(ctx context.Context, sessionID, orderID int64) (*shop.Order, error) {
	return c.store.readOrder(ctx, c.tx, sessionID, orderID)
}

// AtOnceDB is a database that places a plain checkout in one round trip
// (see shop.CheckoutStore.PlaceAtOnce); a DB without it takes every
// checkout the general way.
type AtOnceDB interface {
	PlaceAtOnce(ctx context.Context, c shop.AtOnce) (*shop.Order, error)
}

// PlaceAtOnce places a plain checkout in one round trip where the database
// can (AtOnceDB); see shop.CheckoutStore.
func (s *Store) PlaceAtOnce(ctx context.Context, c shop.AtOnce) (*shop.Order, error) {
	db, ok := s.db.(AtOnceDB)
	if !ok {
		return nil, nil
	}
	o, err := db.PlaceAtOnce(ctx, c)
	if err != nil || o == nil {
		return nil, err
	}
	// The client is told its order exists: its reads must find it.
	if err := s.db.SessionWrote(ctx, c.SessionID); err != nil {
		return nil, err
	}
	return o, nil
}
