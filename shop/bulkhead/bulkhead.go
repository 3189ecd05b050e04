// Package bulkhead is a concurrency bound with a priority queue that refuses
// a request at once when the wait it can expect is longer than it may wait.
//
// A replica keeps two of them (shop/httpapi, --admission split): one for
// reads, sized to the CPUs, and one for writes, sized to what the database
// takes at once (on the embedded default, SQLite's one writer: a write past
// the bound would only wait for the writer inside the driver, first come
// first served, where no priority can act). Each is a fixed number of slots
// and a queue served highest class first, first come first served within a
// class. The wait a newcomer can expect follows from Little's law: with
// every slot busy, slots free at slots/service a second, so a request with
// k requests of its class or higher ahead of it waits about
// (k+1) x service / slots, where service is a moving average of the time a
// slot is held. A request that cannot be served within its budget that way
// is refused before it queues; one whose class was overtaken while it
// waited leaves when its wait is spent.
//
// Both refusals apply only while the bulkhead is overloaded: while its
// requests have come faster than its slots served them, by a margin, for
// Sustained (two windows of half of it, each counting the requests that
// came, refused ones included, and the slots released), or by less than
// the margin in each window but adding up past it (a fifth past the
// slots, window after window, grows the queue as surely). A queue alone is
// no sign of overload: a closed loop of N users keeps up to N-slots
// waiting for as long as it runs, at whatever wait its N and the service
// time make, and refusing one of them only sends it back (the old rule, a
// queue that stood 500 ms without emptying, refused 0.5 to 1.2 % of 16
// users on one replica, and 13 to 23 % under a 0.1-core quota, where the
// service time stretches to the quota's periods). Nor is a burst: a CPU
// quota's throttled stretch (up to 90 ms of each 100 ms period at 0.1
// core), a GC pause or a closed loop's start puts requests in the queue
// that the next periods serve, and a window in which they came without
// being served is followed by one that serves them. Open-loop arrivals
// past the capacity outrun the slots window after window: that is
// overload, and then a request that cannot be answered within its budget
// is better told at once. Nor is a stall of the slots' own work (the
// database's, for writes: a second of autovacuum under a small quota, a
// checkpoint): it serves nothing for a while as requests come, but they
// come no faster than before, so a window's arrivals are judged against
// the most the slots served in it or in the last 2 s, not only what they
// served in it. Once refused, a closed loop's user that does not wait out
// Retry-After sends again at once, each time an arrival, so a stall read
// as overload fed itself (40 % of a 0.1-core replica's requests refused
// in loadlab's replicas measure). Until then a request waits for its slot
// as long as its caller lets it. Past a full queue, a newcomer of a higher class
// takes the place of the newest waiter of the lowest class queued. Two
// bulkheads on the same CPUs rank classes across each other through
// Refused and ShedBelow.
//
// Nothing here reads a clock: callers pass the times they measured, so the
// rules are tested without timing.
package bulkhead

import (
	"errors"
	"sync"
	"time"
)

// ErrFull refuses a request at once: its expected wait is past its budget,
// or the queue is at its bound.
var ErrFull = errors.New("bulkhead: expected wait past the budget")

// Config sizes a Bulkhead.
type Config struct {
	// Slots is how many requests hold a slot at once (at least 1).
	Slots int
	// Classes is the number of priority classes, 0 (shed first) to
	// Classes-1 (shed last); at least 1.
	Classes int
	// MaxQueue bounds the waiting requests whatever their expected wait
	// (memory stays bounded when the service time is not yet known);
	// default 64 per slot.
	MaxQueue int
	// Weight is the moving average's weight of a new service time
	// (default 1/16).
	Weight float64
	// Sustained is how long requests must have come faster than the
	// slots served them before the bulkhead counts as overloaded and
	// refuses by expected wait (default DefaultSustained); negative: at
	// once, whatever the arrivals.
	Sustained time.Duration
}

// DefaultSustained is the default Config.Sustained: two windows of 250 ms,
// each two and a half periods of the kernel's CPU quota (100 ms), so that
// the requests a throttled stretch holds back are served within the
// window or the next, and short enough that a real overload is shed
// within a second.
const DefaultSustained = 500 * time.Millisecond

// recentWindows is how many windows back what the slots served counts as
// what they can serve: 2 s of 250 ms windows, past a second's stall.
const recentWindows = 8

// Bulkhead is a fixed number of slots and a priority queue before them.
// Its methods are safe for concurrent use.
type Bulkhead struct {
	slots, maxQueue int
	weight          float64
	// window is half of Sustained; 0: overloaded at once.
	window time.Duration

	mu       sync.Mutex
	inFlight int
	queued   int
	queues   [][]*Waiter // by class; each first come first served
	service  float64     // seconds; 0 until the first sample
	// The arrivals against the slots: the current window's start, the
	// requests that came in it (refused ones too) and the slots released
	// in it (counted in the window current when they are released, which
	// the times callers pass move on), and whether each of the last two
	// whole windows' arrivals outran the releases (outran[0] the last).
	windowStart     time.Time
	arrived, served int
	outran          [2]bool
	// recentServed is what the slots served in each of the last whole
	// windows, the last first.
	recentServed [recentWindows]int
	// excess is the arrivals past what the slots could serve, added up
	// window by window (a cumulative sum, never below zero nor above
	// twice the margin): a small excess that no single window shows.
	excess int
	// lastRefused is, by class, when a request was last refused.
	lastRefused []time.Time
}

// New returns a Bulkhead sized by cfg.
func New(cfg Config) *Bulkhead {
	cfg.Slots = max(cfg.Slots, 1)
	cfg.Classes = max(cfg.Classes, 1)
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 64 * cfg.Slots
	}
	if cfg.Weight <= 0 || cfg.Weight > 1 {
		cfg.Weight = 1.0 / 16
	}
	switch {
	case cfg.Sustained == 0:
		cfg.Sustained = DefaultSustained
	case cfg.Sustained < 0:
		cfg.Sustained = 0
	}
	return &Bulkhead{slots: cfg.Slots, maxQueue: cfg.MaxQueue, weight: cfg.Weight, window: cfg.Sustained / 2, queues: make([][]*Waiter, cfg.Classes), lastRefused: make([]time.Time, cfg.Classes)}
}

// Waiter is a request that holds a slot or waits for one.
type Waiter struct {
	class   int
	ready   chan struct{} // closed when the slot is granted
	evicted chan struct{} // closed when a higher class took its place
	// MaxWait is how long it may wait for its slot while the bulkhead is
	// overloaded: its budget less the expected service time, so that an
	// answer it waited for can still come within the budget. Zero when
	// the slot was granted at once. Past it, the caller asks Overloaded
	// whether to leave.
	MaxWait time.Duration
	granted bool // under the Bulkhead's lock
	left    bool // under the Bulkhead's lock: cancelled before granted
}

// grantedAtOnce is every waiter granted its slot as it entered: it never
// queues, so nothing changes it (Leave reports false for it at once), and
// sharing it spares each such request three allocations.
var grantedAtOnce = func() *Waiter {
	w := &Waiter{ready: make(chan struct{}), evicted: make(chan struct{}), granted: true}
	close(w.ready)
	return w
}()

// Ready is closed once the waiter holds a slot.
func (w *Waiter) Ready() <-chan struct{} { return w.ready }

// Evicted is closed when the waiter lost its place in a full queue to a
// request of a higher class: it holds nothing and is refused.
func (w *Waiter) Evicted() <-chan struct{} { return w.evicted }

// Enter asks, at now, for a slot for a request of class (clamped to the
// classes) that must be answered within budget. A free slot is granted at
// once; else the request queues, unless the bulkhead is overloaded (its
// arrivals have outrun its slots for Sustained) and it cannot expect to be served within
// budget, or the queue is full of requests of its class or higher: then
// it is refused with ErrFull.
//
// It allocates only for a request that queues: one granted at once gets
// the shared grantedAtOnce, and a refusal nothing, because a replica at
// ten times its capacity refuses nine requests for each one it serves.
func (b *Bulkhead) Enter(class int, budget time.Duration, now time.Time) (*Waiter, error) {
	class = min(max(class, 0), len(b.queues)-1)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.roll(now)
	b.arrived++
	if b.inFlight < b.slots && b.queued == 0 {
		b.inFlight++
		return grantedAtOnce, nil
	}
	if b.refusesLocked(class, budget) || b.queued >= b.maxQueue && !b.evictBelow(class) {
		b.refusedLocked(class, now)
		return nil, ErrFull
	}
	serve := time.Duration(b.service * float64(time.Second))
	w := &Waiter{class: class, ready: make(chan struct{}), evicted: make(chan struct{}), MaxWait: max(0, budget-serve)}
	b.queues[class] = append(b.queues[class], w)
	b.queued++
	return w, nil
}

// refusesLocked reports whether a request of class that may wait budget
// is refused at once: every slot busy or a queue standing, the bulkhead
// overloaded, and its expected wait and service past its budget, or the
// queue full of its class and higher.
func (b *Bulkhead) refusesLocked(class int, budget time.Duration) bool {
	if b.inFlight < b.slots && b.queued == 0 {
		return false
	}
	serve := time.Duration(b.service * float64(time.Second))
	if b.overloaded() && b.expectedWait(class)+serve > budget {
		return true
	}
	return b.queued >= b.maxQueue && !b.lowerQueued(class)
}

// lowerQueued reports whether a request of a class below class waits.
func (b *Bulkhead) lowerQueued(class int) bool {
	for c := 0; c < class; c++ {
		if len(b.queues[c]) > 0 {
			return true
		}
	}
	return false
}

// RefuseAtOnce is Enter for a caller that cannot wait (a connection's
// fast path, shop/httpapi/shedconn): when Enter, called at now, would
// refuse a request of class at once, it records that arrival and refusal
// as Enter does and reports true; otherwise it changes nothing and reports
// false, and the caller passes the request on to one that calls Enter.
func (b *Bulkhead) RefuseAtOnce(class int, budget time.Duration, now time.Time) bool {
	class = min(max(class, 0), len(b.queues)-1)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.roll(now)
	if !b.refusesLocked(class, budget) {
		return false
	}
	b.arrived++
	b.refusedLocked(class, now)
	return true
}

// expectedWait is Little's law: with every slot busy, a newcomer of class
// waits for the requests of its class or higher ahead of it, and its own
// turn, each slot freeing every service time.
func (b *Bulkhead) expectedWait(class int) time.Duration {
	ahead := 0
	for c := class; c < len(b.queues); c++ {
		ahead += len(b.queues[c])
	}
	return time.Duration(float64(ahead+1) * b.service / float64(b.slots) * float64(time.Second))
}

// evictBelow makes room in a full queue for a request of class: the newest
// waiter of the lowest class below it leaves, refused. It reports false
// when every waiter is of class or higher.
func (b *Bulkhead) evictBelow(class int) bool {
	for c := 0; c < class; c++ {
		q := b.queues[c]
		if len(q) == 0 {
			continue
		}
		w := q[len(q)-1]
		q[len(q)-1] = nil
		b.queues[c] = q[:len(q)-1]
		b.queued--
		w.left = true
		close(w.evicted)
		return true
	}
	return false
}

// Refused records that a request of class was refused at now (Enter
// records its own refusals; a caller whose waiter left records that).
func (b *Bulkhead) Refused(class int, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refusedLocked(class, now)
}

func (b *Bulkhead) refusedLocked(class int, now time.Time) {
	class = min(max(class, 0), len(b.queues)-1)
	if now.After(b.lastRefused[class]) {
		b.lastRefused[class] = now
	}
}

// ShedBelow reports whether, at now, a request of some class above class
// was refused here within the last four service times (long enough for
// the other bound's requests in flight to finish and leave the CPUs):
// requests this bulkhead ranks higher are missing their objectives. A caller with another bound on the
// same CPUs refuses its own requests of class or lower then, to leave the
// CPUs to them; as long as this bulkhead refuses nothing (a closed loop
// within objective, a burst that drains), it refuses nothing for it.
func (b *Bulkhead) ShedBelow(class int, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	window := time.Duration(4 * b.service * float64(time.Second))
	for c := max(class+1, 0); c < len(b.queues); c++ {
		if at := b.lastRefused[c]; !at.IsZero() && now.Sub(at) < window {
			return true
		}
	}
	return false
}

// Overloaded reports, at now, whether requests wait and the arrivals
// have outrun the slots for Sustained; when not, how long until it asks
// again (the current window's end).
func (b *Bulkhead) Overloaded(now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.roll(now)
	if b.queued > 0 && b.overloaded() {
		return true, 0
	}
	if b.window == 0 {
		return false, time.Nanosecond
	}
	return false, max(b.windowStart.Add(b.window).Sub(now), time.Nanosecond)
}

// overloaded reports whether the arrivals outran the slots in each of the
// last two whole windows.
func (b *Bulkhead) overloaded() bool {
	return b.window == 0 || b.outran[0] && b.outran[1]
}

// roll closes the windows that ended by now. A window's arrivals outran
// its slots when more came than the slots could serve (the most they
// served in it or one of the last recentWindows: a stall serves nothing
// while what comes stays at what they served before) by over twice the
// slots (what a burst of every slot's next request makes) and a third of
// that (what a quota's period held back and a window boundary cut off: a
// period is 100 ms of a 250 ms window). A closed loop cannot: each of its
// users sends again only once answered, so what comes follows what was
// served, and a queue it keeps is bounded by its users.
func (b *Bulkhead) roll(now time.Time) {
	if b.window == 0 {
		return
	}
	if b.windowStart.IsZero() {
		b.windowStart = now
		return
	}
	for now.Sub(b.windowStart) >= b.window {
		// What the slots could serve in a window: the most they served
		// in this one or the last recentWindows (a stall of the slots'
		// own work, the database's for the write bound, serves nothing
		// for a second while what comes stays at what they served before
		// it: a closed loop's users come to the stalled slots one by
		// one, an open loop below capacity at its rate).
		could := b.served
		for _, n := range b.recentServed {
			could = max(could, n)
		}
		copy(b.recentServed[1:], b.recentServed[:])
		b.recentServed[0] = b.served
		margin := max(2*b.slots, could/3)
		// What came past what could be served adds up: arrivals a fifth
		// past the slots outrun no single window by the margin, yet the
		// queue grows by that fifth every window, and its requests wait
		// as long as their deadlines allow, seconds past their
		// objectives. A burst, a closed loop and a stall do not add up:
		// what could be served is at least what was, so the sum over any
		// windows is at most what the queue grew by, which a burst gives
		// back in the next window and a closed loop's users bound (its
		// first windows may fill the sum; it stops growing once they all
		// wait, so it counts only in a window that itself came past what
		// could be served). Capped at twice the margin so that it is
		// forgotten within a few windows once the arrivals fall back.
		b.excess = min(max(0, b.excess+b.arrived-could), 2*margin)
		b.outran[1] = b.outran[0]
		b.outran[0] = b.arrived-could > margin || b.arrived > could && b.excess > margin
		b.arrived, b.served = 0, 0
		b.windowStart = b.windowStart.Add(b.window)
		if now.Sub(b.windowStart) >= 2*b.window {
			// No call for two windows or more: nothing came, so
			// nothing outran the slots.
			b.outran = [2]bool{}
			b.excess = 0
			b.windowStart = now
		}
	}
}

// Leave gives up a wait that was not served in time (or whose client left).
// It reports false when the slot had been granted meanwhile: the caller
// then holds it and must Release or Drop it.
func (b *Bulkhead) Leave(w *Waiter) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.granted {
		return false
	}
	if !w.left {
		w.left = true
		q := b.queues[w.class]
		for i, x := range q {
			if x == w {
				b.queues[w.class] = append(q[:i:i], q[i+1:]...)
				b.queued--
				break
			}
		}
	}
	return true
}

// Release returns a slot held for took, which the service time follows,
// and grants it to the next waiter.
func (b *Bulkhead) Release(took time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := took.Seconds()
	if b.service == 0 {
		b.service = s
	} else {
		b.service += b.weight * (s - b.service)
	}
	b.handOn()
}

// Drop returns a slot without counting its time (the client left, or the
// request's time says nothing about this service).
func (b *Bulkhead) Drop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.handOn()
}

// handOn frees a slot and grants free slots to the highest class waiting.
func (b *Bulkhead) handOn() {
	b.inFlight--
	b.served++
	for b.inFlight < b.slots && b.queued > 0 {
		for c := len(b.queues) - 1; c >= 0; c-- {
			if len(b.queues[c]) == 0 {
				continue
			}
			w := b.queues[c][0]
			b.queues[c][0] = nil
			b.queues[c] = b.queues[c][1:]
			b.queued--
			b.inFlight++
			w.granted = true
			close(w.ready)
			break
		}
	}
}

// Stats is a Bulkhead's state for metrics.
type Stats struct {
	Slots, InFlight, Queued int
	Service                 time.Duration // the moving average of a slot's hold
}

// Stats reads the state.
func (b *Bulkhead) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{Slots: b.slots, InFlight: b.inFlight, Queued: b.queued, Service: time.Duration(b.service * float64(time.Second))}
}
