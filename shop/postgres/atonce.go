package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/sqlstore"
)

// A plain checkout in one round trip (shop.CheckoutStore.PlaceAtOnce): two
// statements sent together as one pgx batch, which PostgreSQL runs as one
// implicit transaction ending at the batch's single Sync, so they commit
// together or not at all. The first takes the session's lock (as
// LockSession does for the general path); the second, which starts only
// once the lock is held and so reads the cart as the lock leaves it, does
// the whole checkout with data-modifying CTEs: it locks the cart's items
// in id order (the general path's order, so checkouts never deadlock),
// checks that the checkout is plain (a key not seen before, a cart that is
// not empty, every line available and in stock, the total the customer
// saw) and, only then, takes the stock, writes the order, its lines, its
// first event, the key, the empty cart, the menu's new version when an
// item sold out, and River's job (the row River's InsertTx writes, with its
// insert notification when the queue says one is due). When it is not
// plain, no CTE writes a row and the statement returns none. Each line
// comes back with its item's stock left (a shard's quota, on a shard:
// shop/sharded refills the ones it took to zero).

const lockSession = `SELECT id FROM sessions WHERE id = $1 FOR UPDATE`

// placeAtOnce is the statement, its order's id numbered as one shard of
// several numbers it when sharded.
func placeAtOnce(sharded bool) string {
	return strings.Replace(placeAtOnceText, "{{order_id}}", orderIDAt(sharded, "$5", "$1"), 1)
}

const placeAtOnceText = `WITH locked AS MATERIALIZED (
	SELECT id, name, price_cents, available, stock FROM items
	WHERE id IN (SELECT item_id FROM cart_items WHERE session_id = $1)
	ORDER BY id FOR UPDATE
), cart AS MATERIALIZED (
	SELECT c.item_id, l.name, c.quantity, l.price_cents, c.quantity * l.price_cents AS line_total,
		l.available AND l.stock >= c.quantity AS in_stock
	FROM cart_items c JOIN locked l ON l.id = c.item_id
	WHERE c.session_id = $1
), plain AS MATERIALIZED (
	SELECT count(*) AS lines, sum(line_total)::bigint AS total FROM cart
	HAVING count(*) > 0 AND bool_and(in_stock)
		AND ($4::bigint IS NULL OR sum(line_total) = $4::bigint)
		AND NOT EXISTS (SELECT 1 FROM idempotency_keys WHERE session_id = $1 AND key = $2)
), reserved AS (
	UPDATE items i SET stock = i.stock - c.quantity FROM cart c, plain
	WHERE i.id = c.item_id AND i.available AND i.stock >= c.quantity
	RETURNING i.id, i.stock
), placed AS (
	INSERT INTO orders (id, session_id, status, customer_name, email, notes, total_cents, created_at, updated_at)
	SELECT {{order_id}}, $1, 'placed', $6, $7, $8, total, $5, $5 FROM plain
	RETURNING id
), lines AS (
	INSERT INTO order_lines (order_id, item_id, name, quantity, unit_price_cents, line_total_cents)
	SELECT p.id, c.item_id, c.name, c.quantity, c.price_cents, c.line_total FROM placed p, cart c
	RETURNING order_id, item_id, name, quantity, unit_price_cents, line_total_cents
), placed_event AS (
	INSERT INTO order_events (order_id, seq, status, created_at) SELECT id, 1, 'placed', $5 FROM placed
), remembered AS (
	INSERT INTO idempotency_keys (session_id, key, request_hash, order_id, created_at)
	SELECT $1, $2, $3, id, $5 FROM placed
), emptied AS (
	DELETE FROM cart_items WHERE session_id = $1 AND EXISTS (SELECT 1 FROM placed)
), menu AS (
	UPDATE catalog_version SET version = version + 1
	WHERE id = 1 AND EXISTS (SELECT 1 FROM reserved WHERE stock = 0)
), job AS (
	INSERT INTO river_job (args, created_at, kind, max_attempts, metadata, priority, queue, scheduled_at, state, tags)
	SELECT jsonb_build_object($10::text, id), now(), $9::text, $13::smallint, '{}'::jsonb, $12::smallint, $11::text,
		now(), 'available'::river_job_state, '{}'::varchar(255)[]
	FROM placed WHERE $9::text IS NOT NULL
), woken AS MATERIALIZED (
	SELECT pg_notify(current_schema() || '.' || $14::text, $15::text) FROM placed WHERE $14::text IS NOT NULL
)
SELECT l.order_id, l.item_id, l.name, l.quantity, l.unit_price_cents, l.line_total_cents,
	CASE WHEN (SELECT count(*) FROM reserved) = (SELECT lines FROM plain) THEN (SELECT count(*) FROM woken)
		ELSE checkout_stock_moved() END,
	(SELECT r.stock FROM reserved r WHERE r.id = l.item_id)
FROM lines l ORDER BY l.item_id`

// PlaceAtOnce places a plain checkout in one round trip; nil when it was
// not plain (nothing written) or lost a race it cannot decide (the general
// path decides).
func (f flowDB) PlaceAtOnce(ctx context.Context, c shop.AtOnce) (*shop.Order, error) {
	at := sqlstore.Micros(c.Now)
	// Plain values or nil, no pointers: the EXPLAIN tests write the
	// arguments into the statement's text.
	var expected any
	if e := c.Checkout.ExpectedTotalCents; e != nil {
		expected = *e
	}
	args := []any{c.SessionID, c.IdempotencyKey, c.RequestHash, expected, at,
		c.Checkout.CustomerName, c.Checkout.Email, c.Checkout.Notes}
	if j := c.Job; j != nil {
		var topic, payload any
		if j.NotifyTopic != "" {
			topic, payload = j.NotifyTopic, j.NotifyPayload
		}
		args = append(args, j.Kind, j.ArgName, j.Queue, j.Priority, j.MaxAttempts, topic, payload)
	} else {
		args = append(args, nil, nil, nil, nil, nil, nil, nil)
	}
	b := &pgx.Batch{}
	b.Queue(lockSession, c.SessionID)
	b.Queue(f.atOnce, args...)
	o := &shop.Order{SessionID: c.SessionID, Status: shop.StatusPlaced, CustomerName: c.Checkout.CustomerName,
		Email: c.Checkout.Email, Notes: c.Checkout.Notes, CreatedAt: c.Now, UpdatedAt: c.Now}
	var emptied []int64
	err := f.db.sendBatch(ctx, b, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("lock session: %w", err)
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l shop.OrderLine
			var woken, left int64
			if err := rows.Scan(&o.ID, &l.ItemID, &l.Name, &l.Quantity, &l.UnitPriceCents, &l.LineTotalCents, &woken, &left); err != nil {
				return err
			}
			if left == 0 {
				emptied = append(emptied, l.ItemID)
			}
			o.Lines = append(o.Lines, l)
			o.TotalCents += l.LineTotalCents
		}
		return rows.Err()
	})
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01" || pgErr.Code == "23505"):
		return nil, nil // undone; the general path decides under its own locks
	case err != nil:
		return nil, fmt.Errorf("checkout at once: %w", unavailable(err))
	case len(o.Lines) == 0:
		return nil, nil
	}
	o.SoldOut = len(emptied) > 0
	if c.Emptied != nil {
		for _, item := range emptied {
			c.Emptied(item)
		}
	}
	return o, nil
}

// sendBatch sends b to the primary in one round trip and hands its results
// to read. The batch's statements run as one implicit transaction that
// commits at its end unless one of them fails on the server (then none
// is kept); what read does with the results does not change that.
func (db *DB) sendBatch(ctx context.Context, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	return sendBatchOn(ctx, db.primary, b, read)
}

// batchSender is a pool, or one connection held across batches.
type batchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// sendBatchOn is sendBatch on s.
func sendBatchOn(ctx context.Context, s batchSender, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	br := s.SendBatch(ctx, b)
	err := read(br)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}
