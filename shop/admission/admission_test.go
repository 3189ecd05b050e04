package admission_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop/admission"
)

// The priorities of the shop's routes.
const (
	browsing = iota
	cart
	checkout
)

// clock is a fake clock: time moves only when the test says, and timers
// fire when it moves past them.
type clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []timer
}

type timer struct {
	at time.Time
	ch chan time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.timers = append(c.timers, timer{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
		} else {
			t.ch <- c.now
		}
	}
	c.timers = kept
}

func newLimiter(c *clock, cfg admission.Config) *admission.Limiter {
	cfg.Now, cfg.After = c.Now, c.After
	return admission.New(cfg)
}

// result is what a background Acquire returned.
type result struct {
	p   *admission.Permit
	err error
}

// queue starts an Acquire in the background and returns once it waits in
// the queue, which then holds n requests.
func queue(t *testing.T, l *admission.Limiter, class int, budget time.Duration, n int) <-chan result {
	t.Helper()
	ch := make(chan result, 1)
	go func() {
		p, err := l.Acquire(context.Background(), class, budget)
		ch <- result{p, err}
	}()
	testwait.Eventually(t, 10*time.Second, func() error {
		if q := l.Queued(); q != n {
			return fmt.Errorf("%d queued, want %d", q, n)
		}
		return nil
	})
	return ch
}

func acquire(t *testing.T, l *admission.Limiter, class int, budget time.Duration) *admission.Permit {
	t.Helper()
	p, err := l.Acquire(context.Background(), class, budget)
	if err != nil {
		t.Fatalf("class %d refused: %v, want admitted at once", class, err)
	}
	return p
}

// measure runs one window of n requests that each take rtt, so that the
// limiter knows its service time.
func measure(t *testing.T, c *clock, l *admission.Limiter, n int, rtt time.Duration) {
	t.Helper()
	ps := make([]*admission.Permit, n)
	for i := range ps {
		ps[i] = acquire(t, l, checkout, time.Hour)
	}
	c.Advance(rtt)
	for _, p := range ps {
		p.Record()
	}
}

// drain takes every result as it comes, failing on a refusal, and returns
// each permit at once, so that the next waiter is granted.
func drain(t *testing.T, chs ...<-chan result) {
	t.Helper()
	all := make(chan result, len(chs))
	for _, ch := range chs {
		go func() { all <- <-ch }()
	}
	for range chs {
		r := <-all
		if r.err != nil {
			t.Fatalf("%v, want admitted once slots freed", r.err)
		}
		r.p.Record()
	}
}

func pending(ch <-chan result) bool {
	select {
	case r := <-ch:
		panic(fmt.Sprintf("decided: %+v", r))
	default:
		return true
	}
}

// At or below the limit nothing waits and nothing is refused; a burst past
// it whose wait fits the requests' budgets queues, whatever the queue's
// length against the limit (failsafe-go's queue, which this replaces,
// refused browsing once more waited than the limit). Only the request
// whose expected wait is past its budget is refused, at once.
func TestABurstThatFitsItsBudgetQueuesInsteadOfBeingRefused(t *testing.T) {
	c := newClock()
	l := newLimiter(c, admission.Config{MinLimit: 4, MaxLimit: 4, MinSamples: 4, MinWindow: time.Millisecond, MaxQueue: 100})
	measure(t, c, l, 4, 10*time.Millisecond) // 4 at once, 10 ms each: 2.5 ms a slot

	held := make([]*admission.Permit, 4)
	for i := range held {
		held[i] = acquire(t, l, browsing, 0) // below the limit: at once, no wait allowed
	}
	var waiting []<-chan result
	for n := 1; n <= 10; n++ { // the 10th expects 25 ms: its budget
		waiting = append(waiting, queue(t, l, n%3, 25*time.Millisecond, n))
	}
	if _, err := l.Acquire(context.Background(), browsing, 25*time.Millisecond); !errors.Is(err, admission.ErrOverloaded) {
		t.Fatalf("the 11th in line (27.5 ms expected, 25 ms allowed): %v, want ErrOverloaded at once", err)
	}
	for _, p := range held {
		p.Drop()
	}
	drain(t, waiting...)
}

// A freed slot goes to the highest priority waiting, whatever the order
// they came in (failsafe-go's queue was first come, first served).
func TestCheckoutOvertakesBrowsingInTheQueue(t *testing.T) {
	c := newClock()
	l := newLimiter(c, admission.Config{MinLimit: 1, MaxLimit: 1})
	held := acquire(t, l, browsing, 0)
	b := queue(t, l, browsing, time.Hour, 1)
	k := queue(t, l, cart, time.Hour, 2)
	o := queue(t, l, checkout, time.Hour, 3)

	for _, want := range []struct {
		name string
		ch   <-chan result
	}{{"checkout", o}, {"cart", k}, {"browsing", b}} {
		held.Record()
		r := <-want.ch
		if r.err != nil {
			t.Fatalf("%s: %v", want.name, r.err)
		}
		held = r.p
	}
	held.Record()
}

// Past the limit, with checkouts arriving, browsing is refused first: a
// browsing request waits behind every class, so its expected wait passes
// its budget first; a browsing request already queued that the checkouts
// overtook is refused as they arrive (not when its time runs out); and
// checkout is still admitted to the queue.
func TestBrowsingIsShedWhileCheckoutIsAdmitted(t *testing.T) {
	c := newClock()
	l := newLimiter(c, admission.Config{MinLimit: 2, MaxLimit: 2, MinSamples: 2, MinWindow: time.Millisecond, MaxQueue: 100})
	measure(t, c, l, 2, 10*time.Millisecond) // 5 ms a slot
	budget := 25 * time.Millisecond          // 5 in line
	held := []*admission.Permit{acquire(t, l, checkout, 0), acquire(t, l, checkout, 0)}

	b1 := queue(t, l, browsing, budget, 1)
	b2 := queue(t, l, browsing, budget, 2)
	b3 := queue(t, l, browsing, budget, 3)
	o1 := queue(t, l, checkout, budget, 4)
	o2 := queue(t, l, checkout, budget, 5)
	// The third checkout puts the newest browsing request 6th in line
	// (30 ms): it is refused as the checkout comes.
	o3 := queue(t, l, checkout, budget, 5)
	if r := <-b3; !errors.Is(r.err, admission.ErrDisplaced) {
		t.Fatalf("the newest browsing request: %+v, want ErrDisplaced", r)
	}
	if _, err := l.Acquire(context.Background(), browsing, budget); !errors.Is(err, admission.ErrOverloaded) {
		t.Fatalf("browsing 6th in line: %v, want ErrOverloaded", err)
	}
	// A fourth checkout is 4th in its line (20 ms) and queues; the
	// browsing request it pushes to 6th goes.
	o4 := queue(t, l, checkout, budget, 5)
	if r := <-b2; !errors.Is(r.err, admission.ErrDisplaced) {
		t.Fatalf("browsing pushed to 6th: %+v, want ErrDisplaced", r)
	}
	pending(b1)
	if q := l.Queued(); q != 5 {
		t.Fatalf("%d queued, want the 4 checkouts and 1 browsing request", q)
	}

	// Slots free: everything left is served.
	for _, p := range held {
		p.Record()
	}
	drain(t, o1, o2, o3, o4, b1)
}

// A full queue makes room for a higher priority by refusing the newest
// waiter of the lowest; the lowest priority is refused at once.
func TestAFullQueueRefusesTheLowestPriority(t *testing.T) {
	c := newClock()
	l := newLimiter(c, admission.Config{MinLimit: 1, MaxLimit: 1, MaxQueue: 2})
	held := acquire(t, l, cart, 0)
	b := queue(t, l, browsing, time.Hour, 1)
	k := queue(t, l, cart, time.Hour, 2)
	if _, err := l.Acquire(context.Background(), browsing, time.Hour); !errors.Is(err, admission.ErrOverloaded) {
		t.Fatalf("browsing with the queue full: %v, want ErrOverloaded", err)
	}
	o := queue(t, l, checkout, time.Hour, 2)
	if r := <-b; !errors.Is(r.err, admission.ErrDisplaced) {
		t.Fatalf("queued browsing: %+v, want displaced by the checkout", r)
	}
	pending(k)
	held.Drop()
	(<-o).p.Drop()
	(<-k).p.Drop()
}

// A request that waits its whole budget is refused (ErrWaited) and leaves
// the queue; one whose client leaves gets the context's error.
func TestAWaiterLeavesWhenItsBudgetOrContextEnds(t *testing.T) {
	c := newClock()
	l := newLimiter(c, admission.Config{MinLimit: 1, MaxLimit: 1})
	held := acquire(t, l, checkout, 0)
	w := queue(t, l, cart, 50*time.Millisecond, 1)
	c.Advance(49 * time.Millisecond)
	pending(w)
	c.Advance(time.Millisecond)
	if r := <-w; !errors.Is(r.err, admission.ErrWaited) {
		t.Fatalf("%+v, want ErrWaited", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { _, err := l.Acquire(ctx, checkout, time.Hour); ch <- err }()
	testwait.Eventually(t, 10*time.Second, func() error {
		if l.Queued() != 1 {
			return errors.New("not queued yet")
		}
		return nil
	})
	cancel()
	if err := <-ch; !errors.Is(err, context.Canceled) {
		t.Fatalf("%v, want context.Canceled", err)
	}
	if q := l.Queued(); q != 0 {
		t.Fatalf("%d still queued", q)
	}
	held.Record()
	acquire(t, l, browsing, 0).Drop() // the slot was returned
}

// The limit grows while latency holds, comes down when latency rises with
// the load, and grows again when it falls back.
func TestTheLimitFollowsLatency(t *testing.T) {
	c := newClock()
	l := newLimiter(c, admission.Config{MinLimit: 2, MaxLimit: 200, InitialLimit: 20, MinSamples: 2, MinWindow: time.Millisecond})
	run := func(rtt time.Duration, windows int) int {
		for range windows {
			measure(t, c, l, l.Limit(), rtt) // the limit full: not app-limited
		}
		return l.Limit()
	}
	start := l.Limit()
	fast := run(10*time.Millisecond, 10)
	if fast <= start {
		t.Fatalf("10 windows at a steady 10 ms: limit %d, want above %d", fast, start)
	}
	slow := run(40*time.Millisecond, 10)
	if slow >= fast {
		t.Fatalf("10 windows at 40 ms: limit %d, want below %d", slow, fast)
	}
	again := run(10*time.Millisecond, 10)
	if again <= slow {
		t.Fatalf("back at 10 ms: limit %d, want above %d", again, slow)
	}
	t.Logf("limit %d -> %d (10 ms) -> %d (40 ms) -> %d (10 ms)", start, fast, slow, again)
}

// A replica that uses less than half its limit learns nothing about a
// higher one: the limit does not grow.
func TestTheLimitDoesNotGrowWhileUnused(t *testing.T) {
	c := newClock()
	l := newLimiter(c, admission.Config{MinLimit: 2, MaxLimit: 200, InitialLimit: 20, MinSamples: 2, MinWindow: time.Millisecond})
	for range 20 {
		measure(t, c, l, 2, 10*time.Millisecond)
	}
	if got := l.Limit(); got != 20 {
		t.Fatalf("limit %d after 20 windows at 2 in flight, want 20", got)
	}
}
