package resilience

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// Backlog is one confirmation queue's waiting work.
type Backlog struct {
	Waiting   int
	OldestAge time.Duration
}

// Confirmations is what Backpressure watches: the confirmation queue of
// each shard (one on a single database) and the shard a session's
// checkout is placed on.
type Confirmations struct {
	// Shards is how many queues there are (at least 1).
	Shards int
	// Backlog reads shard k's queue (k from 0).
	Backlog func(ctx context.Context, k int) (Backlog, error)
	// ShardOf is the shard of a session (nil: every session is on 0).
	ShardOf func(sessionID int64) (int, error)
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
// with: while more confirmations wait on a shard than MaxWaiting, or the
// oldest there has waited longer than MaxAge, a new checkout of a session
// on that shard is refused before any work (503, Retry-After), so each
// shard's backlog and the wait for a confirmation stay bounded instead of
// growing for as long as the storm lasts. Each shard is judged by its own
// queue: one shard behind refuses no checkout on the others. The backlogs
// are sampled in the background (Run), so a checkout pays nothing for it.
type Backpressure struct {
	next  shop.Ordering
	conf  Confirmations
	cfg   BackpressureConfig
	m     *guardMetrics
	queue []queueState // one per shard: the last sample's
	// ticks, if set, replaces Run's ticker (tests drive the periods);
	// tickDone, if set, is told when Run is done with each tick.
	ticks    <-chan time.Time
	tickDone chan<- struct{}
}

// queueState is one shard's last sample.
type queueState struct {
	// behind is the sample's verdict: the backlog past a bound.
	behind  atomic.Bool
	waiting atomic.Int64
	// wanted says a checkout of a session on this shard came since the
	// shard's last sample: a replica reads only the backlogs of the
	// shards it took checkouts for (idle, each replica's samples were
	// most of an idle cluster's commits; on S shards each replica read
	// every shard at each checkout's period, 4 reads a second a replica a
	// shard, growing with the replicas).
	wanted atomic.Bool
}

// Backpressure wraps next so a session's checkouts are refused while the
// backlog of its shard's queue is past its bounds.
func (m *Metrics) Backpressure(next shop.Ordering, conf Confirmations, cfg BackpressureConfig) *Backpressure {
	if cfg.MaxWaiting <= 0 {
		cfg.MaxWaiting = DefaultMaxWaiting
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = DefaultSampleEvery
	}
	conf.Shards = max(conf.Shards, 1)
	gm := &guardMetrics{refused: m.refused.MustCurryWith(map[string]string{"dependency": "confirmations"})}
	return &Backpressure{next: next, conf: conf, cfg: cfg, m: gm, queue: make([]queueState, conf.Shards)}
}

// Run samples the backlogs once, then, every SampleEvery, those of the
// shards a checkout came for in that period, until ctx ends. While no
// checkout comes for a shard its backlog is not read, and the verdict of
// its last sample stands: the first checkouts after a pause are judged
// by it, for at most one SampleEvery.
func (b *Backpressure) Run(ctx context.Context) {
	ticks := b.ticks
	if ticks == nil {
		t := time.NewTicker(b.cfg.SampleEvery)
		defer t.Stop()
		ticks = t.C
	}
	b.Sample(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			b.SampleIfWanted(ctx)
			if b.tickDone != nil {
				b.tickDone <- struct{}{}
			}
		}
	}
}

// SampleIfWanted samples the backlog of each shard a checkout came for
// since its last sample, all at once, and says whether any.
func (b *Backpressure) SampleIfWanted(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.SampleEvery*4)
	defer cancel()
	var wg sync.WaitGroup
	sampled := false
	for k := range b.queue {
		if b.queue[k].wanted.Swap(false) {
			sampled = true
			wg.Go(func() { b.sampleShard(ctx, k) })
		}
	}
	wg.Wait()
	return sampled
}

// Sample reads every shard's backlog once, all at once, so a slow shard
// delays no other's verdict. A backlog that cannot be read lifts its
// shard's refusal: the database's own guards answer for a database that
// fails.
func (b *Backpressure) Sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.SampleEvery*4)
	defer cancel()
	var wg sync.WaitGroup
	for k := range b.queue {
		wg.Go(func() { b.sampleShard(ctx, k) })
	}
	wg.Wait()
}

func (b *Backpressure) sampleShard(ctx context.Context, k int) {
	q := &b.queue[k]
	bl, err := b.conf.Backlog(ctx, k)
	if err != nil {
		q.behind.Store(false)
		return
	}
	q.waiting.Store(int64(bl.Waiting))
	q.behind.Store(bl.Waiting > b.cfg.MaxWaiting || bl.OldestAge > b.cfg.MaxAge)
}

// PlaceOrder is refused, undone, while the confirmations of the session's
// shard are behind. A session whose shard cannot be told is let through:
// the store answers for it.
func (b *Backpressure) PlaceOrder(ctx context.Context, p shop.PlaceOrder) (*shop.Order, bool, error) {
	k := 0
	if b.conf.ShardOf != nil {
		var err error
		if k, err = b.conf.ShardOf(p.SessionID); err != nil || k < 0 || k >= len(b.queue) {
			return b.next.PlaceOrder(ctx, p)
		}
	}
	q := &b.queue[k]
	if !q.wanted.Load() { // a load before the store: no cache line bounced per checkout
		q.wanted.Store(true)
	}
	if q.behind.Load() {
		b.m.refused.WithLabelValues("backlog").Inc()
		return nil, false, shop.Errorf(shop.EUNAVAILABLE,
			"orders are being confirmed more slowly than they are placed (%d waiting%s); nothing was done: retry after the time in Retry-After", q.waiting.Load(), b.where(k))
	}
	return b.next.PlaceOrder(ctx, p)
}

// where names shard k for a refusal, when there are shards.
func (b *Backpressure) where(k int) string {
	if len(b.queue) == 1 {
		return ""
	}
	return fmt.Sprintf(" on shard %d", k+1)
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
	return fmt.Sprintf("checkout refused past %d waiting confirmations or %v of wait on the session's shard", b.cfg.MaxWaiting, b.cfg.MaxAge)
}
