package sqlstore

import (
	"context"
	"fmt"

	"github.com/perfscale/perfscale/shop"
)

const orderColumns = `id, session_id, status, customer_name, email, notes, total_cents, created_at, updated_at`

func scanOrder(r Row, o *shop.Order) error {
	if err := r.Scan(&o.ID, &o.SessionID, &o.Status, &o.CustomerName, &o.Email, &o.Notes,
		&o.TotalCents, microsTime{&o.CreatedAt}, microsTime{&o.UpdatedAt}); err != nil {
		return err
	}
	o.Lines = []shop.OrderLine{}
	return nil
}

// orderWithLines selects orders (aliased o) with their lines, one row a
// line: an order and its lines in one statement (on PostgreSQL one
// transaction, where a read of the order and one of its lines were two).
// Every order has lines (checkout refuses an empty cart); a line's item
// id is 0 only where the outer join found none.
const orderWithLines = `SELECT o.id, o.session_id, o.status, o.customer_name, o.email, o.notes,
	o.total_cents, o.created_at, o.updated_at, COALESCE(l.item_id, 0), COALESCE(l.name, ''),
	COALESCE(l.quantity, 0), COALESCE(l.unit_price_cents, 0), COALESCE(l.line_total_cents, 0)`

// scanOrdersWithLines reads rows of orderWithLines, ordered by order, into
// orders, each with its lines in the rows' order.
func scanOrdersWithLines(rows Rows) ([]shop.Order, error) {
	defer rows.Close()
	var row Row = rows
	orders := []shop.Order{}
	var id int64
	var l shop.OrderLine
	for rows.Next() {
		var o shop.Order
		if err := row.Scan(&id, &o.SessionID, &o.Status, &o.CustomerName, &o.Email, &o.Notes, &o.TotalCents,
			microsTime{&o.CreatedAt}, microsTime{&o.UpdatedAt},
			&l.ItemID, &l.Name, &l.Quantity, &l.UnitPriceCents, &l.LineTotalCents); err != nil {
			return nil, err
		}
		if n := len(orders); n == 0 || orders[n-1].ID != id {
			o.ID = id
			o.Lines = []shop.OrderLine{}
			orders = append(orders, o)
		}
		if l.ItemID != 0 {
			last := &orders[len(orders)-1]
			last.Lines = append(last.Lines, l)
		}
	}
	return orders, rows.Err()
}

// readOrder reads one order with its lines; sessionID 0 means any session.
func (s *Store) readOrder(ctx context.Context, q Querier, sessionID, orderID int64) (*shop.Order, error) {
	query, args := orderRead(sessionID, orderID)
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read order %d: %w", orderID, err)
	}
	return scanOneOrder(rows, orderID)
}

// orderRead is readOrder's statement and its arguments.
func orderRead(sessionID, orderID int64) (string, []any) {
	if sessionID == 0 {
		return orderWithLines + ` FROM orders o LEFT JOIN order_lines l ON l.order_id = o.id
			WHERE o.id = ? ORDER BY l.item_id`, []any{orderID}
	}
	return orderWithLines + ` FROM orders o LEFT JOIN order_lines l ON l.order_id = o.id
			WHERE o.id = ? AND o.session_id = ? ORDER BY l.item_id`, []any{orderID, sessionID}
}

// scanOneOrder reads the rows of orderRead; ENOTFOUND when there are none.
func scanOneOrder(rows Rows, orderID int64) (*shop.Order, error) {
	orders, err := scanOrdersWithLines(rows)
	if err != nil {
		return nil, fmt.Errorf("read order %d: %w", orderID, err)
	}
	if len(orders) == 0 {
		return nil, shop.Errorf(shop.ENOTFOUND, "order %d does not exist", orderID)
	}
	return &orders[0], nil
}

// Order returns one of the session's orders.
func (s *Store) Order(ctx context.Context, sessionID, orderID int64) (*shop.Order, error) {
	if sessionID == 0 {
		return nil, shop.Errorf(shop.ENOTFOUND, "order %d does not exist", orderID)
	}
	q, release, err := s.db.SessionReader(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	defer release()
	return s.readOrder(ctx, q, sessionID, orderID)
}

// ListOrders returns the session's orders, newest first, a keyset page.
func (s *Store) ListOrders(ctx context.Context, sessionID int64, f shop.OrderFilter) (*shop.OrderPage, error) {
	if err := f.Normalize(); err != nil {
		return nil, err
	}
	q, release, err := s.db.SessionReader(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	defer release()
	// The page of orders and their lines in one statement, the lines
	// joined as the dialect says (PostgreSQL: order by order).
	// The first page has no upper bound on id, not even the largest id:
	// on PostgreSQL a generic plan prices a range of ids at a two
	// hundredth of a partition, so on a partition a few hundred orders
	// old the primary key, read backward with session_id as a filter,
	// looks as cheap as the session's index and was taken, reading every
	// order of the month (docs/postgres.md); bounded below only, it
	// prices the key's scan at a third of the partition, and the
	// session's index wins. A later page's cursor is the dialect's, for
	// the same reason (on PostgreSQL a row comparison, not "id < ?").
	cursor, args := "", []any{sessionID}
	if f.Before != 0 {
		var cursorArgs []any
		cursor, cursorArgs = s.dialect.OrdersBefore(sessionID, f.Before)
		args = append(args, cursorArgs...)
	}
	bound, boundArgs := s.dialect.SessionOrders(sessionID)
	args = append(append(args, boundArgs...), f.Limit+1)
	rows, err := q.Query(ctx, `WITH page AS (SELECT `+orderColumns+` FROM orders
			WHERE session_id = ?`+cursor+bound+` ORDER BY id DESC LIMIT ?) `+
		orderWithLines+` FROM page o `+s.dialect.JoinOrderLines("o", "l")+` ORDER BY o.id DESC, l.item_id`,
		args...)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	orders, err := scanOrdersWithLines(rows)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	page := &shop.OrderPage{Orders: orders}
	if len(orders) > f.Limit {
		page.Orders = orders[:f.Limit]
		page.Next = page.Orders[f.Limit-1].ID
	}
	return page, nil
}

// --- worker side ---

// OrderByID returns any session's order, for the background worker. It
// reads fresh: the job may run a moment after the checkout committed.
func (s *Store) OrderByID(ctx context.Context, orderID int64) (*shop.Order, error) {
	return s.readOrder(ctx, s.db.Fresh(), 0, orderID)
}

// AdvanceOrder moves an order from one status to the next and records the
// change in the outbox in the same transaction. It reports false (and
// changes nothing) when the order is no longer in status from, so a
// retried job cannot move an order twice.
func (s *Store) AdvanceOrder(ctx context.Context, orderID int64, from, to shop.Status) (bool, error) {
	return s.advanceOrder(ctx, orderID, from, to, nil)
}

// MarkOrderReady moves an order from confirmed to ready, with its event,
// and runs inTx in the same transaction; see shop.FulfilmentService.
func (s *Store) MarkOrderReady(ctx context.Context, orderID int64, inTx func(ctx context.Context, tx shop.Tx) error) (bool, error) {
	return s.advanceOrder(ctx, orderID, shop.StatusConfirmed, shop.StatusReady, inTx)
}

// ReadyAtOnceDB is a database that moves an order from confirmed to
// ready, appends its event and completes the queue's job in one statement
// outside any transaction (one round trip, one commit); false, and the
// order unchanged, when it was not confirmed (the job is completed all
// the same).
type ReadyAtOnceDB interface {
	MarkReadyAtOnce(ctx context.Context, orderID int64, at int64, done shop.JobDone) (bool, error)
}

// MarkOrderReadyAtOnce is the step to ready in one statement where the
// database can (ReadyAtOnceDB); see shop.FulfilmentService.
func (s *Store) MarkOrderReadyAtOnce(ctx context.Context, orderID int64, done shop.JobDone) (bool, error) {
	db, ok := s.db.(ReadyAtOnceDB)
	if !ok {
		return false, nil
	}
	if _, err := db.MarkReadyAtOnce(ctx, orderID, Micros(s.now()), done); err != nil {
		return true, fmt.Errorf("advance order %d to %s: %w", orderID, shop.StatusReady, err)
	}
	return true, nil
}

func (s *Store) advanceOrder(ctx context.Context, orderID int64, from, to shop.Status, inTx func(ctx context.Context, tx shop.Tx) error) (bool, error) {
	if !from.CanMoveTo(to) {
		return false, fmt.Errorf("advance order %d: %s cannot move to %s", orderID, from, to)
	}
	var moved bool
	err := s.db.InTx(ctx, func(tx Tx) error {
		var err error
		if moved, err = s.advance(ctx, tx, orderID, from, to, Micros(s.now())); err != nil {
			return err
		}
		return runInTx(ctx, tx, inTx)
	})
	if err != nil {
		return false, fmt.Errorf("advance order %d to %s: %w", orderID, to, err)
	}
	return moved, nil
}

// ConfirmOrder reads the order, moves it placed -> confirmed, records its
// mail and runs inTx, all in one transaction: one commit (on SQLite one
// WAL sync) where the steps used to take one each, the read included.
// See shop.FulfilmentService.
func (s *Store) ConfirmOrder(ctx context.Context, orderID int64, mail func(*shop.Order) shop.Mail, inTx func(ctx context.Context, tx shop.Tx) error) (bool, error) {
	var mailed bool
	err := s.db.InTx(ctx, func(tx Tx) error {
		now := Micros(s.now())
		o, moved, err := s.readThenConfirm(ctx, tx, orderID, now)
		if err != nil {
			return err
		}
		// The mail goes with the confirmation: a retry that finds the order
		// confirmed finds its mail too. ON CONFLICT keeps the sink at one
		// mail per order all the same.
		if moved {
			m := mail(o)
			n, err := tx.Exec(ctx, `INSERT INTO mail_outbox (order_id, to_addr, subject, body, sent_at)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING`,
				orderID, m.To, m.Subject, m.Body, now)
			if err != nil {
				return fmt.Errorf("record mail: %w", err)
			}
			mailed = n == 1
		}
		return runInTx(ctx, tx, inTx)
	})
	if err != nil {
		return false, fmt.Errorf("confirm order %d: %w", orderID, err)
	}
	return mailed, nil
}

// ConfirmAtOnceDB is a database that confirms an order in two round trips
// of one transaction (shop.FulfilmentService.ConfirmOrderAtOnce): the
// first sends Read, whose rows Compose reads into the mail to record (nil:
// the order is not placed, nothing to mail); the second moves the order
// from placed to confirmed at At with its event and that mail, writes
// c.Next, completes c.Done, and commits.
type ConfirmAtOnceDB interface {
	ConfirmAtOnce(ctx context.Context, c ConfirmStep) (shop.ConfirmedAtOnce, error)
}

// ConfirmStep is a confirmation as a ConfirmAtOnceDB takes it.
type ConfirmStep struct {
	shop.ConfirmAtOnce
	At       int64
	Read     string
	ReadArgs []any
	Compose  func(Rows) (*shop.Mail, error)
}

// ConfirmOrderAtOnce is the confirmation in two round trips where the
// database can (ConfirmAtOnceDB); see shop.FulfilmentService.
func (s *Store) ConfirmOrderAtOnce(ctx context.Context, c shop.ConfirmAtOnce) (shop.ConfirmedAtOnce, error) {
	db, ok := s.db.(ConfirmAtOnceDB)
	if !ok {
		return shop.ConfirmedAtOnce{}, nil
	}
	query, args := orderRead(0, c.OrderID)
	done, err := db.ConfirmAtOnce(ctx, ConfirmStep{ConfirmAtOnce: c, At: Micros(s.now()), Read: query, ReadArgs: args,
		Compose: func(rows Rows) (*shop.Mail, error) {
			o, err := scanOneOrder(rows, c.OrderID)
			if err != nil || o.Status != shop.StatusPlaced {
				return nil, err
			}
			m := c.Mail(o)
			return &m, nil
		}})
	if err != nil {
		return shop.ConfirmedAtOnce{Handled: true}, fmt.Errorf("confirm order %d: %w", c.OrderID, err)
	}
	return done, nil
}

// AdvanceAtOnceDB is a database that, inside a write transaction, moves an
// order from one status to the next and appends the change's event in one
// statement, where the general way sends two (the update, then the event
// when it moved): false, and nothing written, when the order is not in
// from. A DB without it sends two.
type AdvanceAtOnceDB interface {
	AdvanceAtOnce(ctx context.Context, tx Tx, orderID int64, from, to shop.Status, at int64) (bool, error)
	// ReadThenAdvanceAtOnce sends a read (query and args; scan takes its
	// rows) and then AdvanceAtOnce's statement together in one round trip
	// on tx: the read sees what it would have seen sent alone, before the
	// move. An error from the read or scan is returned.
	ReadThenAdvanceAtOnce(ctx context.Context, tx Tx, query string, args []any, scan func(Rows) error, orderID int64, from, to shop.Status, at int64) (bool, error)
}

// readThenConfirm reads the order in tx and then moves it from placed to
// confirmed with its event: the read sees the order as it was before the
// move. A database that moves at once (AdvanceAtOnceDB) gets both in one
// round trip. ENOTFOUND, and nothing moved, when there is no such order.
func (s *Store) readThenConfirm(ctx context.Context, tx Tx, orderID int64, now int64) (*shop.Order, bool, error) {
	db, ok := s.db.(AdvanceAtOnceDB)
	if !ok {
		o, err := s.readOrder(ctx, tx, 0, orderID)
		if err != nil {
			return nil, false, err
		}
		moved, err := s.advance(ctx, tx, orderID, shop.StatusPlaced, shop.StatusConfirmed, now)
		return o, moved, err
	}
	var o *shop.Order
	query, args := orderRead(0, orderID)
	moved, err := db.ReadThenAdvanceAtOnce(ctx, tx, query, args, func(rows Rows) error {
		var err error
		o, err = scanOneOrder(rows, orderID)
		return err
	}, orderID, shop.StatusPlaced, shop.StatusConfirmed, now)
	if err != nil {
		return nil, false, err
	}
	return o, moved, nil
}

// advance moves an order from one status to the next in tx and appends the
// change to the outbox; false (and no change) when it is not in from.
func (s *Store) advance(ctx context.Context, tx Tx, orderID int64, from, to shop.Status, now int64) (bool, error) {
	if db, ok := s.db.(AdvanceAtOnceDB); ok {
		return db.AdvanceAtOnce(ctx, tx, orderID, from, to, now)
	}
	n, err := tx.Exec(ctx, `UPDATE orders SET status = ?, updated_at = ? WHERE id = ? AND status = ?`,
		to, now, orderID, from)
	if err != nil || n == 0 {
		return false, err
	}
	// The change and its event commit together (the outbox).
	return true, appendOrderEvent(ctx, tx, orderID, to, now)
}

// runInTx runs a caller's work (the job queue's) on the store's
// transaction; nil is nothing to run.
func runInTx(ctx context.Context, tx Tx, inTx func(ctx context.Context, tx shop.Tx) error) error {
	if inTx == nil {
		return nil
	}
	return inTx(ctx, tx.Driver())
}

func scanMail(r Row, m *shop.Mail) error {
	return r.Scan(&m.OrderID, &m.To, &m.Subject, &m.Body, microsTime{&m.SentAt})
}

// Mails returns the mail sink's content in order id order.
func (s *Store) Mails(ctx context.Context) ([]shop.Mail, error) {
	mails, err := query(ctx, s.db.Fresh(), scanMail,
		`SELECT order_id, to_addr, subject, body, sent_at FROM mail_outbox ORDER BY order_id`)
	if err != nil {
		return nil, fmt.Errorf("read mails: %w", err)
	}
	return mails, nil
}

// PruneIdempotencyKeys deletes keys older than the retention window; it
// reports how many it deleted.
func (s *Store) PruneIdempotencyKeys(ctx context.Context) (int64, error) {
	n, err := s.db.Writer().Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at <= ?`,
		Micros(s.now().Add(-shop.IdempotencyRetention)))
	if err != nil {
		return 0, fmt.Errorf("prune idempotency keys: %w", err)
	}
	return n, nil
}
