package shop

import (
	"context"
	"strconv"
	"time"
)

// OrderEvent is one status change of an order, recorded in the store's
// outbox in the same transaction as the change itself, so an event exists
// if and only if the change committed. A relay publishes the outbox to the
// event bus in outbox order; customers follow their order's events.
type OrderEvent struct {
	// ID is the event's position in the outbox: the order it is published
	// in. A sharded store's outbox is its shards', each with its own
	// positions, so its ids also name the shard: distinct, and ascending
	// within an order, not across orders.
	ID int64 `json:"-"`
	// OrderID is the order that changed.
	OrderID int64 `json:"order_id"`
	// Seq numbers an order's events from 1 (placed), one up per change:
	// the position a stream resumes after (Last-Event-ID).
	Seq int64 `json:"seq"`
	// Status is the order's status after the change.
	Status Status    `json:"status"`
	At     time.Time `json:"at"`
}

// DedupKey identifies the change, not the attempt to publish it: the order
// id and the status it reached (an order reaches each status once). The bus
// drops a second publish with the same key within its window, and
// consumers drop what the window missed.
func (e OrderEvent) DedupKey() string {
	return strconv.FormatInt(e.OrderID, 10) + "-" + string(e.Status)
}

// OutboxService is the store's side of the order events: every status
// change (checkout's InsertOrder, FulfilmentService's ConfirmOrder,
// MarkOrderReady and AdvanceOrder) appends an event in its own
// transaction; the relay reads what is unpublished and marks it published
// once the bus has it (EventOutbox); a client's stream reads an order's
// events back (OrderEventReader).
type OutboxService interface {
	EventOutbox
	OrderEventReader
}

// EventOutbox is the relay's view of the outbox.
type EventOutbox interface {
	// UnpublishedOrderEvents returns up to limit events not yet marked
	// published, in outbox order (ID ascending).
	UnpublishedOrderEvents(ctx context.Context, limit int) ([]OrderEvent, error)
	// MarkOrderEventsPublished marks the events with these IDs published.
	MarkOrderEventsPublished(ctx context.Context, ids []int64) error
}

// OrderEventReader reads an order's events back.
type OrderEventReader interface {
	// OrderEvents returns the events of the session's order with Seq after
	// after, in Seq order; none for another session's order.
	OrderEvents(ctx context.Context, sessionID, orderID, after int64) ([]OrderEvent, error)
}
