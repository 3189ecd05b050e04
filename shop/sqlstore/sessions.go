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
	id, args, err := s.dialect.NewSessionID(tokenHash)
	if err != nil {
		return nil, err
	}
	if id == "" {
		err = s.db.Writer().QueryRow(ctx, `INSERT INTO sessions (token_hash, created_at, expires_at)
		VALUES (?, ?, ?) RETURNING id`, tokenHash, Micros(sess.CreatedAt), Micros(sess.ExpiresAt)).Scan(&sess.ID)
	} else {
		err = s.db.Writer().QueryRow(ctx, `INSERT INTO sessions (id, token_hash, created_at, expires_at)
		VALUES (`+id+`, ?, ?, ?) RETURNING id`, append(args, tokenHash, Micros(sess.CreatedAt), Micros(sess.ExpiresAt))...).Scan(&sess.ID)
	}
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

// pruneBatch bounds one pruning transaction, so a backlog of expired
// sessions never holds the writer (SQLite's one, PostgreSQL's row locks)
// for long.
const pruneBatch = 1000

// PruneSessions deletes expired sessions without orders (their carts and
// idempotency keys go with them, ON DELETE CASCADE) and empties the carts
// of those that orders keep, a batch of pruneBatch sessions a
// transaction, each found through the expiry index.
//
// A kept session is marked by its expires_at stored negated: to every
// reader it is still expired (expires_at > now fails), its expiry is still
// there (-expires_at), and it is out of the range (0, now] a run scans, so
// each run reads the sessions that expired since the last one, not every
// session that ever ordered.
func (s *Store) PruneSessions(ctx context.Context) (int64, error) {
	now := Micros(s.now())
	var total int64
	for {
		deleted, handled, err := s.pruneSessionBatch(ctx, now)
		total += deleted
		if err != nil {
			return total, fmt.Errorf("prune sessions: %w", err)
		}
		if handled < pruneBatch {
			return total, nil
		}
	}
}

// pruneSessionBatch handles the next batch of expired sessions: deleted
// are those it deleted, handled those it deleted or kept.
func (s *Store) pruneSessionBatch(ctx context.Context, now int64) (deleted int64, handled int, err error) {
	err = s.db.InTx(ctx, func(tx Tx) error {
		type expired struct {
			id, expiresAt      int64
			hasOrders, hasCart bool
		}
		// (The cart's probe is a scalar subquery, not EXISTS, which the
		// planner may answer by hashing the whole table once a batch.)
		batch, err := query(ctx, tx, func(r Row, e *expired) error {
			return r.Scan(&e.id, &e.expiresAt, &e.hasOrders, &e.hasCart)
		}, `SELECT s.id, s.expires_at, EXISTS (SELECT 1 FROM orders o WHERE o.session_id = s.id`+s.dialect.OrdersOfSession("o", "s")+`),
				(SELECT c.item_id FROM cart_items c WHERE c.session_id = s.id LIMIT 1) IS NOT NULL
			FROM sessions s WHERE s.expires_at > 0 AND s.expires_at <= ? ORDER BY s.expires_at LIMIT ?`+s.dialect.LockSessions("s"), now, pruneBatch)
		if err != nil {
			return err
		}
		handled = len(batch)
		if handled == 0 {
			return nil
		}
		// The writes name the batch's sessions and its range of the expiry
		// index, which keeps their plans on an index on any statistics (a
		// thousand ids alone made a never-analyzed table's plan a scan).
		last := batch[handled-1].expiresAt
		var gone, kept, carts []int64
		for _, e := range batch {
			switch {
			case !e.hasOrders:
				gone = append(gone, e.id)
			case e.hasCart:
				carts = append(carts, e.id)
				fallthrough
			default:
				kept = append(kept, e.id)
			}
		}
		if len(gone) > 0 {
			// The probe above looked where the session's orders can be;
			// this one looks everywhere, so an order out of place keeps
			// its session (marked below with the kept) rather than failing
			// every run. It runs after the batch's sessions were locked
			// (LockSessions), so it sees the order of any checkout that
			// held a session's lock: on PostgreSQL no foreign key refuses
			// deleting a session an order names (migration 00024), and the
			// deleted sessions' cart lines go in the same statement
			// (DeleteSessions). They have no idempotency keys: a key is
			// written with its session's order.
			cond, args := s.dialect.InIDs("id", gone)
			query, counts := s.dialect.DeleteSessions(cond + ` AND expires_at > 0 AND expires_at <= ?
				AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.session_id = sessions.id)`)
			args = append(args, last)
			if counts {
				err = tx.QueryRow(ctx, query, args...).Scan(&deleted)
			} else {
				deleted, err = tx.Exec(ctx, query, args...)
			}
			if err != nil {
				return err
			}
		}
		if len(carts) > 0 {
			cond, args := s.dialect.InIDs("session_id", carts)
			if _, err := tx.Exec(ctx, `DELETE FROM cart_items WHERE `+cond, args...); err != nil {
				return fmt.Errorf("empty the carts of expired sessions: %w", err)
			}
		}
		// The kept, and any session of gone that is still there.
		if kept = append(kept, gone...); len(kept) > 0 {
			cond, args := s.dialect.InIDs("id", kept)
			if _, err := tx.Exec(ctx, `UPDATE sessions SET expires_at = -expires_at WHERE `+cond+`
				AND expires_at > 0 AND expires_at <= ?`, append(args, last)...); err != nil {
				return fmt.Errorf("mark expired sessions kept: %w", err)
			}
		}
		return nil
	})
	return deleted, handled, err
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

// CartAtOnceDB is a database that sets a plain cart change (an item
// available, within the line limit) in one round trip and returns the
// cart; nil lines when the change was not plain and nothing was written
// (SetCartItem then takes the general way, which decides it). A DB
// without it takes every cart change the general way.
type CartAtOnceDB interface {
	PutCartItemAtOnce(ctx context.Context, sessionID, itemID int64, quantity int) ([]shop.CheckoutLine, error)
}

// SetCartItem sets an item's quantity in the cart; 0 removes it.
func (s *Store) SetCartItem(ctx context.Context, sessionID, itemID int64, quantity int) (*shop.Cart, error) {
	if err := shop.ValidateQuantity(quantity); err != nil {
		return nil, err
	}
	if db, ok := s.db.(CartAtOnceDB); ok && quantity > 0 {
		lines, err := db.PutCartItemAtOnce(ctx, sessionID, itemID, quantity)
		if err != nil {
			return nil, err
		}
		if lines != nil {
			if err := s.db.SessionWrote(ctx, sessionID); err != nil {
				return nil, err
			}
			return shop.CartOf(lines), nil
		}
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
	// The item and the cart's line counts in one statement (one round trip,
	// not two, in the cart change's transaction); no row: no such item.
	err := tx.QueryRow(ctx, `SELECT i.name, i.available, COUNT(c.item_id), COUNT(c.item_id) FILTER (WHERE c.item_id = i.id)
		FROM items i LEFT JOIN cart_items c ON c.session_id = ?
		WHERE i.id = ? GROUP BY i.id, i.name, i.available`,
		sessionID, itemID).Scan(&got.name, &got.available, &got.lines, &got.withItem)
	if errors.Is(err, sql.ErrNoRows) {
		return shop.Errorf(shop.ENOTFOUND, "item %d does not exist", itemID)
	}
	if err != nil {
		return fmt.Errorf("read item %d and count cart lines: %w", itemID, err)
	}
	if !got.available {
		return shop.Errorf(shop.ECONFLICT, "%q is not available at the moment", got.name)
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
