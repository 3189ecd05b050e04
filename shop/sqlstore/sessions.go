package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// --- sessions ---

// CreateSession stores a new session under tokenHash.
func (s *Store) CreateSession(ctx context.Context, tokenHash string) (*shop.Session, error) {
	now := s.now().Truncate(time.Microsecond)
	sess := &shop.Session{CreatedAt: now, ExpiresAt: now.Add(shop.SessionTTL)}
	err := s.db.Writer().QueryRow(ctx, `INSERT INTO sessions (token_hash, created_at, expires_at)
		VALUES (?, ?, ?) RETURNING id`, tokenHash, Micros(sess.CreatedAt), Micros(sess.ExpiresAt)).Scan(&sess.ID)
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	return sess, nil
}

// SessionByTokenHash returns the live session stored under tokenHash. It
// reads fresh: a session created a moment ago (on another API replica)
// must authenticate at once.
func (s *Store) SessionByTokenHash(ctx context.Context, tokenHash string) (*shop.Session, error) {
	sess := new(shop.Session)
	err := s.db.Fresh().QueryRow(ctx, `SELECT id, created_at, expires_at FROM sessions
		WHERE token_hash = ? AND expires_at > ?`, tokenHash, Micros(s.now())).
		Scan(&sess.ID, microsTime{&sess.CreatedAt}, microsTime{&sess.ExpiresAt})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, shop.Errorf(shop.EUNAUTHORIZED, "the session token is unknown or expired; create a session with POST /v1/sessions")
	}
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	return sess, nil
}

// pruneBatch bounds one pruning statement, so a backlog of expired
// sessions never holds the writer (SQLite's one, PostgreSQL's row locks)
// for long.
const pruneBatch = 1000

// PruneSessions deletes expired sessions without orders (their carts and
// idempotency keys go with them, ON DELETE CASCADE) in batches, then
// empties the carts of the expired sessions that remain because orders
// name them.
func (s *Store) PruneSessions(ctx context.Context) (int64, error) {
	now := Micros(s.now())
	var total int64
	for {
		n, err := s.db.Writer().Exec(ctx, `DELETE FROM sessions WHERE id IN (
			SELECT s.id FROM sessions s WHERE s.expires_at <= ?
			AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.session_id = s.id) LIMIT ?)`, now, pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune sessions: %w", err)
		}
		total += n
		if n < pruneBatch {
			break
		}
	}
	if _, err := s.db.Writer().Exec(ctx, `DELETE FROM cart_items WHERE session_id IN (
		SELECT id FROM sessions WHERE expires_at <= ?)`, now); err != nil {
		return total, fmt.Errorf("prune carts of expired sessions: %w", err)
	}
	return total, nil
}

// --- cart ---

func scanCartLine(r Row, l *shop.CheckoutLine) error {
	if err := r.Scan(&l.ItemID, &l.Name, &l.Quantity, &l.UnitPriceCents, &l.Available, &l.Stock); err != nil {
		return err
	}
	l.LineTotalCents = l.UnitPriceCents * int64(l.Quantity)
	return nil
}

// readCart reads the session's cart at current prices, in item id order.
func readCart(ctx context.Context, q Querier, sessionID int64) ([]shop.CheckoutLine, error) {
	lines, err := query(ctx, q, scanCartLine, `SELECT c.item_id, i.name, c.quantity, i.price_cents, i.available, i.stock
		FROM cart_items c JOIN items i ON i.id = c.item_id
		WHERE c.session_id = ? ORDER BY c.item_id`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("read cart: %w", err)
	}
	return lines, nil
}

// Cart returns the session's cart at current prices. It reads fresh: the
// cart is what the client just changed.
func (s *Store) Cart(ctx context.Context, sessionID int64) (*shop.Cart, error) {
	lines, err := readCart(ctx, s.db.Fresh(), sessionID)
	if err != nil {
		return nil, err
	}
	return shop.CartOf(lines), nil
}

// SetCartItem sets an item's quantity in the cart; 0 removes it.
func (s *Store) SetCartItem(ctx context.Context, sessionID, itemID int64, quantity int) (*shop.Cart, error) {
	if err := shop.ValidateQuantity(quantity); err != nil {
		return nil, err
	}
	var lines []shop.CheckoutLine
	err := s.db.InTx(ctx, func(tx Tx) error {
		if err := s.db.LockSession(ctx, tx, sessionID); err != nil {
			return err
		}
		var err error
		if quantity == 0 {
			_, err = tx.Exec(ctx, `DELETE FROM cart_items WHERE session_id = ? AND item_id = ?`, sessionID, itemID)
			if err != nil {
				return fmt.Errorf("remove cart item: %w", err)
			}
		} else if err := putCartItem(ctx, tx, sessionID, itemID, quantity); err != nil {
			return err
		}
		lines, err = readCart(ctx, tx, sessionID)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := s.db.SessionWrote(ctx, sessionID); err != nil {
		return nil, err
	}
	return shop.CartOf(lines), nil
}

// putCartItem adds an available item to the cart or changes its quantity,
// within the cart's line limit.
func putCartItem(ctx context.Context, tx Tx, sessionID, itemID int64, quantity int) error {
	// One struct for every value scanned here: a scan destination goes to
	// the heap, and one allocation is cheaper than four.
	var got struct {
		name      string
		available bool
		lines     int // the cart's lines
		withItem  int // of which for this item (0 or 1)
	}
	err := tx.QueryRow(ctx, `SELECT name, available FROM items WHERE id = ?`, itemID).Scan(&got.name, &got.available)
	if errors.Is(err, sql.ErrNoRows) {
		return shop.Errorf(shop.ENOTFOUND, "item %d does not exist", itemID)
	}
	if err != nil {
		return fmt.Errorf("read item %d: %w", itemID, err)
	}
	if !got.available {
		return shop.Errorf(shop.ECONFLICT, "%q is not available at the moment", got.name)
	}
	if err := tx.QueryRow(ctx, `SELECT COUNT(*), COUNT(*) FILTER (WHERE item_id = ?) FROM cart_items WHERE session_id = ?`,
		itemID, sessionID).Scan(&got.lines, &got.withItem); err != nil {
		return fmt.Errorf("count cart lines: %w", err)
	}
	if got.withItem == 0 && got.lines >= shop.MaxCartLines {
		return shop.Errorf(shop.EUNPROCESSABLE, "a cart holds at most %d different items", shop.MaxCartLines)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO cart_items (session_id, item_id, quantity) VALUES (?, ?, ?)
		ON CONFLICT (session_id, item_id) DO UPDATE SET quantity = excluded.quantity`,
		sessionID, itemID, quantity); err != nil {
		return fmt.Errorf("set cart item: %w", err)
	}
	return nil
}

// ClearCart empties the session's cart.
func (s *Store) ClearCart(ctx context.Context, sessionID int64) error {
	if _, err := s.db.Writer().Exec(ctx, `DELETE FROM cart_items WHERE session_id = ?`, sessionID); err != nil {
		return fmt.Errorf("clear cart: %w", err)
	}
	return s.db.SessionWrote(ctx, sessionID)
}
