package resilience

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// Backlog is the confirmation queue's waiting work.
type Backlog struct {
	Waiting   int
	OldestAge time.Duration
}

// Defaults of BackpressureConfig.
const (
	// DefaultMaxWaiting and DefaultMaxAge bound the confirmations waiting
	// for a worker: past either, checkout is refused.
	DefaultMaxWaiting = 1000
	DefaultMaxAge     = 5 * time.Second
	// DefaultSampleEvery is how often the backlog is read, which bounds
	// how far past MaxWaiting it can grow: by the checkouts of one period.
	DefaultSampleEvery = 250 * time.Millisecond
)

// BackpressureConfig tunes Backpressure; zero values take the defaults.
type BackpressureConfig struct {
	MaxWaiting  int
	MaxAge      time.Duration
	SampleEvery time.Duration
}

// Backpressure is checkout slowed to what the confirmation workers keep up
// with: while more confirmations wait than MaxWaiting, or the oldest has
// waited longer than MaxAge, a new checkout is refused before any work
// (503, Retry-After), so the backlog and the wait for a confirmation stay
// bounded instead of growing for as long as the storm lasts. The backlog
// is sampled in the background (Run), so a checkout pays nothing for it.
type Backpressure struct {
	next    shop.Ordering
	backlog func(ctx context.Context) (Backlog, error)
	cfg     BackpressureConfig
	m       *guardMetrics
	// behind holds the last sample's verdict: the backlog past a bound.
	behind  atomic.Bool
	waiting atomic.Int64
}

// Backpressure wraps next so checkouts are refused while the backlog
// (read by backlog) is past its bounds.
func (m *Metrics) Backpressure(next shop.Ordering, backlog func(ctx context.Context) (Backlog, error), cfg BackpressureConfig) *Backpressure {
	if cfg.MaxWaiting <= 0 {
		cfg.MaxWaiting = DefaultMaxWaiting
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = DefaultSampleEvery
	}
	gm := &guardMetrics{refused: m.refused.MustCurryWith(map[string]string{"dependency": "confirmations"})}
	return &Backpressure{next: next, backlog: backlog, cfg: cfg, m: gm}
}

// Run samples the backlog every SampleEvery until ctx ends.
func (b *Backpressure) Run(ctx context.Context) {
	t := time.NewTicker(b.cfg.SampleEvery)
	defer t.Stop()
	for {
		b.Sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample reads the backlog once. A backlog that cannot be read lifts the
// refusal: the database's own guards answer for a database that fails.
func (b *Backpressure) Sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.SampleEvery*4)
	defer cancel()
	bl, err := b.backlog(ctx)
	if err != nil {
		b.behind.Store(false)
		return
	}
	b.waiting.Store(int64(bl.Waiting))
	b.behind.Store(bl.Waiting > b.cfg.MaxWaiting || bl.OldestAge > b.cfg.MaxAge)
}

// PlaceOrder is refused, undone, while confirmations are behind.
func (b *Backpressure) PlaceOrder(ctx context.Context, p shop.PlaceOrder) (*shop.Order, bool, error) {
	if b.behind.Load() {
		b.m.refused.WithLabelValues("backlog").Inc()
		return nil, false, shop.Errorf(shop.EUNAVAILABLE,
			"orders are being confirmed more slowly than they are placed (%d waiting); nothing was done: retry after the time in Retry-After", b.waiting.Load())
	}
	return b.next.PlaceOrder(ctx, p)
}

// Order reads through.
func (b *Backpressure) Order(ctx context.Context, sessionID, orderID int64) (*shop.Order, error) {
	return b.next.Order(ctx, sessionID, orderID)
}

// ListOrders reads through.
func (b *Backpressure) ListOrders(ctx context.Context, sessionID int64, f shop.OrderFilter) (*shop.OrderPage, error) {
	return b.next.ListOrders(ctx, sessionID, f)
}

func (b *Backpressure) String() string {
	return fmt.Sprintf("checkout refused past %d waiting confirmations or %v of wait", b.cfg.MaxWaiting, b.cfg.MaxAge)
}
