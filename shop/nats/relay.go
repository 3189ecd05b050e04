package nats

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/shop"
)

// Outbox is what the relay needs from the store.
type Outbox interface {
	shop.EventOutbox
}

// Publisher stores one event on the bus and returns once it is acknowledged.
type Publisher interface {
	Publish(ctx context.Context, e shop.OrderEvent) error
}

// RelayConfig tunes the relay.
type RelayConfig struct {
	// Poll is the least time between two rounds, and how long the relay
	// waits after a failure before trying again. Without Wake it is also
	// how often an idle relay looks at the outbox.
	Poll time.Duration
	// Wake, if set, says that events were written (on PostgreSQL, the
	// worker's jobs seeing them committed: jobs.Config.EventsWritten, in
	// the relay's own process): the relay then runs a
	// round when it fires, at most one per Poll, and otherwise only every
	// SafetyPoll, for a wake-up missed. An idle relay then costs the
	// database a statement per SafetyPoll instead of one per Poll.
	Wake <-chan struct{}
	// SafetyPoll is how often a relay with Wake looks at the outbox
	// without being woken (10 s).
	SafetyPoll time.Duration
	// Batch is how many events one outbox read takes.
	Batch int
	// PublishTimeout bounds one publish (the server's acknowledgement).
	PublishTimeout time.Duration
	// Registerer, if set, receives the relay's metrics.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// DefaultSafetyPoll is RelayConfig.SafetyPoll's default.
const DefaultSafetyPoll = 10 * time.Second

// Relay publishes the outbox to the bus in outbox order, one event at a
// time (each acknowledged before the next, so a failure leaves the rest in
// order for the next attempt), and marks what the bus acknowledged. A
// crash between a publish and its mark publishes that event again; the
// stream's duplicate window and the consumers' seq check absorb it.
//
// One relay should run per database (the worker role); two would publish
// the same events twice (absorbed likewise) and could interleave orders.
type Relay struct {
	outbox    Outbox
	pub       Publisher
	cfg       RelayConfig
	published prometheus.Counter
	failures  prometheus.Counter
	down      bool
}

// NewRelay returns a relay from outbox to pub.
func NewRelay(outbox Outbox, pub Publisher, cfg RelayConfig) *Relay {
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.SafetyPoll <= 0 {
		cfg.SafetyPoll = DefaultSafetyPoll
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Relay{outbox: outbox, pub: pub, cfg: cfg,
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_outbox_events_published_total",
			Help: "Order events the relay published to the bus and marked published.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_outbox_relay_failures_total",
			Help: "Relay rounds that stopped on an error (bus or store unreachable); the events wait in the outbox.",
		}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(r.published, r.failures)
	}
	return r
}

// Run relays until ctx ends. It returns nil then: what is unpublished
// stays in the outbox for the next run.
func (r *Relay) Run(ctx context.Context) error {
	if r.cfg.Wake == nil {
		return r.poll(ctx)
	}
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		err := r.Drain(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.noteState(err)
		// At least Poll between rounds: under load the notifications come
		// faster than that, and one round takes what they announced.
		if !sleep(ctx, pause, r.cfg.Poll) {
			return nil
		}
		if err != nil {
			continue // try again after Poll, woken or not
		}
		pause.Reset(r.cfg.SafetyPoll)
		select {
		case <-ctx.Done():
			return nil
		case <-r.cfg.Wake:
			pause.Stop()
		case <-pause.C:
		}
	}
}

// sleep waits d on t or until ctx ends (false). Since Go 1.23 a timer
// reset holds no stale tick.
func sleep(ctx context.Context, t *time.Timer, d time.Duration) bool {
	t.Reset(d)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// poll runs a round every Poll: where nothing says when events are
// written (the embedded database has no notifications).
func (r *Relay) poll(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	for {
		err := r.Drain(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.noteState(err)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// noteState logs once per change between relaying and failing.
func (r *Relay) noteState(err error) {
	if err != nil {
		r.failures.Inc()
	}
	down := err != nil
	if down == r.down {
		return
	}
	r.down = down
	if down {
		r.cfg.Logger.Warn("order events relay stopped: events wait in the outbox", "error", err.Error())
	} else {
		r.cfg.Logger.Info("order events relay publishing again")
	}
}

// Drain publishes every unpublished event, batch by batch, until a read
// of the outbox comes back short of a full batch (it was emptied then) or
// a publish or store call fails. Events written after that read wait for
// the next round (Poll): reading again at once, to find the outbox empty
// or a few events just written, cost the database a statement (a commit
// on PostgreSQL) per round for nothing or for what the next round takes.
func (r *Relay) Drain(ctx context.Context) error {
	for {
		events, err := r.outbox.UnpublishedOrderEvents(ctx, r.cfg.Batch)
		if err != nil || len(events) == 0 {
			return err
		}
		done := make([]int64, 0, len(events))
		var perr error
		for _, e := range events {
			pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
			perr = r.pub.Publish(pctx, e)
			cancel()
			if perr != nil {
				break
			}
			done = append(done, e.ID)
		}
		// Mark what was acknowledged even when the batch stopped part way,
		// so it is not published again.
		if err := r.outbox.MarkOrderEventsPublished(context.WithoutCancel(ctx), done); err != nil {
			return err
		}
		r.published.Add(float64(len(done)))
		if perr != nil || len(events) < r.cfg.Batch {
			return perr
		}
	}
}
