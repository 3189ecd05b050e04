package resilience

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/perfscale/perfscale/shop"
)

// fakeStore answers the calls the tests make through hooks; any other
// call panics (the embedded nil interface).
type fakeStore struct {
	shop.Store
	calls    atomic.Int64
	item     func(ctx context.Context) (*shop.Item, error)
	checkout func(ctx context.Context) error
	ping     func(ctx context.Context) error
}

func (f *fakeStore) Item(ctx context.Context, _ int64) (*shop.Item, error) {
	f.calls.Add(1)
	return f.item(ctx)
}

func (f *fakeStore) InCheckout(ctx context.Context, _ int64, _ string, _ func(shop.CheckoutTx) error) error {
	f.calls.Add(1)
	return f.checkout(ctx)
}

func (f *fakeStore) Ping(ctx context.Context) error {
	if f.ping == nil {
		return nil
	}
	return f.ping(ctx)
}

var errDown = errors.New("dial tcp 127.0.0.1:5432: connection refused")

// clock is a test's time, moved by hand; its timers fire, in the
// caller's goroutine, as add moves it past them.
type clock struct {
	mu     sync.Mutex
	t      time.Time
	timers []timer
}

type timer struct {
	at time.Time
	f  func()
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) after(d time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, timer{at: c.t.Add(d), f: f})
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	var due []func()
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(c.t) {
			kept = append(kept, tm)
		} else {
			due = append(due, tm.f)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

func newTestStore(t *testing.T, f *fakeStore) (*Store, *Metrics, *prometheus.Registry, *clock) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	c := &clock{t: time.Unix(1_000_000, 0)}
	m.now, m.after = c.now, c.after
	// No waits between retries: the tests count attempts, not time.
	fast := Config{BaseBackoff: time.Nanosecond, MaxBackoff: time.Nanosecond, OpenFor: time.Hour}
	reads, writes := fast, fast
	reads.Name, reads.What = "database-read", "the database"
	writes.Name, writes.What = "database-write", "the database"
	return NewStore(f, m.Guard(reads), m.Guard(writes)), m, reg, c
}

func isUnavailable(err error) bool { return shop.ErrorCode(err) == shop.EUNAVAILABLE }

// A database that fails every call opens the breaker: from then on a call
// is refused before it reaches the store, as EUNAVAILABLE (a 503), and
// readiness fails; the metrics say so.
func TestAFailingDatabaseOpensTheBreakerAndCallsAreRefusedUnmade(t *testing.T) {
	f := &fakeStore{checkout: func(context.Context) error { return errDown }}
	s, _, reg, _ := newTestStore(t, f)
	ctx := context.Background()
	for range DefaultMinCalls {
		if err := s.InCheckout(ctx, 1, "k", nil); !errors.Is(err, errDown) {
			t.Fatalf("checkout: %v, want the store's error", err)
		}
	}
	made := f.calls.Load()
	if made != DefaultMinCalls {
		t.Fatalf("%d calls made, want %d: a checkout is not retried", made, DefaultMinCalls)
	}
	err := s.InCheckout(ctx, 1, "k", nil)
	if !isUnavailable(err) || f.calls.Load() != made {
		t.Fatalf("checkout with the breaker open: %v after %d store calls, want a refusal (unavailable) and no call", err, f.calls.Load()-made)
	}
	if msg := shop.ErrorMessage(err); !strings.Contains(msg, "nothing was done") {
		t.Errorf("refusal message %q", msg)
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping (readiness) passed while writes are refused")
	}
	if n := testutil.ToFloat64(s.writes.m.opened); n != 1 {
		t.Errorf("shop_breaker_opened_total %v, want 1", n)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP shop_breaker_state A dependency's circuit breaker: 0 closed (calls go through), 1 half-open (a trial call), 2 open (calls refused).
# TYPE shop_breaker_state gauge
shop_breaker_state{dependency="database-read"} 0
shop_breaker_state{dependency="database-write"} 2
`), "shop_breaker_state"); err != nil {
		t.Error(err)
	}
	if n := testutil.ToFloat64(s.writes.m.refused.WithLabelValues(reasonOpen)); n != 1 {
		t.Errorf("refused (open) %v, want 1", n)
	}
}

// Domain answers (not found, conflict) and clients that leave are not the
// database failing: they neither open the breaker nor are retried.
func TestDomainErrorsAndCancelledCallsAreNotFailures(t *testing.T) {
	notFound := shop.Errorf(shop.ENOTFOUND, "no such item")
	f := &fakeStore{item: func(context.Context) (*shop.Item, error) { return nil, notFound }}
	s, _, _, _ := newTestStore(t, f)
	for range 3 * DefaultMinCalls {
		if _, err := s.Item(context.Background(), 1); !errors.Is(err, notFound) {
			t.Fatalf("item: %v", err)
		}
	}
	f.item = func(context.Context) (*shop.Item, error) { return nil, context.Canceled }
	for range 3 * DefaultMinCalls {
		s.Item(context.Background(), 1) //nolint:errcheck
	}
	if got, want := f.calls.Load(), int64(6*DefaultMinCalls); got != want {
		t.Errorf("%d calls, want %d (one each: nothing retried)", got, want)
	}
	if err := s.reads.Ready(); err != nil {
		t.Errorf("the read guard: %v", err)
	}
}

// An idempotent read that fails is retried, up to three attempts in all;
// the retry is counted.
func TestAFailedReadIsRetriedUpToThreeAttempts(t *testing.T) {
	var attempts atomic.Int64
	f := &fakeStore{item: func(context.Context) (*shop.Item, error) {
		if attempts.Add(1) < 3 {
			return nil, errDown
		}
		return &shop.Item{ID: 1}, nil
	}}
	s, _, _, _ := newTestStore(t, f)
	it, err := s.Item(context.Background(), 1)
	if err != nil || it.ID != 1 || attempts.Load() != 3 {
		t.Fatalf("item %v, %v after %d attempts, want the item after 3", it, err, attempts.Load())
	}
	if n := testutil.ToFloat64(s.reads.m.retries.WithLabelValues("retried")); n != 2 {
		t.Errorf("retries counted %v, want 2", n)
	}

	// One that keeps failing returns its last failure after 3 attempts.
	attempts.Store(0)
	f.item = func(context.Context) (*shop.Item, error) { attempts.Add(1); return nil, errDown }
	s, _, _, _ = newTestStore(t, f)
	if _, err := s.Item(context.Background(), 1); !errors.Is(err, errDown) {
		t.Fatalf("item: %v, want the last failure", err)
	}
	if attempts.Load() != 3 {
		t.Errorf("%d attempts, want 3", attempts.Load())
	}
}

// Retries may be at most a tenth of the calls in flight: with two reads
// in flight and one of them retrying, the other's failure is not retried.
func TestRetriesStayWithinTheBudget(t *testing.T) {
	retrying, release := make(chan struct{}), make(chan struct{})
	var n atomic.Int64
	aIn, first := make(chan struct{}), make(chan struct{})
	f := &fakeStore{item: func(ctx context.Context) (*shop.Item, error) {
		switch n.Add(1) {
		case 1: // A's first attempt: fails when told
			close(aIn)
			<-first
			return nil, errDown
		case 2: // A's retry: holds the budget's one permit
			close(retrying)
			<-release
			return &shop.Item{ID: 1}, nil
		}
		return nil, errDown // B
	}}
	s, _, _, _ := newTestStore(t, f)
	aDone := make(chan error, 1)
	go func() { _, err := s.Item(context.Background(), 1); aDone <- err }()
	bDone := make(chan error, 1)
	go func() {
		<-aIn
		close(first)
		<-retrying
		_, err := s.Item(context.Background(), 2)
		bDone <- err
	}()
	errB := <-bDone
	close(release)
	if err := <-aDone; err != nil {
		t.Fatalf("A: %v, want its retry's success", err)
	}
	if !isUnavailable(errB) || n.Load() != 3 {
		t.Fatalf("B: %v after %d attempts in all, want a refusal after its first", errB, n.Load())
	}
	if got := testutil.ToFloat64(s.reads.m.retries.WithLabelValues("budget_exceeded")); got != 1 {
		t.Errorf("budget_exceeded %v, want 1", got)
	}
}

// A database that takes calls and never answers (the postmaster paused, a
// writer lock held elsewhere) fails nothing for seconds. Once calls have
// waited past the stall limit with none finishing, new calls are refused
// unmade and readiness fails; the first answer clears it.
func TestStalledWritesAreRefusedAndFailReadiness(t *testing.T) {
	entered, answer := make(chan struct{}), make(chan error)
	f := &fakeStore{checkout: func(context.Context) error {
		entered <- struct{}{}
		return <-answer
	}}
	s, _, reg, c := newTestStore(t, f)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { done <- s.InCheckout(ctx, 1, "a", nil) }()
	<-entered
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("readiness before the stall limit: %v", err)
	}
	c.add(DefaultStallAfter + time.Millisecond)
	if err := s.InCheckout(ctx, 2, "b", nil); !isUnavailable(err) || f.calls.Load() != 1 {
		t.Fatalf("checkout while stalled: %v, %d calls; want a refusal, no call", err, f.calls.Load())
	}
	if err := s.Ping(ctx); err == nil || !strings.Contains(err.Error(), "not answering") {
		t.Fatalf("readiness while writes stall: %v, want a failure", err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP shop_dependency_stalled 1 while a dependency's calls have waited past the stall limit with none finishing (new calls are refused).
# TYPE shop_dependency_stalled gauge
shop_dependency_stalled{dependency="database-read"} 0
shop_dependency_stalled{dependency="database-write"} 1
`), "shop_dependency_stalled"); err != nil {
		t.Error(err)
	}
	answer <- nil // the held checkout commits: progress
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	go func() { <-entered; answer <- nil }()
	if err := s.InCheckout(ctx, 3, "c", nil); err != nil {
		t.Fatalf("checkout after the stall cleared: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("readiness after the stall cleared: %v", err)
	}
}

// A call in flight when the database stops answering ends when the
// guard trips (the stall limit after the last answer), not at its
// deadline: with a 503 that says it may have taken effect. Until a call
// finishes, new calls are refused unmade, but for one probe at a time
// once the abandoned calls have ended; a probe that stalls is given up
// too; one that gets an answer clears the stall, and readiness with it.
func TestCallsInFlightAreGivenUpWhenTheGuardTrips(t *testing.T) {
	entered, answer := make(chan struct{}), make(chan error)
	f := &fakeStore{checkout: func(ctx context.Context) error {
		entered <- struct{}{}
		select {
		case err := <-answer:
			return err
		case <-ctx.Done():
			return fmt.Errorf("wait for the database: %w", ctx.Err())
		}
	}}
	s, _, _, c := newTestStore(t, f)
	ctx := context.Background()
	held := func() chan error {
		done := make(chan error, 1)
		go func() { done <- s.InCheckout(ctx, 1, "a", nil) }()
		<-entered
		return done
	}
	abandoned := func(what string, done chan error) {
		t.Helper()
		err := <-done // on a guard that cannot give calls up, this waits forever
		if !isUnavailable(err) || !strings.Contains(err.Error(), "may or may not have taken effect") {
			t.Fatalf("%s: %v, want a 503 saying the outcome is unknown", what, err)
		}
	}

	first, second := held(), held()
	c.add(DefaultStallAfter - time.Millisecond)
	if err := s.writes.Ready(); err != nil {
		t.Fatalf("write guard before the stall limit: %v", err)
	}
	c.add(time.Millisecond)
	abandoned("first call in flight at the trip", first)
	abandoned("second call in flight at the trip", second)
	if err := s.Ping(ctx); err == nil || !strings.Contains(err.Error(), "not answering") {
		t.Fatalf("readiness after the trip: %v, want a failure", err)
	}

	probe := held() // the database is still silent: the probe waits
	if err := s.InCheckout(ctx, 2, "b", nil); !isUnavailable(err) || f.calls.Load() != 3 {
		t.Fatalf("checkout beside the probe: %v, %d calls; want a refusal, 3 calls", err, f.calls.Load())
	}
	c.add(DefaultStallAfter)
	abandoned("stalled probe", probe)

	probe = held()
	answer <- nil // the database answers again
	if err := <-probe; err != nil {
		t.Fatalf("probe: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("readiness after an answer: %v", err)
	}
	go func() { <-entered; answer <- nil }()
	if err := s.InCheckout(ctx, 3, "c", nil); err != nil {
		t.Fatalf("checkout after the stall cleared: %v", err)
	}
}

// A tripped guard does not fail readiness for good: a replica the
// balancer took out of rotation for it gets no call to probe with. Once
// the abandoned calls have ended and the trip is OpenFor old, readiness
// passes; the next call is the probe, and new calls are still refused
// beside it.
func TestATrippedGuardFailsReadinessForOpenForWithNothingInFlight(t *testing.T) {
	entered := make(chan struct{})
	f := &fakeStore{checkout: func(ctx context.Context) error {
		entered <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}}
	s, _, _, c := newTestStore(t, f)
	s.writes.cfg.OpenFor = time.Second
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { done <- s.InCheckout(ctx, 1, "a", nil) }()
	<-entered
	c.add(DefaultStallAfter)
	if err := <-done; !isUnavailable(err) {
		t.Fatalf("call in flight at the trip: %v, want a 503", err)
	}
	c.add(time.Second - time.Millisecond)
	if err := s.Ping(ctx); err == nil {
		t.Fatal("readiness within OpenFor of the trip: ready, want a failure")
	}
	c.add(time.Millisecond)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("readiness OpenFor after the trip, nothing in flight: %v", err)
	}
	go func() { done <- s.InCheckout(ctx, 2, "b", nil) }()
	<-entered // the probe
	if err := s.InCheckout(ctx, 3, "c", nil); !isUnavailable(err) || f.calls.Load() != 2 {
		t.Fatalf("checkout beside the probe: %v, %d calls; want a refusal, 2 calls", err, f.calls.Load())
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("readiness while the probe waits: ready, want a failure")
	}
	c.add(DefaultStallAfter)
	if err := <-done; !isUnavailable(err) {
		t.Fatalf("stalled probe: %v, want a 503", err)
	}
}

// Full jitter: every wait lies between zero and the capped exponential
// bound.
func TestBackoffIsCappedFullJitter(t *testing.T) {
	g := newGuard(Config{Name: "x"}, &guardMetrics{}, time.Now, realAfter)
	for attempt := 1; attempt <= 10; attempt++ {
		bound := min(DefaultBaseBackoff<<(attempt-1), DefaultMaxBackoff)
		for range 50 {
			d := g.backoff(attempt)
			if d < 0 || d > bound {
				t.Fatalf("attempt %d: wait %v outside [0, %v]", attempt, d, bound)
			}
		}
	}
}
