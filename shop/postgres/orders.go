package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
)

// InCheckout runs a checkout transaction; see shop.CheckoutStore. Checkouts
// run in parallel; the session's row lock serialises the ones of one
// session (and so those sharing a key, which is per session) with each
// other and with its cart changes. Stock is reserved by conditional
// updates in item id order, so two checkouts never deadlock and a unit is
// never sold twice.
func (s *Store) InCheckout(ctx context.Context, sessionID int64, key string, fn func(tx shop.CheckoutTx) error) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockSession(ctx, tx, sessionID); err != nil {
			return err
		}
		return fn(&checkoutTx{tx: tx})
	})
	if err != nil {
		return err
	}
	// The client is told its order exists: its reads must find it.
	return s.markWrite(ctx, sessionID)
}

// checkoutTx is checkout's primitives on one PostgreSQL transaction.
type checkoutTx struct {
	tx pgx.Tx
}

func (c *checkoutTx) IdempotencyKey(ctx context.Context, sessionID int64, key string, since time.Time) (string, int64, bool, error) {
	var hash string
	var orderID int64
	err := c.tx.QueryRow(ctx, `SELECT request_hash, order_id FROM idempotency_keys
		WHERE session_id = $1 AND key = $2 AND created_at > $3`, sessionID, key, micros(since)).Scan(&hash, &orderID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", 0, false, nil
	case err != nil:
		return "", 0, false, fmt.Errorf("read idempotency key: %w", err)
	}
	return hash, orderID, true, nil
}

func (c *checkoutTx) ForgetIdempotencyKey(ctx context.Context, sessionID int64, key string) error {
	if _, err := c.tx.Exec(ctx, `DELETE FROM idempotency_keys WHERE session_id = $1 AND key = $2`, sessionID, key); err != nil {
		return fmt.Errorf("drop expired idempotency key: %w", err)
	}
	return nil
}

func (c *checkoutTx) CheckoutCart(ctx context.Context, sessionID int64) ([]shop.CheckoutLine, error) {
	return readCart(ctx, c.tx, sessionID)
}

func (c *checkoutTx) ReserveStock(ctx context.Context, itemID int64, n int) (int64, bool, error) {
	var left int64
	err := c.tx.QueryRow(ctx, `UPDATE items SET stock = stock - $1
		WHERE id = $2 AND available AND stock >= $1 RETURNING stock`, n, itemID).Scan(&left)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("reserve stock of item %d: %w", itemID, err)
	}
	return left, true, nil
}

func (c *checkoutTx) InsertOrder(ctx context.Context, o *shop.Order) error {
	if err := c.tx.QueryRow(ctx, `INSERT INTO orders
		(session_id, status, customer_name, email, notes, total_cents, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		o.SessionID, o.Status, o.CustomerName, o.Email, o.Notes, o.TotalCents,
		micros(o.CreatedAt), micros(o.UpdatedAt)).Scan(&o.ID); err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	// One statement for every line: arrays unnested, not a statement each.
	n := len(o.Lines)
	items, names, qtys, units, totals := make([]int64, n), make([]string, n), make([]int32, n), make([]int64, n), make([]int64, n)
	for i, l := range o.Lines {
		items[i], names[i], qtys[i], units[i], totals[i] = l.ItemID, l.Name, int32(l.Quantity), l.UnitPriceCents, l.LineTotalCents
	}
	if _, err := c.tx.Exec(ctx, `INSERT INTO order_lines (order_id, item_id, name, quantity, unit_price_cents, line_total_cents)
		SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::int[], $5::bigint[], $6::bigint[])`,
		o.ID, items, names, qtys, units, totals); err != nil {
		return fmt.Errorf("insert order lines: %w", err)
	}
	return appendOrderEvent(ctx, c.tx, o.ID, o.Status, micros(o.CreatedAt))
}

func (c *checkoutTx) RememberIdempotencyKey(ctx context.Context, sessionID int64, key, hash string, orderID int64, at time.Time) error {
	if _, err := c.tx.Exec(ctx, `INSERT INTO idempotency_keys
		(session_id, key, request_hash, order_id, created_at) VALUES ($1, $2, $3, $4, $5)`,
		sessionID, key, hash, orderID, micros(at)); err != nil {
		return fmt.Errorf("record idempotency key: %w", err)
	}
	return nil
}

func (c *checkoutTx) EmptyCart(ctx context.Context, sessionID int64) error {
	if _, err := c.tx.Exec(ctx, `DELETE FROM cart_items WHERE session_id = $1`, sessionID); err != nil {
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

type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const orderColumns = `id, session_id, status, customer_name, email, notes, total_cents, created_at, updated_at`

func scanOrder(r pgx.Row) (*shop.Order, error) {
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
func readOrder(ctx context.Context, q queryer, sessionID, orderID int64) (*shop.Order, error) {
	var row pgx.Row
	if sessionID == 0 {
		row = q.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1`, orderID)
	} else {
		row = q.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1 AND session_id = $2`, orderID, sessionID)
	}
	o, err := scanOrder(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, shop.Errorf(shop.ENOTFOUND, "order %d does not exist", orderID)
	}
	if err != nil {
		return nil, fmt.Errorf("read order %d: %w", orderID, unavailable(err))
	}
	if err := attachLines(ctx, q, []*shop.Order{o}); err != nil {
		return nil, err
	}
	return o, nil
}

// attachLines loads the lines of several orders in one query (no N+1).
func attachLines(ctx context.Context, q queryer, orders []*shop.Order) error {
	if len(orders) == 0 {
		return nil
	}
	byID := make(map[int64]*shop.Order, len(orders))
	ids := make([]int64, 0, len(orders))
	for _, o := range orders {
		byID[o.ID] = o
		ids = append(ids, o.ID)
	}
	rows, err := q.Query(ctx, `SELECT order_id, item_id, name, quantity, unit_price_cents, line_total_cents
		FROM order_lines WHERE order_id = ANY($1) ORDER BY order_id, item_id`, ids)
	if err != nil {
		return fmt.Errorf("read order lines: %w", unavailable(err))
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
		return fmt.Errorf("read order lines: %w", unavailable(err))
	}
	return nil
}

// Order returns one of the session's orders.
func (s *Store) Order(ctx context.Context, sessionID, orderID int64) (*shop.Order, error) {
	if sessionID == 0 {
		return nil, shop.Errorf(shop.ENOTFOUND, "order %d does not exist", orderID)
	}
	q, release, err := s.sessionReader(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	defer release()
	return readOrder(ctx, q, sessionID, orderID)
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
	q, release, err := s.sessionReader(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	defer release()
	rows, err := q.Query(ctx, `SELECT `+orderColumns+` FROM orders
		WHERE session_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`, sessionID, before, f.Limit+1)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", unavailable(err))
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
		return nil, fmt.Errorf("list orders: %w", unavailable(err))
	}
	page := &shop.OrderPage{Orders: []shop.Order{}}
	if len(orders) > f.Limit {
		orders = orders[:f.Limit]
		page.Next = orders[f.Limit-1].ID
	}
	if err := attachLines(ctx, q, orders); err != nil {
		return nil, err
	}
	for _, o := range orders {
		page.Orders = append(page.Orders, *o)
	}
	return page, nil
}

// --- worker side ---

// OrderByID returns any session's order, for the background worker. It
// reads the primary: the job may run a moment after the checkout committed.
func (s *Store) OrderByID(ctx context.Context, orderID int64) (*shop.Order, error) {
	return readOrder(ctx, s.db.primary, 0, orderID)
}

// AdvanceOrder moves an order from one status to the next. It reports false
// (and changes nothing) when the order is no longer in status from.
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
	err := s.inTx(ctx, func(tx pgx.Tx) error {
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
// runs inTx, all in one transaction: one commit where the steps used to
// take one each. See shop.FulfilmentService.
func (s *Store) ConfirmOrder(ctx context.Context, m shop.Mail, inTx func(ctx context.Context, tx shop.Tx) error) (bool, error) {
	var mailed bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		now := micros(s.now())
		moved, err := advance(ctx, tx, m.OrderID, shop.StatusPlaced, shop.StatusConfirmed, now)
		if err != nil {
			return err
		}
		// The mail goes with the confirmation: a retry that finds the order
		// confirmed finds its mail too. ON CONFLICT keeps the sink at one
		// mail per order all the same.
		if moved {
			tag, err := tx.Exec(ctx, `INSERT INTO mail_outbox (order_id, to_addr, subject, body, sent_at)
				VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING`,
				m.OrderID, m.To, m.Subject, m.Body, now)
			if err != nil {
				return fmt.Errorf("record mail: %w", err)
			}
			mailed = tag.RowsAffected() == 1
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
func advance(ctx context.Context, tx pgx.Tx, orderID int64, from, to shop.Status, now int64) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE orders SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4`,
		to, now, orderID, from)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	// The change and its event commit together (the outbox).
	return true, appendOrderEvent(ctx, tx, orderID, to, now)
}

// runInTx runs a caller's work (the job queue's) on the store's
// transaction; nil is nothing to run.
func runInTx(ctx context.Context, tx pgx.Tx, inTx func(ctx context.Context, tx shop.Tx) error) error {
	if inTx == nil {
		return nil
	}
	return inTx(ctx, tx)
}

// Mails returns the mail sink's content in order id order.
func (s *Store) Mails(ctx context.Context) ([]shop.Mail, error) {
	rows, err := s.db.primary.Query(ctx, `SELECT order_id, to_addr, subject, body, sent_at FROM mail_outbox ORDER BY order_id`)
	if err != nil {
		return nil, fmt.Errorf("read mails: %w", unavailable(err))
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
	return mails, unavailable(rows.Err())
}

// PruneIdempotencyKeys deletes keys older than the retention window; it
// reports how many it deleted.
func (s *Store) PruneIdempotencyKeys(ctx context.Context) (int64, error) {
	tag, err := s.db.primary.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at <= $1`,
		micros(s.now().Add(-shop.IdempotencyRetention)))
	if err != nil {
		return 0, fmt.Errorf("prune idempotency keys: %w", unavailable(err))
	}
	return tag.RowsAffected(), nil
}
