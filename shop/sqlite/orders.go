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

// PlaceOrder turns the session's cart into an order in one transaction; see
// shop.OrderService. The write connection is taken with BEGIN IMMEDIATE, so
// two checkouts with one idempotency key run one after the other and the
// second finds the first's key.
func (s *Store) PlaceOrder(ctx context.Context, p shop.PlaceOrder) (*shop.Order, bool, error) {
	if err := p.Checkout.Validate(); err != nil {
		return nil, false, err
	}
	if err := shop.ValidateIdempotencyKey(p.IdempotencyKey); err != nil {
		return nil, false, err
	}
	if p.RequestHash == "" {
		p.RequestHash = p.Checkout.Fingerprint()
	}
	var order *shop.Order
	created := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		now := s.now()
		// 1. A retry of an earlier checkout gets that checkout's order.
		var hash string
		var earlier int64
		err := tx.QueryRowContext(ctx, `SELECT request_hash, order_id FROM idempotency_keys
			WHERE session_id = ? AND key = ? AND created_at > ?`,
			p.SessionID, p.IdempotencyKey, micros(now.Add(-shop.IdempotencyRetention))).Scan(&hash, &earlier)
		switch {
		case err == nil:
			if hash != p.RequestHash {
				return shop.ErrIdempotencyMismatch
			}
			order, err = readOrder(ctx, tx, p.SessionID, earlier)
			return err
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("read idempotency key: %w", err)
		}
		// A key past its retention may be reused for a new order.
		if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE session_id = ? AND key = ?`,
			p.SessionID, p.IdempotencyKey); err != nil {
			return fmt.Errorf("drop expired idempotency key: %w", err)
		}

		// 2. Re-read the cart at current prices, in one query.
		lines, err := readCart(ctx, tx, p.SessionID)
		if err != nil {
			return err
		}
		if len(lines) == 0 {
			return shop.ErrCartEmpty
		}

		// 3. Reserve stock with conditional updates; collect every shortage
		// so the client can fix the whole cart at once.
		var short []shop.Shortage
		soldOut := false
		for _, l := range lines {
			if !l.available {
				short = append(short, shop.Shortage{ItemID: l.ItemID, Name: l.Name, Requested: l.Quantity, Available: 0})
				continue
			}
			var left int64
			err := tx.QueryRowContext(ctx, `UPDATE items SET stock = stock - ?
				WHERE id = ? AND available AND stock >= ? RETURNING stock`,
				l.Quantity, l.ItemID, l.Quantity).Scan(&left)
			if errors.Is(err, sql.ErrNoRows) {
				short = append(short, shop.Shortage{ItemID: l.ItemID, Name: l.Name, Requested: l.Quantity, Available: l.stock})
				continue
			}
			if err != nil {
				return fmt.Errorf("reserve stock of item %d: %w", l.ItemID, err)
			}
			if left == 0 {
				soldOut = true
			}
		}
		if len(short) > 0 {
			return &shop.OutOfStockError{Items: short}
		}

		// 4. The order and its lines, priced as just read.
		c := p.Checkout
		o := &shop.Order{SessionID: p.SessionID, Status: shop.StatusPlaced, CustomerName: c.CustomerName,
			Email: c.Email, Notes: c.Notes, CreatedAt: now.Truncate(time.Microsecond), UpdatedAt: now.Truncate(time.Microsecond)}
		for _, l := range lines {
			o.Lines = append(o.Lines, shop.OrderLine(l.CartLine))
			o.TotalCents += l.LineTotalCents
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO orders
			(session_id, status, customer_name, email, notes, total_cents, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			o.SessionID, o.Status, o.CustomerName, o.Email, o.Notes, o.TotalCents,
			micros(now), micros(now)).Scan(&o.ID); err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		if err := insertLines(ctx, tx, o); err != nil {
			return err
		}

		// 5. Remember the key, empty the cart, and tell the menu if an item
		// sold out.
		if _, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys
			(session_id, key, request_hash, order_id, created_at) VALUES (?, ?, ?, ?, ?)`,
			p.SessionID, p.IdempotencyKey, p.RequestHash, o.ID, micros(now)); err != nil {
			return fmt.Errorf("record idempotency key: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM cart_items WHERE session_id = ?`, p.SessionID); err != nil {
			return fmt.Errorf("empty cart: %w", err)
		}
		if soldOut {
			if err := bumpCatalog(ctx, tx); err != nil {
				return err
			}
		}

		// 6. The confirmation job commits or rolls back with the order.
		if s.enq != nil {
			if err := s.enq.EnqueueOrderPlaced(ctx, tx, o.ID); err != nil {
				return fmt.Errorf("enqueue confirmation of order %d: %w", o.ID, err)
			}
		}
		order, created = o, true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("place order: %w", err)
	}
	return order, created, nil
}

func insertLines(ctx context.Context, tx *sql.Tx, o *shop.Order) error {
	// One multi-row INSERT rather than a statement per line.
	var b strings.Builder
	args := make([]any, 0, 6*len(o.Lines))
	b.WriteString(`INSERT INTO order_lines (order_id, item_id, name, quantity, unit_price_cents, line_total_cents) VALUES `)
	for i, l := range o.Lines {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?)")
		args = append(args, o.ID, l.ItemID, l.Name, l.Quantity, l.UnitPriceCents, l.LineTotalCents)
	}
	if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
		return fmt.Errorf("insert order lines: %w", err)
	}
	return nil
}

type rowQuerier interface {
	querier
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const orderColumns = `id, session_id, status, customer_name, email, notes, total_cents, created_at, updated_at`

func scanOrder(r scanner) (*shop.Order, error) {
	var o shop.Order
	var created, updated int64
	if err := r.Scan(&o.ID, &o.SessionID, &o.Status, &o.CustomerName, &o.Email, &o.Notes,
		&o.TotalCents, &created, &updated); err != nil {
		return nil, err
	}
	o.CreatedAt, o.UpdatedAt = fromMicros(created), fromMicros(updated)
	o.Lines = []shop.OrderLine{}
	return &o, nil
}

// readOrder reads one order with its lines; sessionID 0 means any session.
func readOrder(ctx context.Context, q rowQuerier, sessionID, orderID int64) (*shop.Order, error) {
	o, err := scanOrder(q.QueryRowContext(ctx, `SELECT `+orderColumns+` FROM orders
		WHERE id = ? AND (? = 0 OR session_id = ?)`, orderID, sessionID, sessionID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, shop.Errorf(shop.ENOTFOUND, "order %d does not exist", orderID)
	}
	if err != nil {
		return nil, fmt.Errorf("read order %d: %w", orderID, err)
	}
	if err := attachLines(ctx, q, []*shop.Order{o}); err != nil {
		return nil, err
	}
	return o, nil
}

// attachLines loads the lines of several orders in one query (no N+1).
func attachLines(ctx context.Context, q querier, orders []*shop.Order) error {
	if len(orders) == 0 {
		return nil
	}
	byID := make(map[int64]*shop.Order, len(orders))
	args := make([]any, 0, len(orders))
	for _, o := range orders {
		byID[o.ID] = o
		args = append(args, o.ID)
	}
	rows, err := q.QueryContext(ctx, `SELECT order_id, item_id, name, quantity, unit_price_cents, line_total_cents
		FROM order_lines WHERE order_id IN (?`+strings.Repeat(", ?", len(orders)-1)+`) ORDER BY order_id, item_id`, args...)
	if err != nil {
		return fmt.Errorf("read order lines: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var l shop.OrderLine
		if err := rows.Scan(&id, &l.ItemID, &l.Name, &l.Quantity, &l.UnitPriceCents, &l.LineTotalCents); err != nil {
			return fmt.Errorf("read order lines: %w", err)
		}
		byID[id].Lines = append(byID[id].Lines, l)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read order lines: %w", err)
	}
	return nil
}

// Order returns one of the session's orders.
func (s *Store) Order(ctx context.Context, sessionID, orderID int64) (*shop.Order, error) {
	if sessionID == 0 {
		return nil, shop.Errorf(shop.ENOTFOUND, "order %d does not exist", orderID)
	}
	return readOrder(ctx, s.db.read, sessionID, orderID)
}

// ListOrders returns the session's orders, newest first, a keyset page.
func (s *Store) ListOrders(ctx context.Context, sessionID int64, f shop.OrderFilter) (*shop.OrderPage, error) {
	if err := f.Normalize(); err != nil {
		return nil, err
	}
	before := f.Before
	if before == 0 {
		before = 1<<63 - 1
	}
	rows, err := s.db.read.QueryContext(ctx, `SELECT `+orderColumns+` FROM orders
		WHERE session_id = ? AND id < ? ORDER BY id DESC LIMIT ?`, sessionID, before, f.Limit+1)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	var orders []*shop.Order
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list orders: %w", err)
		}
		orders = append(orders, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	page := &shop.OrderPage{Orders: []shop.Order{}}
	if len(orders) > f.Limit {
		orders = orders[:f.Limit]
		page.Next = orders[f.Limit-1].ID
	}
	if err := attachLines(ctx, s.db.read, orders); err != nil {
		return nil, err
	}
	for _, o := range orders {
		page.Orders = append(page.Orders, *o)
	}
	return page, nil
}

// --- worker side ---

// OrderByID returns any session's order, for the background worker.
func (s *Store) OrderByID(ctx context.Context, orderID int64) (*shop.Order, error) {
	return readOrder(ctx, s.db.read, 0, orderID)
}

// AdvanceOrder moves an order from one status to the next. It reports false
// (and changes nothing) when the order is no longer in status from, so a
// retried job cannot move an order twice.
func (s *Store) AdvanceOrder(ctx context.Context, orderID int64, from, to shop.Status) (bool, error) {
	if !from.CanMoveTo(to) {
		return false, fmt.Errorf("advance order %d: %s cannot move to %s", orderID, from, to)
	}
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE orders SET status = ?, updated_at = ? WHERE id = ? AND status = ?`,
			to, micros(s.now()), orderID, from)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("advance order %d to %s: %w", orderID, to, err)
	}
	return n == 1, nil
}

// RecordMail puts a confirmation in the mail sink unless one was already
// recorded for the order; it reports whether this call recorded it.
func (s *Store) RecordMail(ctx context.Context, m shop.Mail) (bool, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO mail_outbox (order_id, to_addr, subject, body, sent_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING`,
			m.OrderID, m.To, m.Subject, m.Body, micros(s.now()))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("record mail for order %d: %w", m.OrderID, err)
	}
	return n == 1, nil
}

// Mails returns the mail sink's content in order id order.
func (s *Store) Mails(ctx context.Context) ([]shop.Mail, error) {
	rows, err := s.db.read.QueryContext(ctx, `SELECT order_id, to_addr, subject, body, sent_at FROM mail_outbox ORDER BY order_id`)
	if err != nil {
		return nil, fmt.Errorf("read mails: %w", err)
	}
	defer rows.Close()
	var mails []shop.Mail
	for rows.Next() {
		var m shop.Mail
		var sent int64
		if err := rows.Scan(&m.OrderID, &m.To, &m.Subject, &m.Body, &sent); err != nil {
			return nil, fmt.Errorf("read mails: %w", err)
		}
		m.SentAt = fromMicros(sent)
		mails = append(mails, m)
	}
	return mails, rows.Err()
}

// PruneIdempotencyKeys deletes keys older than the retention window; it
// reports how many it deleted.
func (s *Store) PruneIdempotencyKeys(ctx context.Context) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE created_at <= ?`,
			micros(s.now().Add(-shop.IdempotencyRetention)))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune idempotency keys: %w", err)
	}
	return n, nil
}
