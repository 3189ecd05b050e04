package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
)

// appendOrderEvent records an order's status change in the outbox, in the
// transaction that made the change (which holds the order's row lock, so
// seq cannot be taken twice); its seq is one past the order's last.
func appendOrderEvent(ctx context.Context, tx pgx.Tx, orderID int64, status shop.Status, at int64) error {
	if _, err := tx.Exec(ctx, `INSERT INTO order_events (order_id, seq, status, created_at)
		VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM order_events WHERE order_id = $1), $2, $3)`,
		orderID, status, at); err != nil {
		return fmt.Errorf("record %s event of order %d: %w", status, orderID, err)
	}
	return nil
}

func scanEvents(rows pgx.Rows) ([]shop.OrderEvent, error) {
	defer rows.Close()
	events := []shop.OrderEvent{}
	for rows.Next() {
		var e shop.OrderEvent
		var at int64
		if err := rows.Scan(&e.ID, &e.OrderID, &e.Seq, &e.Status, &at); err != nil {
			return nil, err
		}
		e.At = fromMicros(at)
		events = append(events, e)
	}
	return events, unavailable(rows.Err())
}

// UnpublishedOrderEvents returns up to limit events the relay has not
// published, in outbox order.
func (s *Store) UnpublishedOrderEvents(ctx context.Context, limit int) ([]shop.OrderEvent, error) {
	rows, err := s.db.primary.Query(ctx, `SELECT id, order_id, seq, status, created_at FROM order_events
		WHERE published_at IS NULL ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("read unpublished order events: %w", unavailable(err))
	}
	events, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("read unpublished order events: %w", err)
	}
	return events, nil
}

// MarkOrderEventsPublished stamps the events published.
func (s *Store) MarkOrderEventsPublished(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.db.primary.Exec(ctx, `UPDATE order_events SET published_at = $1
		WHERE published_at IS NULL AND id = ANY($2)`, micros(s.now()), ids); err != nil {
		return fmt.Errorf("mark %d order events published: %w", len(ids), unavailable(err))
	}
	return nil
}

// OrderEvents returns the events of the session's order after seq after.
func (s *Store) OrderEvents(ctx context.Context, sessionID, orderID, after int64) ([]shop.OrderEvent, error) {
	rows, err := s.db.primary.Query(ctx, `SELECT e.id, e.order_id, e.seq, e.status, e.created_at
		FROM order_events e JOIN orders o ON o.id = e.order_id
		WHERE e.order_id = $1 AND o.session_id = $2 AND e.seq > $3 ORDER BY e.seq`, orderID, sessionID, after)
	if err != nil {
		return nil, fmt.Errorf("read events of order %d: %w", orderID, unavailable(err))
	}
	events, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("read events of order %d: %w", orderID, err)
	}
	return events, nil
}
