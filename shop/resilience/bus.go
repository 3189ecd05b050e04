package resilience

import (
	"context"

	"github.com/perfscale/perfscale/shop"
)

// Bus is what the service asks of its event bus (NATS): the outbox relay
// publishes, an order's event stream follows it.
type Bus interface {
	Publish(ctx context.Context, e shop.OrderEvent) error
	WatchOrder(ctx context.Context, orderID int64) (events <-chan shop.OrderEvent, lost <-chan struct{}, err error)
}

// GuardedBus calls a Bus through a guard. Each call is made once: a
// publish the relay did not get acknowledged stays in the outbox for its
// next round, and a stream whose feed was refused polls the database. So
// while the bus fails, the relay's rounds and new streams are refused at
// once instead of each waiting out its timeout.
type GuardedBus struct {
	next Bus
	g    *Guard
}

// NewBus guards next's calls with g.
func NewBus(next Bus, g *Guard) *GuardedBus { return &GuardedBus{next: next, g: g} }

// Publish publishes through the guard.
func (b *GuardedBus) Publish(ctx context.Context, e shop.OrderEvent) error {
	return b.g.Do(ctx, func(ctx context.Context) error { return b.next.Publish(ctx, e) })
}

// WatchOrder sets the feed up through the guard; the feed itself, once
// set up, is not a call the guard times. It lives on the caller's
// context, not the guard's call context: that one ends with the call (and
// a trip of the guard would end it).
func (b *GuardedBus) WatchOrder(ctx context.Context, orderID int64) (<-chan shop.OrderEvent, <-chan struct{}, error) {
	var events <-chan shop.OrderEvent
	var lost <-chan struct{}
	err := b.g.Do(ctx, func(context.Context) (err error) {
		events, lost, err = b.next.WatchOrder(ctx, orderID)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return events, lost, nil
}
