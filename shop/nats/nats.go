// Package nats is the ordering service's event bus adapter on NATS
// JetStream: it keeps the order-events stream (created at start,
// idempotently), publishes the outbox to it in order (Relay), and lets an
// HTTP stream follow one order's events (WatchOrder) from any replica.
//
// Publishes carry Nats-Msg-Id = order id + status, so a publish retried
// after a lost acknowledgement is stored once within the stream's duplicate
// window; consumers still de-duplicate on the event's seq, because the
// window is finite and NATS has lost acknowledged writes under faults when
// not run with sync_interval: always (Jepsen, NATS 2.12.1).
package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/perfscale/perfscale/shop"
)

// Config names the stream and sets its limits. The zero value is the
// service's stream (see Defaults).
type Config struct {
	// URL is the NATS server, e.g. nats://127.0.0.1:4222.
	URL string
	// ClientName identifies this process in the server's connection list.
	ClientName string
	// Stream is the JetStream stream's name; Subject is the subject prefix
	// its subjects live under (<Subject>.<order id>.<status>).
	Stream, Subject string
	// MaxAge and MaxBytes bound what the stream keeps: an order's events
	// matter while it is being prepared, and a resumed SSE stream reads
	// the database when the bus no longer has them.
	MaxAge   time.Duration
	MaxBytes int64
	// DuplicateWindow is how long the server remembers a Nats-Msg-Id.
	DuplicateWindow time.Duration
	// CallTimeout bounds a call that sets something up on the server
	// (WatchOrder's consumer): a server that is connected but does not
	// answer must not hold the caller (2 s).
	CallTimeout time.Duration
	// FeedHeartbeat is how often the server tells a WatchOrder consumer
	// with nothing to deliver that it is alive (1 s, at least 500 ms);
	// two missed end the feed (lost), and the stream polls the database.
	FeedHeartbeat time.Duration
	Logger        *slog.Logger
}

// Defaults of the service's stream, documented in docs/architecture.md.
const (
	DefaultStream          = "SHOP_ORDERS"
	DefaultSubject         = "shop.orders"
	DefaultMaxAge          = 7 * 24 * time.Hour
	DefaultMaxBytes        = 1 << 30
	DefaultDuplicateWindow = 10 * time.Minute
	DefaultCallTimeout     = 2 * time.Second
	DefaultFeedHeartbeat   = time.Second
)

func (c *Config) defaults() {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Subject == "" {
		c.Subject = DefaultSubject
	}
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.FeedHeartbeat < 500*time.Millisecond {
		c.FeedHeartbeat = DefaultFeedHeartbeat
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// StreamConfig is the order-events stream: one subject per order and
// status, limits retention (kept for MaxAge or until MaxBytes, oldest
// dropped first), file storage, one replica on a single server.
func (c Config) StreamConfig() jetstream.StreamConfig {
	c.defaults()
	return jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "order status changes published from the shop's outbox",
		Subjects:    []string{c.Subject + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		// An order reaches each status once: one message per subject.
		MaxMsgsPerSubject: 1,
		Storage:           jetstream.FileStorage,
		Replicas:          1,
		Duplicates:        c.DuplicateWindow,
	}
}

// ErrUnavailable: the bus cannot be reached now.
var ErrUnavailable = errors.New("NATS is not reachable")

// Bus is a connection to NATS with the order-events stream.
type Bus struct {
	cfg Config
	nc  *natsgo.Conn
	js  jetstream.JetStream

	mu       sync.Mutex
	ensured  bool // the stream exists as configured
	lastDown bool // for one log line per state change
}

// Open connects to NATS. An unreachable server is not an error: the
// connection keeps retrying in the background (orders still commit, their
// events wait in the outbox), and the stream is created once it answers.
// A malformed URL is an error.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	cfg.defaults()
	b := &Bus{cfg: cfg}
	nc, err := natsgo.Connect(cfg.URL,
		natsgo.Name(cfg.ClientName),
		natsgo.RetryOnFailedConnect(true),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(250*time.Millisecond),
		natsgo.ReconnectJitter(100*time.Millisecond, 100*time.Millisecond),
		// No buffering while disconnected: a publish then fails at once
		// and the event stays in the outbox, instead of sitting in a
		// client buffer that a restart would lose.
		natsgo.ReconnectBufSize(-1),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) { b.noteState(true, err) }),
		natsgo.ReconnectHandler(func(*natsgo.Conn) { b.noteState(false, nil) }),
		natsgo.ConnectHandler(func(*natsgo.Conn) { b.noteState(false, nil) }),
	)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", cfg.URL, err)
	}
	b.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats %s: jetstream: %w", cfg.URL, err)
	}
	b.js = js
	if nc.IsConnected() {
		if err := b.EnsureStream(ctx); err != nil {
			cfg.Logger.Warn("order events stream not created yet", "error", err.Error())
		}
	} else {
		b.noteState(true, ErrUnavailable)
	}
	return b, nil
}

// noteState logs a change between reachable and unreachable once.
func (b *Bus) noteState(down bool, err error) {
	b.mu.Lock()
	changed := b.lastDown != down
	b.lastDown = down
	b.mu.Unlock()
	if !changed {
		return
	}
	if down {
		msg := "unknown"
		if err != nil {
			msg = err.Error()
		}
		b.cfg.Logger.Warn("NATS unreachable: order events wait in the outbox, order streams poll the database", "url", b.cfg.URL, "error", msg)
		return
	}
	b.cfg.Logger.Info("NATS reachable", "url", b.cfg.URL)
}

// Config is the bus's configuration with its defaults filled in.
func (b *Bus) Config() Config { return b.cfg }

// Close drains nothing: the outbox, not the client, holds what is unsent.
func (b *Bus) Close() { b.nc.Close() }

// EnsureStream creates the stream, or updates it to the configuration.
func (b *Bus) EnsureStream(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return ErrUnavailable
	}
	if _, err := b.js.CreateOrUpdateStream(ctx, b.cfg.StreamConfig()); err != nil {
		return fmt.Errorf("create stream %s: %w", b.cfg.Stream, err)
	}
	b.mu.Lock()
	b.ensured = true
	b.mu.Unlock()
	return nil
}

// DeleteStream deletes the stream named name on the NATS server at url;
// deleted is false if there was none. Unlike Open it does not wait for an
// unreachable server: it is a one-off administrative call.
func DeleteStream(ctx context.Context, url, name string) (deleted bool, err error) {
	nc, err := natsgo.Connect(url, natsgo.Name("shop drop-events"), natsgo.Timeout(5*time.Second))
	if err != nil {
		return false, fmt.Errorf("nats %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false, fmt.Errorf("nats %s: jetstream: %w", url, err)
	}
	switch err := js.DeleteStream(ctx, name); {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("delete stream %s: %w", name, err)
	}
	return true, nil
}

func (b *Bus) streamEnsured() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ensured
}

// Subject is where an event is published: <prefix>.<order id>.<status>.
func (b *Bus) Subject(e shop.OrderEvent) string {
	return b.orderSubject(e.OrderID) + "." + string(e.Status)
}

func (b *Bus) orderSubject(orderID int64) string {
	return b.cfg.Subject + "." + strconv.FormatInt(orderID, 10)
}

// Publish stores one event in the stream and waits for the server's
// acknowledgement. Its Nats-Msg-Id is the event's DedupKey.
func (b *Bus) Publish(ctx context.Context, e shop.OrderEvent) error {
	if !b.nc.IsConnected() {
		return ErrUnavailable
	}
	if !b.streamEnsured() {
		if err := b.EnsureStream(ctx); err != nil {
			return err
		}
	}
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if _, err := b.js.Publish(ctx, b.Subject(e), data, jetstream.WithMsgID(e.DedupKey())); err != nil {
		return fmt.Errorf("publish %s: %w", e.DedupKey(), err)
	}
	return nil
}

// WatchOrder follows one order's events with an ordered, ephemeral
// consumer filtered on the order's subjects, from the first event the
// stream holds. Events arrive in stream order; events is never closed.
// lost is closed when the bus goes away (the caller then reads the
// database); both end with ctx. Creating the consumer takes at most the
// CallTimeout: a server that is connected but stuck is then an error, and
// logged as unreachable once.
func (b *Bus) WatchOrder(ctx context.Context, orderID int64) (events <-chan shop.OrderEvent, lost <-chan struct{}, err error) {
	if !b.nc.IsConnected() {
		return nil, nil, ErrUnavailable
	}
	setup, cancel := context.WithTimeout(ctx, b.cfg.CallTimeout)
	defer cancel()
	cons, err := b.js.OrderedConsumer(setup, b.cfg.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{b.orderSubject(orderID) + ".*"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			b.noteState(true, fmt.Errorf("no answer within %v", b.cfg.CallTimeout))
			return nil, nil, fmt.Errorf("watch order %d: %w: no answer within %v", orderID, ErrUnavailable, b.cfg.CallTimeout)
		}
		return nil, nil, fmt.Errorf("watch order %d: %w", orderID, err)
	}
	b.noteState(false, nil)
	out := make(chan shop.OrderEvent, 4)
	lostCh := make(chan struct{})
	status := b.nc.StatusChanged(natsgo.DISCONNECTED, natsgo.RECONNECTING, natsgo.CLOSED)
	// The server sends the consumer a heartbeat while it has nothing to
	// deliver; two missed mean a server that is connected but stuck, which
	// the connection itself notices only after minutes of missed pings.
	silent := make(chan struct{}, 1)
	onError := func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrNoHeartbeat) {
			select {
			case silent <- struct{}{}:
			default:
			}
		}
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var e shop.OrderEvent
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			b.cfg.Logger.Warn("undecodable order event", "subject", m.Subject(), "error", err.Error())
			return
		}
		select {
		case out <- e:
		case <-ctx.Done():
		case <-lostCh:
		}
	}, jetstream.PullExpiry(max(5*b.cfg.FeedHeartbeat, time.Second)), jetstream.PullHeartbeat(b.cfg.FeedHeartbeat), jetstream.ConsumeErrHandler(onError))
	if err != nil {
		b.nc.RemoveStatusListener(status)
		return nil, nil, fmt.Errorf("watch order %d: %w", orderID, err)
	}
	go func() {
		defer b.nc.RemoveStatusListener(status)
		defer cc.Stop()
		select {
		case <-ctx.Done():
		case <-status:
			close(lostCh)
		case <-silent:
			b.noteState(true, fmt.Errorf("no consumer heartbeat for %v", 2*b.cfg.FeedHeartbeat))
			close(lostCh)
		}
	}()
	return out, lostCh, nil
}
