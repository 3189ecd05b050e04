package sqlstore

import (
	"context"
	"fmt"

	"github.com/perfscale/perfscale/shop"
)

// appendOrderEvent records an order's status change in the outbox, in the
// transaction that made the change (which holds the order's write lock,
// so seq cannot be taken twice); its seq is one past the order's last.
func appendOrderEvent(ctx context.Context, tx Tx, orderID int64, status shop.Status, at int64) error {
	if _, err := tx.Exec(ctx, `INSERT INTO order_events (order_id, seq, status, created_at)
		VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM order_events WHERE order_id = ?), ?, ?)`,
		orderID, orderID, status, at); err != nil {
		return fmt.Errorf("record %s event of order %d: %w", status, orderID, err)
	}
	return nil
}

func scanEvent(r Row, e *shop.OrderEvent) error {
	return r.Scan(&e.ID, &e.OrderID, &e.Seq, &e.Status, microsTime{&e.At})
}

// UnpublishedOrderEvents returns up to limit events the relay has not
// published, in outbox order.
func (s *Store) UnpublishedOrderEvents(ctx context.Context, limit int) ([]shop.OrderEvent, error) {
	events, err := query(ctx, s.db.Fresh(), scanEvent, `SELECT id, order_id, seq, status, created_at FROM order_events
		WHERE published_at IS NULL ORDER BY id LIMIT ?`, limit)
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
	in, idArgs := s.dialect.InIDs("id", ids)
	args := append([]any{Micros(s.now())}, idArgs...)
	if _, err := s.db.Writer().Exec(ctx, `UPDATE order_events SET published_at = ?
		WHERE published_at IS NULL AND `+in, args...); err != nil {
		return fmt.Errorf("mark %d order events published: %w", len(ids), err)
	}
	return nil
}

// OrderEvents returns the events of the session's order after seq after.
func (s *Store) OrderEvents(ctx context.Context, sessionID, orderID, after int64) ([]shop.OrderEvent, error) {
	events, err := query(ctx, s.db.Fresh(), scanEvent, `SELECT e.id, e.order_id, e.seq, e.status, e.created_at
		FROM order_events e JOIN orders o ON o.id = e.order_id
		WHERE e.order_id = ? AND o.session_id = ? AND e.seq > ? ORDER BY e.seq`, orderID, sessionID, after)
	if err != nil {
		return nil, fmt.Errorf("read events of order %d: %w", orderID, err)
	}
	return events, nil
}
