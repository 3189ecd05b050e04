package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// Store implements shop.Store on a DB.
type Store struct {
	db  *DB
	now func() time.Time
}

var _ shop.Store = (*Store)(nil)

// NewStore returns a store on db; now is the clock that expiry is judged
// by (nil: the wall clock).
func NewStore(db *DB, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, now: func() time.Time { return now().UTC() }}
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db.read.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Close closes the underlying database.
func (s *Store) Close() error { return s.db.Close() }

func micros(t time.Time) int64 { return t.UnixMicro() }
func fromMicros(us int64) time.Time {
	return time.UnixMicro(us).UTC()
}

// inTx runs fn in a write transaction and commits it if fn succeeds.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// --- catalog ---

// SeedIfEmpty inserts items when the catalog has none, in batches so a
// million items take seconds, not minutes. It reports how many it inserted.
func (s *Store) SeedIfEmpty(ctx context.Context, items []shop.Item) (int, error) {
	var n int
	if err := s.db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM items`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count items: %w", err)
	}
	if n > 0 {
		return 0, nil
	}
	now := micros(s.now())
	const batch = 500
	for start := 0; start < len(items); start += batch {
		chunk := items[start:min(start+batch, len(items))]
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			stmt, err := tx.PrepareContext(ctx, `INSERT INTO items
				(id, name, description, price_cents, category, available, stock, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
			if err != nil {
				return err
			}
			defer stmt.Close()
			for _, it := range chunk {
				if _, err := stmt.ExecContext(ctx, it.ID, it.Name, it.Description, it.PriceCents,
					it.Category, it.Available, it.Stock, now); err != nil {
					return fmt.Errorf("item %d: %w", it.ID, err)
				}
			}
			return nil
		})
		if err != nil {
			return start, fmt.Errorf("seed items: %w", err)
		}
	}
	if err := s.inTx(ctx, func(tx *sql.Tx) error { return bumpCatalog(ctx, tx) }); err != nil {
		return len(items), fmt.Errorf("seed items: %w", err)
	}
	return len(items), nil
}

func bumpCatalog(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `UPDATE catalog_version SET version = version + 1 WHERE id = 1`); err != nil {
		return fmt.Errorf("bump catalog version: %w", err)
	}
	return nil
}

// CatalogVersion returns the menu's version.
func (s *Store) CatalogVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.db.read.QueryRowContext(ctx, `SELECT version FROM catalog_version WHERE id = 1`).Scan(&v); err != nil {
		return 0, fmt.Errorf("catalog version: %w", err)
	}
	return v, nil
}

// Menu returns the available, in-stock items by category, in one query and
// one read transaction so the version matches the items.
func (s *Store) Menu(ctx context.Context) (*shop.Menu, error) {
	tx, err := s.db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("menu: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck
	m := &shop.Menu{Categories: []shop.MenuCategory{}}
	if err := tx.QueryRowContext(ctx, `SELECT version FROM catalog_version WHERE id = 1`).Scan(&m.Version); err != nil {
		return nil, fmt.Errorf("menu version: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, name, description, price_cents, category
		FROM items WHERE available AND stock > 0 ORDER BY category, id`)
	if err != nil {
		return nil, fmt.Errorf("menu items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		it := shop.MenuItem{Available: true}
		if err := rows.Scan(&it.ID, &it.Name, &it.Description, &it.PriceCents, &it.Category); err != nil {
			return nil, fmt.Errorf("menu items: %w", err)
		}
		if n := len(m.Categories); n == 0 || m.Categories[n-1].Name != it.Category {
			m.Categories = append(m.Categories, shop.MenuCategory{Name: it.Category})
		}
		c := &m.Categories[len(m.Categories)-1]
		c.Items = append(c.Items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("menu items: %w", err)
	}
	return m, nil
}

const itemColumns = `id, name, description, price_cents, category, available, stock, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanItem(r scanner) (*shop.Item, error) {
	var it shop.Item
	var updated int64
	if err := r.Scan(&it.ID, &it.Name, &it.Description, &it.PriceCents, &it.Category,
		&it.Available, &it.Stock, &updated); err != nil {
		return nil, err
	}
	it.UpdatedAt = fromMicros(updated)
	return &it, nil
}

// Item returns one item.
func (s *Store) Item(ctx context.Context, id int64) (*shop.Item, error) {
	it, err := scanItem(s.db.read.QueryRowContext(ctx, `SELECT `+itemColumns+` FROM items WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, shop.Errorf(shop.ENOTFOUND, "item %d does not exist", id)
	}
	if err != nil {
		return nil, fmt.Errorf("item %d: %w", id, err)
	}
	return it, nil
}

// ListItems returns a keyset page of items in id order.
func (s *Store) ListItems(ctx context.Context, f shop.ItemFilter) (*shop.ItemPage, error) {
	if err := f.Normalize(); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	where = append(where, "id > ?")
	args = append(args, f.After)
	if f.Category != "" {
		where = append(where, "category = ?")
		args = append(args, f.Category)
	}
	if f.Query != "" {
		where = append(where, `lower(name) LIKE ? ESCAPE '\'`)
		args = append(args, "%"+escapeLike(strings.ToLower(f.Query))+"%")
	}
	args = append(args, f.Limit+1)
	rows, err := s.db.read.QueryContext(ctx, `SELECT `+itemColumns+` FROM items WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("list items: %w", err)
	}
	defer rows.Close()
	page := &shop.ItemPage{Items: []shop.Item{}}
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, fmt.Errorf("list items: %w", err)
		}
		page.Items = append(page.Items, *it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list items: %w", err)
	}
	if len(page.Items) > f.Limit {
		page.Items = page.Items[:f.Limit]
		page.Next = page.Items[f.Limit-1].ID
	}
	return page, nil
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// UpdateItem applies an admin change and bumps the catalog version.
func (s *Store) UpdateItem(ctx context.Context, id int64, u shop.ItemUpdate) (*shop.Item, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	var it *shop.Item
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE items SET
				price_cents = COALESCE(?, price_cents),
				stock = COALESCE(?, stock),
				available = COALESCE(?, available),
				updated_at = ?
			WHERE id = ?`, u.PriceCents, u.Stock, u.Available, micros(s.now()), id)
		if err != nil {
			return fmt.Errorf("update item %d: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return shop.Errorf(shop.ENOTFOUND, "item %d does not exist", id)
		}
		if err := bumpCatalog(ctx, tx); err != nil {
			return err
		}
		it, err = scanItem(tx.QueryRowContext(ctx, `SELECT `+itemColumns+` FROM items WHERE id = ?`, id))
		if err != nil {
			return fmt.Errorf("read item %d: %w", id, err)
		}
		return nil
	})
	return it, err
}

// --- sessions ---

// CreateSession stores a new session under tokenHash.
func (s *Store) CreateSession(ctx context.Context, tokenHash string) (*shop.Session, error) {
	now := s.now()
	sess := &shop.Session{CreatedAt: now.Truncate(time.Microsecond), ExpiresAt: now.Add(shop.SessionTTL).Truncate(time.Microsecond)}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO sessions (token_hash, created_at, expires_at)
			VALUES (?, ?, ?) RETURNING id`, tokenHash, micros(sess.CreatedAt), micros(sess.ExpiresAt)).Scan(&sess.ID)
	})
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	return sess, nil
}

// SessionByTokenHash returns the live session stored under tokenHash.
func (s *Store) SessionByTokenHash(ctx context.Context, tokenHash string) (*shop.Session, error) {
	var sess shop.Session
	var created, expires int64
	err := s.db.read.QueryRowContext(ctx, `SELECT id, created_at, expires_at FROM sessions
		WHERE token_hash = ? AND expires_at > ?`, tokenHash, micros(s.now())).Scan(&sess.ID, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, shop.Errorf(shop.EUNAUTHORIZED, "the session token is unknown or expired; create a session with POST /v1/sessions")
	}
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	sess.CreatedAt, sess.ExpiresAt = fromMicros(created), fromMicros(expires)
	return &sess, nil
}

// pruneBatch bounds one pruning transaction, so the single writer is never
// held for long by a backlog of expired sessions.
const pruneBatch = 1000

// PruneSessions deletes expired sessions without orders (their carts and
// idempotency keys go with them, ON DELETE CASCADE) in batches, then
// empties the carts of the expired sessions that remain because orders
// name them.
func (s *Store) PruneSessions(ctx context.Context) (int64, error) {
	now := micros(s.now())
	var total int64
	for {
		var n int64
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE id IN (
				SELECT s.id FROM sessions s WHERE s.expires_at <= ?
				AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.session_id = s.id) LIMIT ?)`, now, pruneBatch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("prune sessions: %w", err)
		}
		total += n
		if n < pruneBatch {
			break
		}
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM cart_items WHERE session_id IN (
			SELECT id FROM sessions WHERE expires_at <= ?)`, now)
		return err
	})
	if err != nil {
		return total, fmt.Errorf("prune carts of expired sessions: %w", err)
	}
	return total, nil
}

// --- cart ---

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func readCart(ctx context.Context, q querier, sessionID int64) ([]shop.CheckoutLine, error) {
	rows, err := q.QueryContext(ctx, `SELECT c.item_id, i.name, c.quantity, i.price_cents, i.available, i.stock
		FROM cart_items c JOIN items i ON i.id = c.item_id
		WHERE c.session_id = ? ORDER BY c.item_id`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("read cart: %w", err)
	}
	defer rows.Close()
	var lines []shop.CheckoutLine
	for rows.Next() {
		var l shop.CheckoutLine
		if err := rows.Scan(&l.ItemID, &l.Name, &l.Quantity, &l.UnitPriceCents, &l.Available, &l.Stock); err != nil {
			return nil, fmt.Errorf("read cart: %w", err)
		}
		l.LineTotalCents = l.UnitPriceCents * int64(l.Quantity)
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cart: %w", err)
	}
	return lines, nil
}

// Cart returns the session's cart at current prices.
func (s *Store) Cart(ctx context.Context, sessionID int64) (*shop.Cart, error) {
	lines, err := readCart(ctx, s.db.read, sessionID)
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
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if quantity == 0 {
			if _, err := tx.ExecContext(ctx, `DELETE FROM cart_items WHERE session_id = ? AND item_id = ?`, sessionID, itemID); err != nil {
				return fmt.Errorf("remove cart item: %w", err)
			}
		} else {
			var available bool
			var name string
			err := tx.QueryRowContext(ctx, `SELECT name, available FROM items WHERE id = ?`, itemID).Scan(&name, &available)
			if errors.Is(err, sql.ErrNoRows) {
				return shop.Errorf(shop.ENOTFOUND, "item %d does not exist", itemID)
			}
			if err != nil {
				return fmt.Errorf("read item %d: %w", itemID, err)
			}
			if !available {
				return shop.Errorf(shop.ECONFLICT, "%q is not available at the moment", name)
			}
			var count int
			var present bool
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(MAX(item_id = ?), FALSE) FROM cart_items WHERE session_id = ?`,
				itemID, sessionID).Scan(&count, &present); err != nil {
				return fmt.Errorf("count cart lines: %w", err)
			}
			if !present && count >= shop.MaxCartLines {
				return shop.Errorf(shop.EUNPROCESSABLE, "a cart holds at most %d different items", shop.MaxCartLines)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO cart_items (session_id, item_id, quantity) VALUES (?, ?, ?)
				ON CONFLICT (session_id, item_id) DO UPDATE SET quantity = excluded.quantity`,
				sessionID, itemID, quantity); err != nil {
				return fmt.Errorf("set cart item: %w", err)
			}
		}
		var err error
		lines, err = readCart(ctx, tx, sessionID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return shop.CartOf(lines), nil
}

// ClearCart empties the session's cart.
func (s *Store) ClearCart(ctx context.Context, sessionID int64) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM cart_items WHERE session_id = ?`, sessionID); err != nil {
			return fmt.Errorf("clear cart: %w", err)
		}
		return nil
	})
}
