package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/perfscale/perfscale/shop"
)

// A cart change in one round trip (sqlstore.CartAtOnceDB): the session's
// lock and one statement sent together as one pgx batch, one implicit
// transaction that commits at the batch's single Sync, where the general
// way (sqlstore's SetCartItem) takes six round trips: begin, the lock, the
// item with the cart's line counts, the upsert, the cart's read and
// commit. The statement starts once the lock is held, so it sees the cart
// as the lock leaves it (as the checkout at once does). It writes the
// line only when the change is plain: the item exists and is available,
// and the cart has the item already or room for one more; then it returns
// the cart as it is after the write (the other lines, and the written one
// from the insert's RETURNING: a statement does not see its own writes).
// Anything else writes nothing and returns no row, and the general way
// decides it and says why.
//
// The line is written only while the session is there: no foreign key
// checks it (migration 00024), and the statement's snapshot, taken once
// the lock is held, sees a session pruned before it (the lock then found
// no row, and the general way refuses the change).
const putCartItemAtOnce = `WITH item AS (
	SELECT id FROM items WHERE id = $2 AND available AND EXISTS (SELECT 1 FROM sessions WHERE id = $1)
), counted AS (
	SELECT count(*) AS lines, count(*) FILTER (WHERE item_id = $2) AS with_item
	FROM cart_items WHERE session_id = $1
), put AS (
	INSERT INTO cart_items (session_id, item_id, quantity)
	SELECT $1, item.id, $3 FROM item, counted WHERE counted.with_item > 0 OR counted.lines < $4
	ON CONFLICT (session_id, item_id) DO UPDATE SET quantity = excluded.quantity
	RETURNING item_id, quantity
)
SELECT c.item_id, i.name, c.quantity, i.price_cents, i.available, i.stock
FROM (
	SELECT item_id, quantity FROM cart_items
	WHERE session_id = $1 AND item_id <> $2 AND EXISTS (SELECT 1 FROM put)
	UNION ALL
	SELECT item_id, quantity FROM put
) c JOIN items i ON i.id = c.item_id
ORDER BY c.item_id`

// PutCartItemAtOnce sets a plain cart change in one round trip and
// returns the cart's lines; nil when it was not plain (nothing written:
// the general way decides).
func (f flowDB) PutCartItemAtOnce(ctx context.Context, sessionID, itemID int64, quantity int) ([]shop.CheckoutLine, error) {
	b := &pgx.Batch{}
	b.Queue(lockSession, sessionID)
	b.Queue(putCartItemAtOnce, sessionID, itemID, quantity, shop.MaxCartLines)
	var lines []shop.CheckoutLine
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
			var l shop.CheckoutLine
			if err := rows.Scan(&l.ItemID, &l.Name, &l.Quantity, &l.UnitPriceCents, &l.Available, &l.Stock); err != nil {
				return err
			}
			l.LineTotalCents = l.UnitPriceCents * int64(l.Quantity)
			lines = append(lines, l)
		}
		return rows.Err()
	})
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		return nil, nil // undone; the general way decides, and reports what it finds
	case err != nil:
		return nil, fmt.Errorf("cart change at once: %w", unavailable(err))
	}
	return lines, nil
}
