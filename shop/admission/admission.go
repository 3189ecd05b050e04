// Package admission decides which requests a replica works on when more
// arrive than it can serve well: an adaptive concurrency limit computed
// from measured latency (the gradient of Netflix's concurrency-limits
// Gradient2), a queue ordered by priority in front of it, and refusals
// decided by the time a request would wait, not by the queue's length.
//
// Below the limit every request is admitted at once. At the limit a
// request queues if the wait it can expect (the requests ahead of it, of
// its priority or higher, times the mean service time, over the limit) is
// within its budget, else it is refused at once. A freed slot goes to the
// oldest waiter of the highest priority, so checkout overtakes browsing
// in the queue, and a lower-priority waiter pushed past its budget by
// those that overtook it is refused then, not when its time runs out.
//
// It imports only the standard library; its clock can be replaced, so its
// tests decide every latency it sees.
package admission

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"
)

// Why a request was refused. Each refusal is before any work.
var (
	// ErrOverloaded: the wait it could expect was past its budget, or
	// the queue was full of requests of its priority or higher.
	ErrOverloaded = errors.New("admission: over the limit, the wait too long for its priority")
	// ErrWaited: it waited in the queue as long as its budget allows.
	ErrWaited = errors.New("admission: waited its budget for a slot")
	// ErrDisplaced: it was queued, and higher-priority requests that
	// arrived later pushed its expected wait past its budget.
	ErrDisplaced = errors.New("admission: displaced from the queue by higher-priority requests")
)

// Config bounds the limit and says how it adapts. Zero fields take the
// defaults named.
type Config struct {
	// Classes is the number of priorities, 0 the lowest (default 3).
	Classes int
	// MinLimit, MaxLimit and InitialLimit bound the concurrency limit
	// (defaults 1, 512 and MinLimit). Equal values fix it.
	MinLimit, MaxLimit, InitialLimit int
	// MaxQueue is the most requests that wait at once, whatever their
	// budgets (default 3 × InitialLimit): a bound on memory.
	MaxQueue int
	// Tolerance is how far the recent latency may rise above the
	// long-term latency before the limit comes down (default 1.5).
	Tolerance float64
	// Smoothing is how much of a window's new limit is taken (default 0.2).
	Smoothing float64
	// Window: the limit is recomputed once a window has MinSamples
	// latencies and has lasted MinWindow (defaults 20 and 100 ms).
	MinSamples int
	MinWindow  time.Duration
	// LongWindows is how many windows the long-term latency averages
	// over (default 30: 3 s at 100 ms windows).
	LongWindows int
	// Now and After are the clock (defaults time.Now and time.After);
	// tests replace them.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
}

func (c Config) withDefaults() Config {
	c.Classes = cmpOr(c.Classes, 3)
	c.MinLimit = max(c.MinLimit, 1)
	c.MaxLimit = max(cmpOr(c.MaxLimit, 512), c.MinLimit)
	c.InitialLimit = min(max(c.InitialLimit, c.MinLimit), c.MaxLimit)
	c.MaxQueue = cmpOr(c.MaxQueue, 3*c.InitialLimit)
	c.Tolerance = cmpOr(c.Tolerance, 1.5)
	c.Smoothing = cmpOr(c.Smoothing, 0.2)
	c.MinSamples = cmpOr(c.MinSamples, 20)
	c.MinWindow = cmpOr(c.MinWindow, 100*time.Millisecond)
	c.LongWindows = cmpOr(c.LongWindows, 30)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.After == nil {
		c.After = time.After // Go collects an unfired timer nobody holds
	}
	return c
}

func cmpOr[T int | float64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Limiter admits requests under an adaptive concurrency limit. It is safe
// for concurrent use.
type Limiter struct {
	cfg Config

	mu       sync.Mutex
	limit    float64
	inflight int
	queues   [][]*waiter // by class, oldest first
	queued   int
	win      window
	shortRTT float64 // the last window's mean latency, ns: the wait estimate's
	longRTT  float64 // its moving average over LongWindows, ns
}

// window gathers the latencies the next limit is computed from.
type window struct {
	start       time.Time
	sum         time.Duration
	n           int
	maxInflight int
}

type waiter struct {
	class    int
	deadline time.Time
	ready    chan struct{} // closed when granted or refused
	granted  *Permit
	refused  error
}

// New returns a Limiter at cfg's initial limit.
func New(cfg Config) *Limiter {
	cfg = cfg.withDefaults()
	return &Limiter{
		cfg:    cfg,
		limit:  float64(cfg.InitialLimit),
		queues: make([][]*waiter, cfg.Classes),
		win:    window{start: cfg.Now()},
	}
}

// Permit is a slot a request holds while it is worked on. Exactly one of
// Record or Drop must be called.
type Permit struct {
	l        *Limiter
	start    time.Time
	inflight int
}

// Record returns the slot and counts its time in the latency the limit
// is computed from.
func (p *Permit) Record() { p.l.release(p, true) }

// Drop returns the slot without counting its time: the request ended for
// a reason that says nothing about this replica (the client left).
func (p *Permit) Drop() { p.l.release(p, false) }

// Acquire admits a request of class (0 the lowest), at once or after a
// wait of at most maxWait; otherwise it returns ErrOverloaded,
// ErrDisplaced, ErrWaited, or ctx's error.
func (l *Limiter) Acquire(ctx context.Context, class int, maxWait time.Duration) (*Permit, error) {
	class = min(max(class, 0), l.cfg.Classes-1)
	l.mu.Lock()
	if l.queued == 0 && l.inflight < int(l.limit) {
		p := l.grant()
		l.mu.Unlock()
		return p, nil
	}
	now := l.cfg.Now()
	if l.expectedWait(l.ahead(class)+1) > maxWait || (l.queued >= l.cfg.MaxQueue && !l.displaceOne(class)) {
		l.mu.Unlock()
		return nil, ErrOverloaded
	}
	w := &waiter{class: class, deadline: now.Add(maxWait), ready: make(chan struct{})}
	l.queues[class] = append(l.queues[class], w)
	l.queued++
	l.displaceStranded(class, now)
	timeout := l.cfg.After(maxWait) // before a test's clock can see it queued
	l.mu.Unlock()
	return l.wait(ctx, w, timeout)
}

func (l *Limiter) wait(ctx context.Context, w *waiter, timeout <-chan time.Time) (*Permit, error) {
	var err error
	select {
	case <-w.ready:
	case <-timeout:
		err = ErrWaited
	case <-ctx.Done():
		err = ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.granted != nil || w.refused != nil {
		return w.granted, w.refused // decided before the wait ended
	}
	l.remove(w)
	return nil, err
}

// ahead is the number of waiters a request of class would wait behind.
func (l *Limiter) ahead(class int) int {
	n := 0
	for c := class; c < len(l.queues); c++ {
		n += len(l.queues[c])
	}
	return n
}

// expectedWait is how long the n-th in line can expect to wait: slots free
// at about limit per mean service time. With no latency measured yet, it
// is 0: the first requests queue.
func (l *Limiter) expectedWait(n int) time.Duration {
	return time.Duration(float64(n) * l.shortRTT / l.limit)
}

// displaceOne makes room in a full queue for a request of class by
// refusing the newest waiter of the lowest class below it.
func (l *Limiter) displaceOne(class int) bool {
	for c := 0; c < class; c++ {
		if q := l.queues[c]; len(q) > 0 {
			l.refuseWaiter(q[len(q)-1], ErrDisplaced)
			return true
		}
	}
	return false
}

// displaceStranded refuses, in each class below class, the newest waiter
// whose expected wait the arrival pushed past its deadline: it would only
// wait to be refused.
func (l *Limiter) displaceStranded(class int, now time.Time) {
	for c := 0; c < class; c++ {
		q := l.queues[c]
		if len(q) == 0 {
			continue
		}
		if w := q[len(q)-1]; now.Add(l.expectedWait(l.ahead(c))).After(w.deadline) {
			l.refuseWaiter(w, ErrDisplaced)
		}
	}
}

func (l *Limiter) refuseWaiter(w *waiter, err error) {
	l.remove(w)
	w.refused = err
	close(w.ready)
}

func (l *Limiter) remove(w *waiter) {
	q := l.queues[w.class]
	for i, x := range q {
		if x == w {
			l.queues[w.class] = append(q[:i], q[i+1:]...)
			l.queued--
			return
		}
	}
}

// grant takes a slot. l.mu is held.
func (l *Limiter) grant() *Permit {
	l.inflight++
	return &Permit{l: l, start: l.cfg.Now(), inflight: l.inflight}
}

// handOff gives free slots to the waiters, highest class first, oldest
// first within a class. l.mu is held.
func (l *Limiter) handOff() {
	for c := len(l.queues) - 1; c >= 0; c-- {
		for len(l.queues[c]) > 0 && l.inflight < int(l.limit) {
			w := l.queues[c][0]
			l.queues[c][0] = nil // not kept alive by the array
			l.queues[c] = l.queues[c][1:]
			l.queued--
			w.granted = l.grant()
			close(w.ready)
		}
	}
}

func (l *Limiter) release(p *Permit, record bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	if record {
		l.sample(l.cfg.Now(), p)
	}
	l.handOff()
}

// sample adds a latency to the window and, once the window is full,
// computes the next limit from it.
func (l *Limiter) sample(now time.Time, p *Permit) {
	l.win.sum += now.Sub(p.start)
	l.win.n++
	l.win.maxInflight = max(l.win.maxInflight, p.inflight)
	if l.win.n < l.cfg.MinSamples || now.Sub(l.win.start) < l.cfg.MinWindow {
		return
	}
	l.adapt(float64(l.win.sum)/float64(l.win.n), l.win.maxInflight)
	l.win = window{start: now}
}

// adapt is Gradient2's step: the limit is scaled by how far the recent
// latency (short) has risen above the long-term one, within Tolerance,
// plus a headroom of √limit that lets it grow while latency holds; a
// replica using less than half its limit does not grow it.
func (l *Limiter) adapt(short float64, maxInflight int) {
	l.shortRTT = short
	if l.longRTT == 0 {
		l.longRTT = short
	} else {
		k := 1 / float64(l.cfg.LongWindows)
		l.longRTT += k * (short - l.longRTT)
	}
	if l.longRTT > 2*short {
		// Latency fell a long way (a burst's backlog drained): let the
		// long-term figure follow faster than its average would.
		l.longRTT *= 0.95
	}
	gradient := max(0.5, min(1, l.cfg.Tolerance*l.longRTT/short))
	if gradient == 1 && float64(maxInflight) < l.limit/2 {
		return // not limited by the limit: nothing learnt about a higher one
	}
	next := l.limit*gradient + math.Sqrt(l.limit)
	next = l.limit*(1-l.cfg.Smoothing) + next*l.cfg.Smoothing
	l.limit = max(float64(l.cfg.MinLimit), min(float64(l.cfg.MaxLimit), next))
}

// Limit is the current concurrency limit.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit)
}

// Inflight is the number of permits held.
func (l *Limiter) Inflight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight
}

// Queued is the number of requests waiting for a permit.
func (l *Limiter) Queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queued
}
