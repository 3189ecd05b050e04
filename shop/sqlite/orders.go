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

// InCheckout runs a checkout transaction; see shop.CheckoutStore. The
// write connection is taken with BEGIN IMMEDIATE, so every checkout runs
// alone: two with one idempotency key run one after the other and the
// second finds the first's key.
func (s *Store) InCheckout(ctx context.Context, sessionID int64, key string, fn func(tx shop.CheckoutTx) error) error {
	return s.inTx(ctx, func(tx *sql.Tx) error { return fn(&checkoutTx{tx: tx}) })
}

// checkoutTx is checkout's primitives on one SQLite transaction.
type checkoutTx struct {
	tx *sql.Tx
}

func (c *checkoutTx) IdempotencyKey(ctx context.Context, sessionID int64, key string, since time.Time) (string, int64, bool, error) {
	var hash string
	var orderID int64
	err := c.tx.QueryRowContext(ctx, `SELECT request_hash, order_id FROM idempotency_keys
		WHERE session_id = ? AND key = ? AND created_at > ?`, sessionID, key, micros(since)).Scan(&hash, &orderID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", 0, false, nil
	case err != nil:
		return "", 0, false, fmt.Errorf("read idempotency key: %w", err)
	}
	return hash, orderID, true, nil
}

func (c *checkoutTx) ForgetIdempotencyKey(ctx context.Context, sessionID int64, key string) error {
	if _, err := c.tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE session_id = ? AND key = ?`, sessionID, key); err != nil {
		return fmt.Errorf("drop expired idempotency key: %w", err)
	}
	return nil
}

func (c *checkoutTx) CheckoutCart(ctx context.Context, sessionID int64) ([]shop.CheckoutLine, error) {
	return readCart(ctx, c.tx, sessionID)
}

func (c *checkoutTx) ReserveStock(ctx context.Context, itemID int64, n int) (int64, bool, error) {
	var left int64
	err := c.tx.QueryRowContext(ctx, `UPDATE items SET stock = stock - ?
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
	if err := c.tx.QueryRowContext(ctx, `INSERT INTO orders
		(session_id, status, customer_name, email, notes, total_cents, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		o.SessionID, o.Status, o.CustomerName, o.Email, o.Notes, o.TotalCents,
		micros(o.CreatedAt), micros(o.UpdatedAt)).Scan(&o.ID); err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	if err := insertLines(ctx, c.tx, o); err != nil {
		return err
	}
	return appendOrderEvent(ctx, c.tx, o.ID, o.Status, micros(o.CreatedAt))
}

func (c *checkoutTx) RememberIdempotencyKey(ctx context.Context, sessionID int64, key, hash string, orderID int64, at time.Time) error {
	if _, err := c.tx.ExecContext(ctx, `INSERT INTO idempotency_keys
		(session_id, key, request_hash, order_id, created_at) VALUES (?, ?, ?, ?, ?)`,
		sessionID, key, hash, orderID, micros(at)); err != nil {
		return fmt.Errorf("record idempotency key: %w", err)
	}
	return nil
}

func (c *checkoutTx) EmptyCart(ctx context.Context, sessionID int64) error {
	if _, err := c.tx.ExecContext(ctx, `DELETE FROM cart_items WHERE session_id = ?`, sessionID); err != nil {
		return fmt.Errorf("empty cart: %w", err)
	}
	return nil
}

func (c *checkoutTx) BumpCatalogVersion(ctx context.Context) error { return bumpCatalog(ctx, c.tx) }

// RunInTx runs the caller's work (the job queue's) on the checkout's
// transaction.
func (c *checkoutTx) RunInTx(ctx context.Context, fn func(ctx context.Context, tx shop.Tx) error) error {
	return runInTx(ctx, c.tx, fn)
}

func (c *checkoutTx) Order(ctx context.Context, sessionID, orderID int64) (*shop.Order, error) {
	return readOrder(ctx, c.tx, sessionID, orderID)
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

// AdvanceOrder moves an order from one status to the next and records the
// change in the outbox in the same transaction. It reports false
// (and changes nothing) when the order is no longer in status from, so a
// retried job cannot move an order twice.
func (s *Store) AdvanceOrder(ctx context.Context, orderID int64, from, to shop.Status) (bool, error) {
	return s.advanceOrder(ctx, orderID, from, to, nil)
}

// MarkOrderReady moves an order from confirmed to ready, with its event,
// and runs inTx in the same transaction; see shop.FulfilmentService.
func (s *Store) MarkOrderReady(ctx context.Context, orderID int64, inTx func(ctx context.Context, tx shop.Tx) error) (bool, error) {
	return s.advanceOrder(ctx, orderID, shop.StatusConfirmed, shop.StatusReady, inTx)
}

func (s *Store) advanceOrder(ctx context.Context, orderID int64, from, to shop.Status, inTx func(ctx context.Context, tx shop.Tx) error) (bool, error) {
	if !from.CanMoveTo(to) {
		return false, fmt.Errorf("advance order %d: %s cannot move to %s", orderID, from, to)
	}
	var moved bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if moved, err = advance(ctx, tx, orderID, from, to, micros(s.now())); err != nil {
			return err
		}
		return runInTx(ctx, tx, inTx)
	})
	if err != nil {
		return false, fmt.Errorf("advance order %d to %s: %w", orderID, to, err)
	}
	return moved, nil
}

// ConfirmOrder moves the order placed -> confirmed, records its mail and
// runs inTx, all in one transaction: one commit (one WAL sync) where the
// steps used to take one each. See shop.FulfilmentService.
func (s *Store) ConfirmOrder(ctx context.Context, m shop.Mail, inTx func(ctx context.Context, tx shop.Tx) error) (bool, error) {
	var mailed bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		now := micros(s.now())
		moved, err := advance(ctx, tx, m.OrderID, shop.StatusPlaced, shop.StatusConfirmed, now)
		if err != nil {
			return err
		}
		// The mail goes with the confirmation: a retry that finds the order
		// confirmed finds its mail too. ON CONFLICT keeps the sink at one
		// mail per order all the same.
		if moved {
			res, err := tx.ExecContext(ctx, `INSERT INTO mail_outbox (order_id, to_addr, subject, body, sent_at)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING`,
				m.OrderID, m.To, m.Subject, m.Body, now)
			if err != nil {
				return fmt.Errorf("record mail: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("record mail: %w", err)
			}
			mailed = n == 1
		}
		return runInTx(ctx, tx, inTx)
	})
	if err != nil {
		return false, fmt.Errorf("confirm order %d: %w", m.OrderID, err)
	}
	return mailed, nil
}

// advance moves an order from one status to the next in tx and appends the
// change to the outbox; false (and no change) when it is not in from.
func advance(ctx context.Context, tx *sql.Tx, orderID int64, from, to shop.Status, now int64) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE orders SET status = ?, updated_at = ? WHERE id = ? AND status = ?`,
		to, now, orderID, from)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil || n == 0 {
		return false, err
	}
	// The change and its event commit together (the outbox).
	return true, appendOrderEvent(ctx, tx, orderID, to, now)
}

// runInTx runs a caller's work (the job queue's) on the store's
// transaction; nil is nothing to run.
func runInTx(ctx context.Context, tx *sql.Tx, inTx func(ctx context.Context, tx shop.Tx) error) error {
	if inTx == nil {
		return nil
	}
	return inTx(ctx, tx)
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
