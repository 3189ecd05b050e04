package httpapi

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/shop/bulkhead"
)

// split is admission control by two bounds instead of one adaptive limit
// (--admission split): reads and writes wait for different things, so one
// limit computed from their mixed latency fits neither. Writes wait for
// the database's writer (on the embedded default, SQLite's one write
// connection, which takes one transaction at a time, first come first
// served), reads for a CPU; one shared limit was cut by the writes' wait
// and then refused reads the CPUs could have served at once, or grew for
// the reads and let writes queue inside the driver, where no priority acts.
// Each bound here is a fixed number of slots and a queue served by shed
// class (shop/bulkhead). While the slots serve requests as fast as they
// come (a closed loop of users, however many wait; a burst: a throttled
// stretch of a CPU quota, a GC pause), a request waits for its slot as
// long as its deadline allows and is never refused for the wait. Once
// requests have come faster than the slots served them for a while
// (open-loop overload), a request is refused at once when, by Little's
// law from the measured time a slot is held, it could not be answered
// within its route's objective, and one that waited past its objective
// leaves.
type split struct {
	reads, writes *bulkhead.Bulkhead
}

func newSplit(cfg AdmissionConfig, cpus uint) *split {
	cpus = max(cpus, 1)
	if cfg.ReadSlots == 0 {
		cfg.ReadSlots = 4 * cpus
	}
	if cfg.WriteSlots == 0 {
		cfg.WriteSlots = max(2, cpus)
	}
	classes := int(numShedClasses - shedFirst)
	return &split{
		reads:  bulkhead.New(bulkhead.Config{Slots: int(cfg.ReadSlots), Classes: classes, Sustained: cfg.Sustained}),
		writes: bulkhead.New(bulkhead.Config{Slots: int(cfg.WriteSlots), Classes: classes, Sustained: cfg.Sustained}),
	}
}

// writes reports whether a route changes state: its requests take a slot
// of the write bound. Every route of this API that is not a GET writes.
func writes(sp routeSpec) bool { return !strings.HasPrefix(sp.pattern, "GET ") }

func (s *split) register(reg prometheus.Registerer) {
	stat := func(f func(bulkhead.Stats) float64) func() float64 {
		return func() float64 { return f(s.reads.Stats()) + f(s.writes.Stats()) }
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_admission_limit",
			Help: "The concurrency limit: requests this replica works on at once (split: the read and write bounds together).",
		}, stat(func(s bulkhead.Stats) float64 { return float64(s.Slots) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_admission_in_flight",
			Help: "Requests holding an admission permit.",
		}, stat(func(s bulkhead.Stats) float64 { return float64(s.InFlight) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shop_admission_queued",
			Help: "Requests waiting for an admission permit.",
		}, stat(func(s bulkhead.Stats) float64 { return float64(s.Queued) })),
	)
	service := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shop_admission_service_seconds",
		Help: "Split admission: the moving average of the time a request holds a slot, by bound (reads, writes); a request's expected wait is the requests ahead of it times this over the slots.",
	}, []string{"bound"})
	reg.MustRegister(prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		service.WithLabelValues("reads").Set(s.reads.Stats().Service.Seconds())
		service.WithLabelValues("writes").Set(s.writes.Stats().Service.Seconds())
		service.Collect(ch)
	}))
}

// bounds are the bound whose slot a request of route sp takes, and the
// other one.
func (s *split) bounds(sp routeSpec) (own, other *bulkhead.Bulkhead) {
	if writes(sp) {
		return s.writes, s.reads
	}
	return s.reads, s.writes
}

// enterSplit is enter with split admission: the request takes a slot of
// its bound, waiting in its class's turn as long as its budget allows, or
// is refused before any work.
func (a *admission) enterSplit(sp routeSpec, deadline time.Time, w http.ResponseWriter, r *http.Request) (pass, error) {
	b, other := a.split.bounds(sp)
	class := int(sp.shed - shedFirst)
	ctx := r.Context()
	now := a.clock.Now()
	if other.ShedBelow(class, now) {
		// The other bound refused a higher class lately: its requests
		// miss their objectives for want of the CPUs this one would take.
		return pass{}, a.refuse(sp.shed, refusedAtOnce, w)
	}
	wt, err := b.Enter(class, a.budget(ctx, sp, deadline, now), now)
	if err != nil {
		return pass{}, a.refuse(sp.shed, refusedAtOnce, w)
	}
	if why, ok := a.wait(ctx, deadline, b, wt); !ok {
		if ctx.Err() == nil && (deadline.IsZero() || a.clock.Now().Before(deadline)) {
			b.Refused(class, a.clock.Now())
		}
		return pass{}, a.refuse(sp.shed, why, w)
	}
	return pass{bound: b, since: a.clock.Now()}, nil
}

// wait waits for wt's slot while ctx lasts, and never past deadline (zero:
// none), and reports whether the slot is held (and the request still
// wanted), or why it was refused. Past wt.MaxWait (its objective less the
// service time) it leaves only if the bound is overloaded, its arrivals
// outrunning its slots; else it waits on, and asks again at the end of the
// bound's current window.
func (a *admission) wait(ctx context.Context, deadline time.Time, b *bulkhead.Bulkhead, wt *bulkhead.Waiter) (int, bool) {
	select {
	case <-wt.Ready():
	default:
		if !deadline.IsZero() {
			// Only a request that queues bounds its wait by a context of
			// its own: one granted or refused at once needs none.
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
		}
		if why, ok := a.queued(ctx, b, wt); !ok {
			return why, false
		}
	}
	if ctx.Err() != nil {
		// The deadline passed (or the client left) while it waited.
		b.Drop()
		return refusedWaited, false
	}
	return 0, true
}

// queued waits for a queued wt's slot (see wait).
func (a *admission) queued(ctx context.Context, b *bulkhead.Bulkhead, wt *bulkhead.Waiter) (int, bool) {
	after := wt.MaxWait
	for {
		fired, stop := a.clock.After(after)
		select {
		case <-wt.Ready():
			stop()
			return 0, true
		case <-wt.Evicted():
			stop()
			return refusedAtOnce, false // a higher class took its place in a full queue
		case <-ctx.Done():
			stop()
			return refusedWaited, !b.Leave(wt)
		case <-fired:
			over, until := b.Overloaded(a.clock.Now())
			if over {
				return refusedWaited, !b.Leave(wt)
			}
			after = until
		}
	}
}
