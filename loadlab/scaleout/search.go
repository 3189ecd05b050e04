package scaleout

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
)

// Probe is one open-loop run at a fixed rate, as the search sees it.
type Probe struct {
	Rate          float64 // offered, req/s
	ThroughputRPS float64
	P99           time.Duration
	Requests      int64
	Errors        int64
	// ErrorKinds says how the requests failed (zero when the prober does
	// not tell).
	ErrorKinds load.ErrorCounts
	// GeneratorSaturated: loadlab itself fell behind (its CPU, requests
	// sent late); the reasons say which. Warnings are the checks that
	// do not stop the search (a busy machine).
	GeneratorSaturated bool
	SaturationReasons  []string
	Warnings           []string
	// SendDelayP99 is how late the generator dispatched its requests (p99),
	// and SentShare the share of the scheduled requests it dispatched.
	SendDelayP99 time.Duration
	SentShare    float64
	// Drain is how the target drained before the probe.
	Drain Drained
	// Starved says why the machine, not the system, may have failed the
	// probe: other work held the CPUs the system queued for (empty when
	// not; see starvation).
	Starved string
	// Detail is whatever the prober wants to keep with the probe (the
	// watched processes' use, for the bottleneck).
	Detail any
}

// Prober runs one probe at rate.
type Prober func(ctx context.Context, rate float64) (Probe, error)

// Search bounds the capacity search.
type Search struct {
	SLO          time.Duration // p99 a probe must meet
	MaxErrorRate float64       // and errors below this share of requests
	Start        float64       // first rate to try, req/s
	Factor       float64       // bracket: multiply or divide the rate by this (default 2)
	Precision    float64       // bisect until high/low is at most 1 + this (default 0.04)
	MinRate      float64       // below this, give up: capacity 0 (default 1)
	MaxProbes    int           // at most this many probes (default 16)
	// OnProbe, if set, hears each probe as it ends, with the phase
	// ("bracket" or "bisect") and whether it passed.
	OnProbe func(phase string, p Probe, pass bool)
}

// Capacity is a search's outcome.
type Capacity struct {
	// Best is the passing probe at the highest rate (zero when none
	// passed); RPS its throughput.
	Best   Probe
	RPS    float64
	Probes []Probe
	// GeneratorLimited: the lowest rate that did not pass is one at which
	// the generator fell behind (see Search.GeneratorLimited): the
	// capacity is at least RPS, and may be more.
	GeneratorLimited bool
	GeneratorReasons []string
	// Found reports whether a passing rate with a failing one above it
	// bracketed the capacity.
	Found bool
	// Bound is the failing probe at the lowest failing rate, the one that
	// bounds the capacity from above (zero when none failed, or when the
	// generator is the bound). When its Starved is set, the machine did
	// not give the system its CPU there, measured twice: the capacity is
	// not to be trusted.
	Bound Probe
}

func (s *Search) defaults() {
	if s.Factor <= 1 {
		s.Factor = 2
	}
	if s.Precision <= 0 {
		s.Precision = 0.04
	}
	if s.MinRate <= 0 {
		s.MinRate = 1
	}
	if s.MaxProbes <= 0 {
		s.MaxProbes = 16
	}
	if s.Start < s.MinRate {
		s.Start = 100
	}
	if s.MaxErrorRate <= 0 {
		s.MaxErrorRate = 0.001
	}
}

// GeneratorLimited reports whether a probe says more about loadlab than
// about the target: the generator's check failed (its CPU, requests sent
// late) and either it did not dispatch the rate, or the probe failed by a
// p99 that its own dispatch delay could explain. A probe that meets the
// SLO stands even if requests went out late: their latency counts from
// when they were due, so the delay was charged to the target, which met
// the SLO anyway. Likewise a p99 over the SLO by more than the
// generator's delay, or errors, are the target's.
func (s Search) GeneratorLimited(p Probe) bool {
	switch {
	case !p.GeneratorSaturated:
		return false
	case p.SentShare < 0.95:
		return true
	case s.Pass(p):
		return false
	case p.Requests > 0 && float64(p.Errors) >= s.MaxErrorRate*float64(p.Requests):
		return false
	}
	return p.P99-p.SendDelayP99 <= s.SLO
}

// Pass reports whether a probe meets the SLO: p99 within it and errors
// under the allowed share.
func (s Search) Pass(p Probe) bool {
	if p.Requests == 0 {
		return false
	}
	return p.P99 <= s.SLO && float64(p.Errors) < s.MaxErrorRate*float64(p.Requests)
}

// Run finds the highest rate that passes: it brackets the capacity by
// multiplying (or dividing) the rate by Factor from Start, then bisects
// between the highest passing and the lowest failing rate. A probe at
// which the generator fell behind counts as not passing; when one bounds
// the capacity from above, the result says the generator was the limit.
func (s Search) Run(ctx context.Context, probe Prober) (Capacity, error) {
	s.defaults()
	r := &searchRun{Search: s, probe: probe, lo: 0, hi: math.Inf(1)}
	err := r.run(ctx)
	if r.hiBehind {
		r.c.GeneratorLimited = true
	} else {
		r.c.GeneratorReasons = nil
	}
	return r.c, err
}

// searchRun is one search under way: the bracket [lo, hi] and what the
// probes found.
type searchRun struct {
	Search
	probe    Prober
	c        Capacity
	lo, hi   float64
	hiBehind bool // the generator fell behind at hi
	// hiAfterAFailure: hi's probe ran right after a failed one, in what
	// that left behind; above and aboveBound are the top the bracket had
	// before hi.
	hiAfterAFailure bool
	above           float64
	aboveBound      Probe
}

func (r *searchRun) run(ctx context.Context) error {
	rate := r.Start
	for len(r.c.Probes) < r.MaxProbes {
		pass, err := r.try(ctx, "bracket", rate)
		if err != nil {
			return err
		}
		if !math.IsInf(r.hi, 1) && r.lo > 0 {
			break
		}
		if pass {
			rate *= r.Factor
		} else {
			rate /= r.Factor
			if rate < r.MinRate {
				return nil // nothing passes: capacity 0
			}
		}
	}
	if r.hiAfterAFailure && r.lo > 0 && !math.IsInf(r.hi, 1) && len(r.c.Probes) < r.MaxProbes {
		if err := r.recheckTop(ctx); err != nil {
			return err
		}
	}
	for len(r.c.Probes) < r.MaxProbes && r.hi/r.lo > 1+r.Precision {
		// Geometric middle: the bracket spans a ratio, not a distance.
		if _, err := r.try(ctx, "bisect", math.Sqrt(r.lo*r.hi)); err != nil {
			return err
		}
	}
	r.c.Found = r.lo > 0 && !math.IsInf(r.hi, 1)
	return nil
}

// measure runs one probe and records it.
func (r *searchRun) measure(ctx context.Context, rate float64) (Probe, error) {
	p, err := r.probe(ctx, rate)
	if err != nil {
		return p, fmt.Errorf("probe at %.0f req/s: %w", rate, err)
	}
	r.c.Probes = append(r.c.Probes, p)
	return p, nil
}

// try probes rate (again, when the generator fell behind or a failure may
// be noise), moves the bracket and reports whether the rate passed.
func (r *searchRun) try(ctx context.Context, phase string, rate float64) (bool, error) {
	n := len(r.c.Probes)
	afterAFailure := n > 0 && !r.Pass(r.c.Probes[n-1])
	var p Probe
	var pass, behind bool
	// A generator that fell behind once may have met a noisy moment:
	// it gets one more try at the same rate.
	for attempt := 0; attempt < 2 && (attempt == 0 || behind); attempt++ {
		var err error
		if p, err = r.measure(ctx, rate); err != nil {
			return false, err
		}
		pass, behind = r.Pass(p), r.GeneratorLimited(p)
		if r.OnProbe != nil {
			r.OnProbe(phase, p, pass && !behind)
		}
	}
	if behind {
		// Whose failure it was cannot be told: it bounds the search
		// from above like a failure, and if it ends up as the bound,
		// the result says the generator was the limit.
		if rate < r.hi {
			r.hi, r.hiBehind, r.c.GeneratorReasons, r.c.Bound = rate, true, p.SaturationReasons, Probe{}
			r.hiAfterAFailure = false // the generator's limit is not rechecked as the target's
		}
		return false, nil
	}
	if !pass {
		var err error
		if p, pass, err = r.confirm(ctx, phase, rate, p); err != nil {
			return false, err
		}
	}
	if pass && rate > r.lo {
		r.lo, r.c.Best, r.c.RPS = rate, p, p.ThroughputRPS
	}
	if !pass && rate < r.hi {
		r.above, r.aboveBound = r.hi, r.c.Bound
		r.hi, r.hiBehind, r.c.Bound = rate, false, p
		r.hiAfterAFailure = afterAFailure
	}
	return pass, nil
}

// recheckTop probes the bracket's top once more when the probe that set
// it ran right after a failed one: stepping down from an overload, the
// first rate under the capacity runs in what the overload left (the
// target's queues and its jobs still draining) and may fail for that
// alone. On a 4-shard cluster, 1,194 and 796 req/s failed, then 531 with
// a p99 of 343 ms, and the count came out at 517, bounded by that one
// probe, where it had served more in its first measurement. If the top
// passes now it is the bracket's bottom, and the rate above it the top.
func (r *searchRun) recheckTop(ctx context.Context) error {
	rate := r.hi
	p, err := r.measure(ctx, rate)
	if err != nil {
		return err
	}
	passed := r.Pass(p) && !r.GeneratorLimited(p)
	if r.OnProbe != nil {
		r.OnProbe("confirm", p, passed)
	}
	if passed {
		r.lo, r.c.Best, r.c.RPS = rate, p, p.ThroughputRPS
		r.hi, r.c.Bound = r.above, r.aboveBound
	}
	r.hiAfterAFailure = false
	return nil
}

// confirm probes a failed rate once more when the failure may be noise:
// near the capacity (bisecting; the first probe, whose rate is a guess
// from the count before; a rate one step above a passing one), or when
// the machine's CPU may explain it (Starved). An overload fails again (its
// queue builds anew), noise mostly does not: unconfirmed, a noisy first
// probe at 90% of the capacity bounded a 2-replica count at 88% of it. It
// returns the probe that stands and whether it passed.
func (r *searchRun) confirm(ctx context.Context, phase string, rate float64, p Probe) (Probe, bool, error) {
	near := phase == "bisect" || len(r.c.Probes) == 1 || (r.lo > 0 && rate <= r.lo*r.Factor*1.001)
	if !(near || p.Starved != "") || len(r.c.Probes) >= r.MaxProbes {
		return p, false, nil
	}
	q, err := r.measure(ctx, rate)
	if err != nil {
		return p, false, err
	}
	passed := r.Pass(q) && !r.GeneratorLimited(q)
	if r.OnProbe != nil {
		r.OnProbe("confirm", q, passed)
	}
	switch {
	case passed:
		return q, true, nil
	case p.Starved != "":
		// Starved once and failed again: the second says whether the
		// machine was still the reason.
		return q, false, nil
	}
	return p, false, nil
}
