package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
)

// Store implements shop.Store on a DB.
type Store struct {
	db  *DB
	now func() time.Time
}

var _ shop.Store = (*Store)(nil)

// NewStore returns a store on db; now is the clock (nil: the wall clock).
func NewStore(db *DB, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, now: func() time.Time { return now().UTC() }}
}

func micros(t time.Time) int64 { return t.UnixMicro() }
func fromMicros(us int64) time.Time {
	return time.UnixMicro(us).UTC()
}

// Ping checks that the primary answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.primary.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", unavailable(err))
	}
	return nil
}

// Close closes the pools.
func (s *Store) Close() error {
	s.db.Close()
	return nil
}

// inTx runs fn in a transaction on the primary and commits it if fn
// succeeds.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, s.db.primary, fn)
	return unavailable(err)
}

// --- catalog ---

// seedLock is the advisory lock id that serialises seeding, so replicas
// starting together seed once.
const seedLock = 0x5ee0

// SeedIfEmpty inserts items when the catalog has none (one transaction,
// COPY); it reports how many it inserted.
func (s *Store) SeedIfEmpty(ctx context.Context, items []shop.Item) (int, error) {
	n := 0
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, seedLock); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM items)`).Scan(&exists); err != nil {
			return err
		}
		if exists || len(items) == 0 {
			return nil
		}
		now := micros(s.now())
		copied, err := tx.CopyFrom(ctx, pgx.Identifier{"items"},
			[]string{"id", "name", "description", "price_cents", "category", "available", "stock", "updated_at"},
			pgx.CopyFromSlice(len(items), func(i int) ([]any, error) {
				it := items[i]
				return []any{it.ID, it.Name, it.Description, it.PriceCents, it.Category, it.Available, it.Stock, now}, nil
			}))
		if err != nil {
			return err
		}
		n = int(copied)
		return bumpCatalog(ctx, tx)
	})
	if err != nil {
		return 0, fmt.Errorf("seed items: %w", err)
	}
	return n, nil
}

func bumpCatalog(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `UPDATE catalog_version SET version = version + 1 WHERE id = 1`); err != nil {
		return fmt.Errorf("bump catalog version: %w", err)
	}
	return nil
}

// CatalogVersion returns the menu's version.
func (s *Store) CatalogVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.catalogReader().QueryRow(ctx, `SELECT version FROM catalog_version WHERE id = 1`).Scan(&v); err != nil {
		return 0, fmt.Errorf("catalog version: %w", unavailable(err))
	}
	return v, nil
}

// Menu returns the available, in-stock items by category, read in one
// repeatable-read transaction so the version matches the items.
func (s *Store) Menu(ctx context.Context) (*shop.Menu, error) {
	m := &shop.Menu{Categories: []shop.MenuCategory{}}
	err := pgx.BeginTxFunc(ctx, s.catalogReader(), pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT version FROM catalog_version WHERE id = 1`).Scan(&m.Version); err != nil {
			return fmt.Errorf("menu version: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT id, name, description, price_cents, category
			FROM items WHERE available AND stock > 0 ORDER BY category, id`)
		if err != nil {
			return fmt.Errorf("menu items: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			it := shop.MenuItem{Available: true}
			if err := rows.Scan(&it.ID, &it.Name, &it.Description, &it.PriceCents, &it.Category); err != nil {
				return fmt.Errorf("menu items: %w", err)
			}
			if n := len(m.Categories); n == 0 || m.Categories[n-1].Name != it.Category {
				m.Categories = append(m.Categories, shop.MenuCategory{Name: it.Category})
			}
			c := &m.Categories[len(m.Categories)-1]
			c.Items = append(c.Items, it)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("menu: %w", unavailable(err))
	}
	return m, nil
}

const itemColumns = `id, name, description, price_cents, category, available, stock, updated_at`

func scanItem(r pgx.Row) (*shop.Item, error) {
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
	it, err := scanItem(s.catalogReader().QueryRow(ctx, `SELECT `+itemColumns+` FROM items WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, shop.Errorf(shop.ENOTFOUND, "item %d does not exist", id)
	}
	if err != nil {
		return nil, fmt.Errorf("item %d: %w", id, unavailable(err))
	}
	return it, nil
}

// ListItems returns a keyset page of items in id order.
func (s *Store) ListItems(ctx context.Context, f shop.ItemFilter) (*shop.ItemPage, error) {
	if err := f.Normalize(); err != nil {
		return nil, err
	}
	where := []string{"id > $1"}
	args := []any{f.After}
	if f.Category != "" {
		args = append(args, f.Category)
		where = append(where, fmt.Sprintf("category = $%d", len(args)))
	}
	if f.Query != "" {
		args = append(args, "%"+escapeLike(strings.ToLower(f.Query))+"%")
		where = append(where, fmt.Sprintf(`lower(name) LIKE $%d ESCAPE '\'`, len(args)))
	}
	args = append(args, f.Limit+1)
	rows, err := s.catalogReader().Query(ctx, `SELECT `+itemColumns+` FROM items WHERE `+
		strings.Join(where, " AND ")+fmt.Sprintf(` ORDER BY id LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("list items: %w", unavailable(err))
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
		return nil, fmt.Errorf("list items: %w", unavailable(err))
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
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		it, err = scanItem(tx.QueryRow(ctx, `UPDATE items SET
				price_cents = COALESCE($1, price_cents),
				stock = COALESCE($2, stock),
				available = COALESCE($3, available),
				updated_at = $4
			WHERE id = $5 RETURNING `+itemColumns, u.PriceCents, u.Stock, u.Available, micros(s.now()), id))
		if errors.Is(err, pgx.ErrNoRows) {
			return shop.Errorf(shop.ENOTFOUND, "item %d does not exist", id)
		}
		if err != nil {
			return fmt.Errorf("update item %d: %w", id, err)
		}
		return bumpCatalog(ctx, tx)
	})
	return it, err
}

// --- sessions ---

// CreateSession stores a new session under tokenHash.
func (s *Store) CreateSession(ctx context.Context, tokenHash string) (*shop.Session, error) {
	now := s.now().Truncate(time.Microsecond)
	sess := &shop.Session{CreatedAt: now, ExpiresAt: now.Add(shop.SessionTTL)}
	err := s.db.primary.QueryRow(ctx, `INSERT INTO sessions (token_hash, created_at, expires_at)
		VALUES ($1, $2, $3) RETURNING id`, tokenHash, micros(sess.CreatedAt), micros(sess.ExpiresAt)).Scan(&sess.ID)
	if err != nil {
		return nil, fmt.Errorf("create session: %w", unavailable(err))
	}
	return sess, nil
}

// SessionByTokenHash returns the live session stored under tokenHash. It
// reads the primary: a session created a moment ago on another replica
// must authenticate at once.
func (s *Store) SessionByTokenHash(ctx context.Context, tokenHash string) (*shop.Session, error) {
	var sess shop.Session
	var created, expires int64
	err := s.db.primary.QueryRow(ctx, `SELECT id, created_at, expires_at FROM sessions
		WHERE token_hash = $1 AND expires_at > $2`, tokenHash, micros(s.now())).Scan(&sess.ID, &created, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, shop.Errorf(shop.EUNAUTHORIZED, "the session token is unknown or expired; create a session with POST /v1/sessions")
	}
	if err != nil {
		return nil, fmt.Errorf("session: %w", unavailable(err))
	}
	sess.CreatedAt, sess.ExpiresAt = fromMicros(created), fromMicros(expires)
	return &sess, nil
}

// pruneBatch bounds one pruning statement, so a backlog of expired
// sessions never holds locks for long.
const pruneBatch = 1000

// PruneSessions deletes expired sessions without orders (their carts and
// idempotency keys go with them, ON DELETE CASCADE) in batches, then
// empties the carts of the expired sessions that remain because orders
// name them.
func (s *Store) PruneSessions(ctx context.Context) (int64, error) {
	now := micros(s.now())
	var total int64
	for {
		tag, err := s.db.primary.Exec(ctx, `DELETE FROM sessions WHERE id IN (
			SELECT s.id FROM sessions s WHERE s.expires_at <= $1
			AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.session_id = s.id) LIMIT $2)`, now, pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune sessions: %w", unavailable(err))
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			break
		}
	}
	if _, err := s.db.primary.Exec(ctx, `DELETE FROM cart_items WHERE session_id IN (
		SELECT id FROM sessions WHERE expires_at <= $1)`, now); err != nil {
		return total, fmt.Errorf("prune carts of expired sessions: %w", unavailable(err))
	}
	return total, nil
}

// --- cart ---

func readCart(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, sessionID int64) ([]shop.CheckoutLine, error) {
	rows, err := q.Query(ctx, `SELECT c.item_id, i.name, c.quantity, i.price_cents, i.available, i.stock
		FROM cart_items c JOIN items i ON i.id = c.item_id
		WHERE c.session_id = $1 ORDER BY c.item_id`, sessionID)
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

// Cart returns the session's cart at current prices. It reads the
// primary: the cart is what the client just changed.
func (s *Store) Cart(ctx context.Context, sessionID int64) (*shop.Cart, error) {
	lines, err := readCart(ctx, s.db.primary, sessionID)
	if err != nil {
		return nil, unavailable(err)
	}
	return shop.CartOf(lines), nil
}

// lockSession serialises the session's cart changes and checkouts: a line
// added while a checkout empties the cart must not be lost, and the cart's
// line limit must hold under concurrent adds.
func lockSession(ctx context.Context, tx pgx.Tx, sessionID int64) error {
	if _, err := tx.Exec(ctx, `SELECT id FROM sessions WHERE id = $1 FOR UPDATE`, sessionID); err != nil {
		return fmt.Errorf("lock session: %w", err)
	}
	return nil
}

// SetCartItem sets an item's quantity in the cart; 0 removes it.
func (s *Store) SetCartItem(ctx context.Context, sessionID, itemID int64, quantity int) (*shop.Cart, error) {
	if err := shop.ValidateQuantity(quantity); err != nil {
		return nil, err
	}
	var lines []shop.CheckoutLine
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockSession(ctx, tx, sessionID); err != nil {
			return err
		}
		if quantity == 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM cart_items WHERE session_id = $1 AND item_id = $2`, sessionID, itemID); err != nil {
				return fmt.Errorf("remove cart item: %w", err)
			}
		} else {
			var available bool
			var name string
			err := tx.QueryRow(ctx, `SELECT name, available FROM items WHERE id = $1`, itemID).Scan(&name, &available)
			if errors.Is(err, pgx.ErrNoRows) {
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
			if err := tx.QueryRow(ctx, `SELECT COUNT(*), COALESCE(bool_or(item_id = $1), FALSE) FROM cart_items WHERE session_id = $2`,
				itemID, sessionID).Scan(&count, &present); err != nil {
				return fmt.Errorf("count cart lines: %w", err)
			}
			if !present && count >= shop.MaxCartLines {
				return shop.Errorf(shop.EUNPROCESSABLE, "a cart holds at most %d different items", shop.MaxCartLines)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO cart_items (session_id, item_id, quantity) VALUES ($1, $2, $3)
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
	if err := s.markWrite(ctx, sessionID); err != nil {
		return nil, err
	}
	return shop.CartOf(lines), nil
}

// ClearCart empties the session's cart.
func (s *Store) ClearCart(ctx context.Context, sessionID int64) error {
	if _, err := s.db.primary.Exec(ctx, `DELETE FROM cart_items WHERE session_id = $1`, sessionID); err != nil {
		return fmt.Errorf("clear cart: %w", unavailable(err))
	}
	return s.markWrite(ctx, sessionID)
}
