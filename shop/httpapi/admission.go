package httpapi

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	admissionpkg "github.com/perfscale/perfscale/shop/admission"
)

// AdmissionConfig is the replica's admission control (shop/admission): an
// adaptive limit on the requests it works on at once, computed from their
// measured latency (Netflix's Gradient2: the limit grows while latency
// stays near its long-term level and shrinks when it rises), and a queue
// in front of it ordered by routePlan's shed class (checkout and orders
// first, the cart next, browsing last; health and readiness never wait).
// A request that would wait longer than its budget (half its route's
// objective, never past its deadline) is refused at once with 503 and
// Retry-After, before any work; browsing, which waits behind every other
// class, is refused first. The zero value admits everything (no limit);
// cmd/shop turns it on (--admission).
type AdmissionConfig struct {
	On bool
	// MinLimit, MaxLimit and InitialLimit bound the adaptive limit
	// (defaults: 4 per CPU, 512, 16 per CPU). Equal values fix it.
	MinLimit, MaxLimit, InitialLimit uint
	// MaxQueue is the most requests that wait at once (default three
	// times InitialLimit); past it a request displaces the newest waiter
	// of a lower class, or is refused.
	MaxQueue uint
	// MaxWait, when set, replaces the routes' budgets (half their
	// objectives) as the longest a request waits for a slot.
	MaxWait time.Duration
}

// DefaultAdmission is the admission control a replica running on cpus
// CPUs (its GOMAXPROCS) starts with: a limit of 16 requests per CPU,
// adapting between 4 per CPU and 512, and at most three limits' worth
// waiting. A load balancer in front sizes its per-client limits from it
// (cmd/cluster).
func DefaultAdmission(cpus uint) AdmissionConfig {
	cpus = max(cpus, 1)
	maxLimit := max(512, 4*cpus)
	initial := min(16*cpus, maxLimit)
	return AdmissionConfig{On: true, MinLimit: 4 * cpus, MaxLimit: maxLimit, InitialLimit: initial, MaxQueue: 3 * initial}
}

// errShed refuses a request before any work: the replica is over its
// limit, or the request waited for a slot as long as its route allows.
var errShed = errors.New("overloaded: refused before any work")

// admission is the middleware that admits requests under the limit.
type admission struct {
	limiter  *admissionpkg.Limiter
	maxWait  time.Duration
	refused  [numShedClasses][numRefusals]prometheus.Counter
	admitted [numShedClasses]prometheus.Counter
}

// Why a request was refused, the label of shop_admission_refused_total.
const (
	refusedAtOnce    = iota // its expected wait past its budget, or the queue full
	refusedWaited           // it waited in the queue as long as its budget allows
	refusedDisplaced        // queued, then overtaken by higher classes past its budget
	numRefusals
)

var refusalNames = [numRefusals]string{"limit", "waited", "displaced"}

func newAdmission(cfg AdmissionConfig, reg prometheus.Registerer) *admission {
	if !cfg.On {
		return nil
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
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = 3 * cfg.InitialLimit
	}
	a := &admission{
		maxWait: cfg.MaxWait,
		limiter: admissionpkg.New(admissionpkg.Config{
			Classes:  int(numShedClasses) - 1, // shedNever does not queue
			MinLimit: int(cfg.MinLimit), MaxLimit: int(cfg.MaxLimit), InitialLimit: int(cfg.InitialLimit),
			MaxQueue: int(cfg.MaxQueue),
		}),
	}
	a.register(reg)
	return a
}

func (a *admission) register(reg prometheus.Registerer) {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shop_admission_refused_total",
		Help: "Requests refused by admission control before any work (503), by shed class (browsing, cart, checkout) and reason: limit (refused at once: its expected wait past its budget, or the queue full), waited (waited for a slot as long as its budget allows), displaced (queued, then overtaken by higher classes past its budget).",
	}, []string{"class", "reason"})
	admitted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shop_admission_admitted_total",
		Help: "Requests admitted by admission control, by shed class.",
	}, []string{"class"})
	reg.MustRegister(refused, admitted,
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
	)
	for c := shedFirst; c < numShedClasses; c++ {
		for why, name := range refusalNames {
			a.refused[c][why] = refused.WithLabelValues(c.String(), name)
		}
		a.admitted[c] = admitted.WithLabelValues(c.String())
	}
}

// admit wraps a route's handler: the request waits for a permit at most
// half its route's objective (the other half is for the work: a later
// answer would miss it anyway) and never past its deadline, and is
// refused at once when it could not expect a slot within that. A stream
// needs its permit only to open: holding one for its whole life would
// take a slot from short requests, and its duration says nothing about
// the replica's latency.
func (a *admission) admit(sp routeSpec, next handlerFunc) handlerFunc {
	if a == nil || sp.shed == shedNever {
		return next
	}
	class := int(sp.shed - shedFirst) // browsing 0, the cart 1, checkout 2
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		wait := sp.objective / 2
		if a.maxWait > 0 {
			wait = a.maxWait
		}
		if d, ok := ctx.Deadline(); ok {
			wait = max(0, min(wait, time.Until(d)))
		}
		permit, err := a.limiter.Acquire(ctx, class, wait)
		switch {
		case errors.Is(err, admissionpkg.ErrOverloaded):
			return a.refuse(sp.shed, refusedAtOnce, w)
		case errors.Is(err, admissionpkg.ErrDisplaced):
			return a.refuse(sp.shed, refusedDisplaced, w)
		case err != nil:
			// Its budget ran out, or its deadline passed or its client
			// left while it waited.
			return a.refuse(sp.shed, refusedWaited, w)
		}
		if ctx.Err() != nil {
			permit.Drop()
			return a.refuse(sp.shed, refusedWaited, w)
		}
		a.admitted[sp.shed].Inc()
		if sp.stream {
			permit.Drop()
			return next(w, r)
		}
		err = next(w, r)
		var body *bodyError
		if errors.Is(ctx.Err(), context.Canceled) || errors.As(err, &body) {
			// The client left, or was slow to send: the duration
			// measures the client, not this replica.
			permit.Drop()
		} else {
			permit.Record()
		}
		return err
	}
}

func (a *admission) refuse(c shedClass, why int, w http.ResponseWriter) error {
	a.refused[c][why].Inc()
	w.Header().Set("Retry-After", "1")
	return errShed
}
