package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/failsafe-go/failsafe-go/priority"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/shop/bulkhead"
)

// AdmissionConfig is the replica's admission control. The default
// (DefaultAdmission, --admission on or split) is two bounds, one for reads
// and one for writes, each a fixed number of slots and a queue served by
// priority (routePlan's shed class: checkout and orders first, then the
// cart, browsing last; health and readiness never queue), refusing with
// 503 and Retry-After, before any work, only once requests have come
// faster than its slots served them for a while (open-loop overload, not
// a burst or a closed loop of users, however long their wait) and then
// what could not be answered within its objective (split.go). --admission adaptive is failsafe-go's adaptive
// limiter instead: a limit computed from measured latency, growing while
// latency stays at its baseline and shrinking when latency rises with
// concurrency (Netflix's concurrency-limits), a short queue past it,
// refusing by priority as the queue grows. The zero value admits
// everything (no limit); cmd/shop turns it on (--admission).
type AdmissionConfig struct {
	On bool
	// Split, with On, replaces the adaptive limit by two fixed bounds
	// with priority queues (split.go, --admission split): ReadSlots for
	// reads (default 4 per CPU), WriteSlots for writes (default 1 per CPU,
	// at least 2: on the embedded default SQLite takes one write at a
	// time), each refusing a request whose expected wait, by Little's law
	// from the measured service time, would not let it be answered within
	// its objective.
	Split                 bool
	ReadSlots, WriteSlots uint
	// Sustained, in split mode, is how long requests must have come to a
	// bound faster than its slots served them before it counts as
	// overloaded and refuses (default bulkhead.DefaultSustained, 500 ms);
	// negative: at once (tests).
	Sustained time.Duration
	// MinLimit, MaxLimit and InitialLimit bound the adaptive limit
	// (defaults: 4 per CPU, 512, 16 per CPU). Equal values fix it.
	MinLimit, MaxLimit, InitialLimit uint
	// ShedFrom and ShedAll are queue lengths, as multiples of the limit:
	// past ShedFrom, requests are refused by priority, more of them the
	// longer the queue; at ShedAll, all (defaults 1 and 3).
	ShedFrom, ShedAll float64
	// Recalibrate is how often, while the limit is reached, the priority
	// below which requests are refused is recomputed from the queue
	// (default 50 ms); negative: on every request (tests).
	Recalibrate time.Duration
	// MaxWait, when set, replaces the routes' objectives as the longest a
	// request waits for a slot.
	MaxWait time.Duration
}

// DefaultAdmission is the admission control a replica running on cpus
// CPUs (its GOMAXPROCS) starts with: split admission (4 read slots per
// CPU, 1 write slot per CPU and at least 2, refusing only once a queue
// stands). Its adaptive fields are what --admission adaptive starts from:
// a limit of 16 requests per CPU, adapting between 4 per CPU and 512, and
// a queue that refuses by priority past one limit's worth and refuses
// everything at three; a load balancer in front sizes its per-client
// limits from them (cmd/cluster).
//
// Split is the default because the adaptive limiter refused requests at
// loads the replica served within objective: its limit may fall to 4 per
// CPU when latency rises with concurrency, which on one CPU it always
// does, and then a closed loop of 16 users kept three limits' worth
// queued, which it reads as overload (TestAClosedLoopWithinObjectiveIsNeverRefused).
func DefaultAdmission(cpus uint) AdmissionConfig {
	cpus = max(cpus, 1)
	return AdmissionConfig{On: true, Split: true, MinLimit: 4 * cpus, MaxLimit: max(512, 4*cpus), InitialLimit: min(16*cpus, max(512, 4*cpus)), ShedFrom: 1, ShedAll: 3}
}

// clock is where admission reads the time: the wall clock, or a test's.
type clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed, and a
	// function that stops it.
	After(d time.Duration) (<-chan time.Time, func())
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) After(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// errShed refuses a request before any work: the replica is over its
// limit, or the request waited for a slot as long as its route allows.
var errShed = errors.New("overloaded: refused before any work")

// errShedAtOnce is errShed for a request refused at once, without waiting
// (over the limit, the queue too long for it): the replica is in sustained
// overload, and its connection may go to the fast path (fastpath.go).
var errShedAtOnce = fmt.Errorf("%w at once", errShed)

// admission is the middleware that admits requests under the limit.
type admission struct {
	clock       clock
	split       *split // set in split mode, instead of the limiter
	limiter     adaptivelimiter.PriorityLimiter[any]
	prioritizer priority.Prioritizer
	every       time.Duration
	maxWait     time.Duration
	lastCalib   atomic.Int64 // unix nanoseconds
	refused     [numShedClasses][2]prometheus.Counter
	admitted    [numShedClasses]prometheus.Counter
	summary     *refusalSummary // the refusals' lines in the log (nil: none)
}

// Why a request was refused, the label of shop_admission_refused_total.
const (
	refusedAtOnce = iota // over the limit, the queue too long for its priority
	refusedWaited        // it waited in the queue as long as its route allows
)

func newAdmission(cfg AdmissionConfig, reg prometheus.Registerer) *admission {
	if !cfg.On {
		return nil
	}
	if cfg.Split {
		a := &admission{clock: wallClock{}, split: newSplit(cfg, uint(runtime.GOMAXPROCS(0))), maxWait: cfg.MaxWait}
		a.register(reg)
		return a
	}
	def := DefaultAdmission(uint(runtime.GOMAXPROCS(0)))
	if cfg.MinLimit == 0 {
		cfg.MinLimit = def.MinLimit
	}
	if cfg.MaxLimit == 0 {
		cfg.MaxLimit = max(def.MaxLimit, cfg.MinLimit)
	}
	if cfg.InitialLimit == 0 {
		cfg.InitialLimit = min(max(def.InitialLimit, cfg.MinLimit), cfg.MaxLimit)
	}
	if cfg.ShedFrom <= 0 {
		cfg.ShedFrom = def.ShedFrom
	}
	if cfg.ShedAll <= cfg.ShedFrom {
		cfg.ShedAll = max(def.ShedAll, cfg.ShedFrom+1)
	}
	if cfg.Recalibrate == 0 {
		cfg.Recalibrate = 50 * time.Millisecond
	}
	p := adaptivelimiter.NewPrioritizer()
	a := &admission{
		clock:       wallClock{},
		prioritizer: p,
		every:       cfg.Recalibrate,
		maxWait:     cfg.MaxWait,
		limiter: adaptivelimiter.NewBuilder[any]().
			WithLimits(cfg.MinLimit, cfg.MaxLimit, cfg.InitialLimit).
			WithQueueing(cfg.ShedFrom, cfg.ShedAll).
			BuildPrioritized(p),
	}
	a.register(reg)
	return a
}

func (a *admission) register(reg prometheus.Registerer) {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shop_admission_refused_total",
		Help: "Requests refused by admission control before any work (503), by shed class (browsing, cart, checkout) and reason: limit (refused at once) or waited (waited for a slot as long as the route's objective or deadline allows).",
	}, []string{"class", "reason"})
	admitted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shop_admission_admitted_total",
		Help: "Requests admitted by admission control, by shed class.",
	}, []string{"class"})
	reg.MustRegister(refused, admitted)
	for c := shedFirst; c < numShedClasses; c++ {
		a.refused[c][refusedAtOnce] = refused.WithLabelValues(c.String(), "limit")
		a.refused[c][refusedWaited] = refused.WithLabelValues(c.String(), "waited")
		a.admitted[c] = admitted.WithLabelValues(c.String())
	}
	if a.split != nil {
		a.split.register(reg)
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_admission_limit",
			Help: "The adaptive concurrency limit: requests this replica works on at once.",
		}, func() float64 { return float64(a.limiter.Limit()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_admission_in_flight",
			Help: "Requests holding an admission permit.",
		}, func() float64 { return float64(a.limiter.Inflight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_admission_queued",
			Help: "Requests waiting for an admission permit.",
		}, func() float64 { return float64(a.limiter.Queued()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_admission_shed_below_level",
			Help: "The priority level (0-499; browsing 100-199, cart 200-299, checkout 300-399) below which requests are refused; 0 when none are.",
		}, func() float64 { return float64(a.prioritizer.RejectionThreshold()) }),
	)
}

// level maps a shed class onto failsafe's priorities; a random level within
// the priority's band lets the limiter shed part of a class, not all of it
// or none.
func (c shedClass) level() int {
	switch c {
	case shedFirst:
		return priority.Low.RandomLevel()
	case shedNext:
		return priority.Medium.RandomLevel()
	}
	return priority.High.RandomLevel()
}

// A pass is an admitted request's hold on admission control, given back by
// done (or drop) when the request ends: a slot of a split bound, or a
// permit of the adaptive limiter, or nothing (admission off, a route never
// shed, a stream, which needs its hold only to open).
type pass struct {
	bound  *bulkhead.Bulkhead
	since  time.Time // when bound's slot was granted
	permit adaptivelimiter.Permit
}

// enter admits a request of route sp, which must be answered by deadline
// (zero: none), or refuses it: then Retry-After is set on w, the refusal
// counted, and the error is errShed. The request waits for a slot at most
// its route's objective (a later answer would miss it anyway) and never
// past its deadline, and is refused at once when the queue is too long
// for its class. Nothing else is done before: the handler (handle) sets
// up the request's context, recorder and log only for what is admitted,
// so that a refusal costs a small part of an answer.
func (a *admission) enter(sp routeSpec, deadline time.Time, w http.ResponseWriter, r *http.Request) (pass, error) {
	if a == nil || sp.shed == shedNever {
		return pass{}, nil
	}
	var p pass
	var err error
	if a.split != nil {
		p, err = a.enterSplit(sp, deadline, w, r)
	} else {
		p, err = a.enterAdaptive(sp, deadline, w, r)
	}
	if err != nil {
		return pass{}, err
	}
	a.admitted[sp.shed].Inc()
	if sp.stream {
		// A stream needs its hold only to open: holding it for its
		// whole life would take a slot from short requests, and its
		// duration says nothing about the replica's latency.
		a.drop(p)
		return pass{}, nil
	}
	return p, nil
}

// done gives back p's hold when its request ended with err: its time
// counts toward the service time (split) or the limit (adaptive) only if
// it measured this replica (measured).
func (a *admission) done(ctx context.Context, p pass, err error) {
	if !measured(ctx, err) {
		a.drop(p)
		return
	}
	switch {
	case p.bound != nil:
		p.bound.Release(a.clock.Now().Sub(p.since))
	case p.permit != nil:
		p.permit.Record()
	}
}

// drop gives back p's hold without counting its time (a panic, a client
// that left, a stream).
func (a *admission) drop(p pass) {
	switch {
	case p.bound != nil:
		p.bound.Drop()
	case p.permit != nil:
		p.permit.Drop()
	}
}

// admit wraps a route's handler with enter and done, for the simulations
// that drive admission control alone (the handler calls them itself).
func (a *admission) admit(sp routeSpec, next handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (err error) {
		p, err := a.enter(sp, time.Time{}, w, r)
		if err != nil {
			return err
		}
		defer func() {
			// A panic is answered above (handle); its hold must not go
			// with it, or a bound of a few slots loses them for good.
			if v := recover(); v != nil {
				a.drop(p)
				panic(v)
			}
		}()
		err = next(w, r)
		a.done(r.Context(), p, err)
		return err
	}
}

// enterAdaptive is enter with failsafe-go's adaptive limiter.
func (a *admission) enterAdaptive(sp routeSpec, deadline time.Time, w http.ResponseWriter, r *http.Request) (pass, error) {
	a.calibrate()
	ctx := r.Context()
	now := time.Now()
	wait := a.budget(ctx, sp, deadline, now)
	level := sp.shed.level()
	if !a.limiter.CanAcquirePermitWithLevel(level) {
		return pass{}, a.refuse(sp.shed, refusedAtOnce, w)
	}
	permit, err := a.limiter.AcquirePermitWithMaxWait(priority.ContextWithLevel(ctx, level), wait)
	if err != nil {
		return pass{}, a.refuse(sp.shed, refusedWaited, w)
	}
	if ctx.Err() != nil || !deadline.IsZero() && !time.Now().Before(deadline) {
		// The deadline passed (or the client left) while it waited.
		permit.Drop()
		return pass{}, a.refuse(sp.shed, refusedWaited, w)
	}
	return pass{permit: permit}, nil
}

// budget is how long a request may wait for a slot: its route's objective
// (a later answer would miss it anyway) or MaxWait, and never past its
// deadline (or its context's).
func (a *admission) budget(ctx context.Context, sp routeSpec, deadline, now time.Time) time.Duration {
	wait := sp.objective
	if a.maxWait > 0 {
		wait = a.maxWait
	}
	if d, ok := ctx.Deadline(); ok {
		wait = max(0, min(wait, time.Until(d)))
	}
	if !deadline.IsZero() {
		wait = max(0, min(wait, deadline.Sub(now)))
	}
	return wait
}

// measured reports whether a request's time in the handler measures this
// replica: not when the client left, or was slow to send its body.
func measured(ctx context.Context, err error) bool {
	var body *bodyError
	return !errors.Is(ctx.Err(), context.Canceled) && !errors.As(err, &body)
}

// retryAfterOne is every refusal's Retry-After value, shared: net/http only
// reads a header's values, and a refusal should not allocate them.
var retryAfterOne = []string{"1"}

func (a *admission) refuse(c shedClass, why int, w http.ResponseWriter) error {
	a.count(c, why)
	w.Header()["Retry-After"] = retryAfterOne
	if why == refusedAtOnce {
		return errShedAtOnce
	}
	return errShed
}

// count counts a refusal of class c by its reason, in the metrics and the
// log's summary.
func (a *admission) count(c shedClass, why int) {
	a.refused[c][why].Inc()
	a.summary.note(c, why)
}

// refusesAtOnce is enter for a connection's fast path (fastpath.go), which
// cannot wait: it reports whether enter, at now, would refuse a request of
// route sp at once, and then counts the refusal as enter does; otherwise it
// changes nothing, and the request goes to net/http and enter.
func (a *admission) refusesAtOnce(sp routeSpec, deadline time.Time) bool {
	if a == nil || sp.shed == shedNever || sp.stream {
		return false
	}
	var refused bool
	if a.split != nil {
		b, other := a.split.bounds(sp)
		class, now := int(sp.shed-shedFirst), a.clock.Now()
		refused = other.ShedBelow(class, now) || b.RefuseAtOnce(class, a.budget(context.Background(), sp, deadline, now), now)
	} else {
		a.calibrate()
		refused = !a.limiter.CanAcquirePermitWithLevel(sp.shed.level())
	}
	if refused {
		a.count(sp.shed, refusedAtOnce)
	}
	return refused
}

// calibrate recomputes, at most every a.every while the limit is reached,
// the priority level below which requests are refused. It runs on the
// request path instead of a ticker, so an idle replica does nothing and
// the handler needs no goroutine of its own to stop.
func (a *admission) calibrate() {
	if a.limiter.Inflight() < a.limiter.Limit() {
		return // below the limit, every request is admitted
	}
	now := time.Now().UnixNano()
	last := a.lastCalib.Load()
	if a.every > 0 && now-last < int64(a.every) {
		return
	}
	if a.lastCalib.CompareAndSwap(last, now) {
		a.prioritizer.Calibrate()
	}
}
