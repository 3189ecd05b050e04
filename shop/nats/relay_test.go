package nats_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop"
	shopnats "github.com/perfscale/perfscale/shop/nats"
	"github.com/perfscale/perfscale/shop/nats/natstest"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlite"
)

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := sqlite.NewStore(db, nil)
	t.Cleanup(func() { s.Close() })
	if _, err := s.SeedIfEmpty(ctx, seed.Items(20)); err != nil {
		t.Fatal(err)
	}
	return s
}

// placeOrder checks out one unit of item 2 in a new session.
func placeOrder(t *testing.T, s *sqlite.Store) (sessionID int64, o *shop.Order) {
	t.Helper()
	ctx := context.Background()
	_, hash := shop.NewToken()
	sess, err := s.CreateSession(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetCartItem(ctx, sess.ID, 2, 1); err != nil {
		t.Fatal(err)
	}
	o, _, err = shop.NewOrderDesk(s, nil, nil).PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "k",
		Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}})
	if err != nil {
		t.Fatalf("checkout: %v", err)
	}
	return sess.ID, o
}

func advance(t *testing.T, s *sqlite.Store, id int64, from, to shop.Status) {
	t.Helper()
	if ok, err := s.AdvanceOrder(context.Background(), id, from, to); err != nil || !ok {
		t.Fatalf("advance order %d to %s: %v, %v", id, to, ok, err)
	}
}

// waitPublished waits (bounded) for the running relay to empty the outbox,
// then stops it.
func waitPublished(t *testing.T, s *sqlite.Store, stop func(), relayDone <-chan error) {
	t.Helper()
	testwait.Eventually(t, time.Minute, func() error {
		pending, err := s.UnpublishedOrderEvents(t.Context(), 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) > 0 {
			return fmt.Errorf("%d events still unpublished since NATS answers again", len(pending))
		}
		return nil
	})
	stop()
	if err := <-relayDone; err != nil {
		t.Fatalf("relay: %v", err)
	}
}

type delivered struct {
	Key string
	Seq int64
}

// readStream reads the whole stream with its own ordered consumer, as a
// de-duplicating consumer would see it: every message with its Nats-Msg-Id.
func readStream(t *testing.T, url string, cfg shopnats.Config, want int) []delivered {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != uint64(want) {
		t.Errorf("stream holds %d messages, want %d (one per event)", n, want)
	}
	cons, err := js.OrderedConsumer(ctx, cfg.Stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var got []delivered
	for len(got) < want {
		m, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(got), want, err)
		}
		meta, _ := m.Metadata()
		got = append(got, delivered{Key: m.Headers().Get(jetstream.MsgIDHeader), Seq: int64(meta.Sequence.Stream)})
	}
	return got
}

// TestRelayDeliversEveryEventOnceAfterAnOutage: with NATS stopped, orders
// still commit and their events wait in the outbox; when NATS returns, the
// relay publishes each exactly once, in outbox order.
func TestRelayDeliversEveryEventOnceAfterAnOutage(t *testing.T) {
	srv := natstest.Start(t)
	s := openStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	bus, err := shopnats.Open(ctx, shopnats.Config{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	relay := shopnats.NewRelay(s, bus, shopnats.RelayConfig{Poll: 20 * time.Millisecond, PublishTimeout: time.Second})

	var want []string // dedup keys in outbox (commit) order
	_, first := placeOrder(t, s)
	want = append(want, fmt.Sprintf("%d-placed", first.ID))
	if err := relay.Drain(ctx); err != nil {
		t.Fatalf("relay with NATS up: %v", err)
	}
	// A publish retried after a lost acknowledgement is stored once.
	if err := bus.Publish(ctx, shop.OrderEvent{OrderID: first.ID, Seq: 1, Status: shop.StatusPlaced}); err != nil {
		t.Fatalf("republish: %v", err)
	}

	srv.Stop()
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()
	var ids []int64
	for range 10 {
		_, o := placeOrder(t, s) // commits although NATS is down
		ids = append(ids, o.ID)
		want = append(want, fmt.Sprintf("%d-placed", o.ID))
	}
	for _, id := range ids[:5] {
		advance(t, s, id, shop.StatusPlaced, shop.StatusConfirmed)
		want = append(want, fmt.Sprintf("%d-confirmed", id))
	}
	advance(t, s, first.ID, shop.StatusPlaced, shop.StatusConfirmed)
	advance(t, s, first.ID, shop.StatusConfirmed, shop.StatusReady)
	want = append(want, fmt.Sprintf("%d-confirmed", first.ID), fmt.Sprintf("%d-ready", first.ID))
	pending, err := s.UnpublishedOrderEvents(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != len(want)-1 {
		t.Fatalf("%d events wait in the outbox while NATS is down, want %d", len(pending), len(want)-1)
	}

	srv.Start()
	// The relay reconnects on its own.
	waitPublished(t, s, cancel, relayDone)

	got := readStream(t, srv.URL(), bus.Config(), len(want))
	seen := map[string]int{}
	var keys []string
	for _, d := range got {
		seen[d.Key]++
		if seen[d.Key] == 1 { // the de-duplicating consumer
			keys = append(keys, d.Key)
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("event %s delivered %d times", k, n)
		}
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("events in stream order (-want outbox order +got):\n%s", diff)
	}
}

// openBus starts a NATS server and opens a seeded store and the bus on it.
func openBus(t *testing.T) (*natstest.Server, *sqlite.Store, *shopnats.Bus) {
	t.Helper()
	srv := natstest.Start(t)
	s := openStore(t)
	bus, err := shopnats.Open(t.Context(), shopnats.Config{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	return srv, s, bus
}

// TestWatchOrder: a watcher sees the order's events as they are published,
// only its own order's, and is told when the bus goes away.
func TestWatchOrder(t *testing.T) {
	srv, s, bus := openBus(t)
	ctx := t.Context()
	relay := shopnats.NewRelay(s, bus, shopnats.RelayConfig{})
	_, other := placeOrder(t, s)
	_, o := placeOrder(t, s)
	if err := relay.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	events, lost, err := bus.WatchOrder(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	next := func() shop.OrderEvent {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-lost:
			t.Fatal("feed lost with NATS up")
		case <-time.After(30 * time.Second):
			t.Fatal("no event within 30s")
		}
		return shop.OrderEvent{}
	}
	if e := next(); e.OrderID != o.ID || e.Seq != 1 || e.Status != shop.StatusPlaced {
		t.Fatalf("first event %+v, want order %d placed", e, o.ID)
	}
	advance(t, s, other.ID, shop.StatusPlaced, shop.StatusConfirmed)
	advance(t, s, o.ID, shop.StatusPlaced, shop.StatusConfirmed)
	if err := relay.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if e := next(); e.OrderID != o.ID || e.Seq != 2 || e.Status != shop.StatusConfirmed {
		t.Fatalf("second event %+v, want order %d confirmed", e, o.ID)
	}
	srv.Stop()
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("watcher not told within 30s that NATS went away")
	}
	if _, _, err := bus.WatchOrder(ctx, o.ID); !errors.Is(err, shopnats.ErrUnavailable) {
		t.Fatalf("watch with NATS down: %v, want ErrUnavailable", err)
	}
}

// TestDeleteStream: a deployment torn down gives its stream back (JetStream
// reserves each stream's MaxBytes, and a shared server refused new streams
// once 59 local clusters had left theirs); deleting one that is gone is no
// error, and an unreachable server is one.
func TestDeleteStream(t *testing.T) {
	srv := natstest.Start(t)
	ctx := context.Background()
	bus, err := shopnats.Open(ctx, shopnats.Config{URL: srv.URL(), Stream: "DROP_ME"})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	bus.Close()
	for _, want := range []bool{true, false} {
		deleted, err := shopnats.DeleteStream(ctx, srv.URL(), "DROP_ME")
		if err != nil || deleted != want {
			t.Fatalf("DeleteStream: deleted %v, err %v; want deleted %v", deleted, err, want)
		}
	}
	srv.Stop()
	if _, err := shopnats.DeleteStream(ctx, srv.URL(), "DROP_ME"); err == nil {
		t.Fatal("DeleteStream on a stopped server: no error")
	}
}

// countedOutbox counts the relay's reads of the outbox.
type countedOutbox struct {
	*sqlite.Store
	reads int
}

func (c *countedOutbox) UnpublishedOrderEvents(ctx context.Context, limit int) ([]shop.OrderEvent, error) {
	c.reads++
	return c.Store.UnpublishedOrderEvents(ctx, limit)
}

// TestDrainStopsAtAShortBatch: a round publishes the outbox batch by batch
// and stops at the first batch short of full, without reading the outbox
// once more to find it empty (a statement, and a commit on PostgreSQL, per
// round for nothing).
func TestDrainStopsAtAShortBatch(t *testing.T) {
	_, s, bus := openBus(t)
	ctx := t.Context()
	outbox := &countedOutbox{Store: s}
	relay := shopnats.NewRelay(outbox, bus, shopnats.RelayConfig{Batch: 2})
	for _, tc := range []struct{ orders, reads int }{{1, 1}, {3, 2}, {4, 3}} {
		for range tc.orders {
			placeOrder(t, s)
		}
		outbox.reads = 0
		if err := relay.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if outbox.reads != tc.reads {
			t.Errorf("%d events in batches of 2: %d outbox reads, want %d", tc.orders, outbox.reads, tc.reads)
		}
		pending, err := s.UnpublishedOrderEvents(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) != 0 {
			t.Errorf("%d events in batches of 2: %d left unpublished", tc.orders, len(pending))
		}
	}
}

// signalledOutbox counts the outbox reads and says when each is done.
type signalledOutbox struct {
	*sqlite.Store
	read   chan int // the count of reads, after each
	marked chan struct{}
	n      int
}

func (c *signalledOutbox) MarkOrderEventsPublished(ctx context.Context, ids []int64) error {
	err := c.Store.MarkOrderEventsPublished(ctx, ids)
	c.marked <- struct{}{}
	return err
}

func (c *signalledOutbox) UnpublishedOrderEvents(ctx context.Context, limit int) ([]shop.OrderEvent, error) {
	evs, err := c.Store.UnpublishedOrderEvents(ctx, limit)
	c.n++
	c.read <- c.n
	return evs, err
}

// pending is how many events wait in s's outbox.
func pending(t *testing.T, s *sqlite.Store) int {
	t.Helper()
	evs, err := s.UnpublishedOrderEvents(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// TestAWokenRelayReadsOnlyWhenWoken: with Wake, the relay reads the outbox
// once at its start and then once per wake-up, never on its own within the
// safety poll, where the polling relay read it every Poll (an idle cluster
// paid a statement, a commit on PostgreSQL, ten times a second for it).
func TestAWokenRelayReadsOnlyWhenWoken(t *testing.T) {
	_, s, bus := openBus(t)
	// Buffered, so that a relay reading unwoken is counted, not stuck.
	outbox := &signalledOutbox{Store: s, read: make(chan int, 1000), marked: make(chan struct{}, 1000)}
	wake := make(chan struct{}, 1)
	relay := shopnats.NewRelay(outbox, bus, shopnats.RelayConfig{Poll: time.Millisecond, Wake: wake, SafetyPoll: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	if n := <-outbox.read; n != 1 {
		t.Fatalf("first read is number %d", n)
	}
	const rounds = 5
	for k := range rounds {
		placeOrder(t, s)
		// Not woken: the event waits, however long this takes.
		if got := pending(t, s); got != 1 {
			t.Fatalf("round %d: %d events pending before the wake-up, want 1 (the relay read the outbox unwoken)", k, got)
		}
		select { // never blocks: the relay takes a pending wake-up, or it is one
		case wake <- struct{}{}:
		default:
		}
		if n := <-outbox.read; n != k+2 {
			t.Fatalf("round %d: read number %d, want %d", k, n, k+2)
		}
		<-outbox.marked
		if got := pending(t, s); got != 0 {
			t.Fatalf("round %d: %d events pending after the woken read", k, got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if extra := len(outbox.read); extra != 0 {
		t.Errorf("%d outbox reads nobody woke the relay for; want 0 (one per wake-up)", extra)
	}
}
