package scaleout

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// A table whose counts contradict each other is not a measurement of one
// system scaling out: a probe met a noisy moment, a backlog or a cold
// start. Such counts are measured again; a contradiction that stays is
// printed with the table as a warning saying why it is not to be trusted.
const (
	// efficiencyCeiling: replicas cannot give more than linear scaling;
	// an efficiency above this is a first count measured too low or a
	// later one too high.
	efficiencyCeiling = 1.15
	// countNoise: a count below the one before it by more than this share
	// is more than the search's precision and a busy machine's noise.
	countNoise = 0.10
	// uslMisfit: the USL fitted over the counts passes within this share
	// of each of them, or they are not one system's curve.
	uslMisfit = 0.15
)

// contradiction is one reason not to trust a table, with the counts
// (indexes into Result.Steps) to measure again.
type contradiction struct {
	why    string
	counts []int
	// decline: a count below the one before it. Measured again and still
	// there, with a USL curve that passes through every count, it is no
	// contradiction but retrograde scaling, the coherency cost the USL's
	// κ models (see Result.Retrograde).
	decline bool
	// misfit: no USL curve passes within uslMisfit of the counts.
	// Measured again and the same, it is no contradiction but the
	// system's own shape (see Result.OffCurve).
	misfit bool
}

// contradictions finds what in the horizontal table contradicts the rest
// (the result must be scored).
func (r *Result) contradictions() []contradiction {
	var out []contradiction
	steps := r.Steps
	for i, s := range steps {
		if s.MachineLimited != "" {
			out = append(out, contradiction{
				why:    fmt.Sprintf("%s: the machine, not the system, bounded the capacity: %s", replicasText(s.Replicas), s.MachineLimited),
				counts: []int{i}})
		}
	}
	for i := 1; i < len(steps); i++ {
		s, prev := steps[i], steps[i-1]
		if s.Efficiency > efficiencyCeiling {
			out = append(out, contradiction{
				why: fmt.Sprintf("%s measured %.0f%% efficiency (%.0f req/s against %.0f for %s): more than linear, which adding replicas cannot give",
					replicasText(s.Replicas), 100*s.Efficiency, s.CapacityRPS, steps[0].CapacityRPS, replicasText(steps[0].Replicas)),
				counts: []int{0, i}})
		}
		if prev.CapacityRPS > 0 && s.CapacityRPS < (1-countNoise)*prev.CapacityRPS {
			out = append(out, contradiction{
				why: fmt.Sprintf("%s measured %.0f req/s, %.0f%% below %s (%.0f req/s): more than the noise of the search",
					replicasText(s.Replicas), s.CapacityRPS, 100*(1-s.CapacityRPS/prev.CapacityRPS), replicasText(prev.Replicas), prev.CapacityRPS),
				counts: []int{i - 1, i}, decline: true})
		}
	}
	if c, ok := r.misfit(); ok {
		out = append(out, c)
	}
	return out
}

// misfit reports a USL fit that cannot pass through the counts: it fails,
// or misses one by more than uslMisfit (with three counts or more; two
// points any curve passes through).
func (r *Result) misfit() (contradiction, bool) {
	if len(r.Steps) < 3 {
		return contradiction{}, false
	}
	for _, s := range r.Steps {
		if s.CapacityRPS == 0 {
			return contradiction{}, false // said already: nothing met the SLO
		}
	}
	if !r.FitOK {
		all := make([]int, len(r.Steps))
		for i := range all {
			all[i] = i
		}
		return contradiction{why: "the Universal Scalability Law cannot be fitted through the counts: " + r.FitError, counts: all, misfit: true}, true
	}
	worst, miss := 0, 0.0
	for i, s := range r.Steps {
		if m := math.Abs(r.Fit.Throughput(float64(s.Replicas))-s.CapacityRPS) / s.CapacityRPS; m > miss {
			worst, miss = i, m
		}
	}
	if miss <= uslMisfit {
		return contradiction{}, false
	}
	s := r.Steps[worst]
	return contradiction{
		why: fmt.Sprintf("the USL fitted over the counts misses %s by %.0f%% (%.0f req/s measured, %.0f on the curve): no smooth scaling curve passes through them",
			replicasText(s.Replicas), 100*miss, s.CapacityRPS, r.Fit.Throughput(float64(s.Replicas))),
		counts: []int{worst}, misfit: true}, true
}

// reproduced reports whether every one of counts was measured again and
// came out within the search's noise of its first measurement: the
// figures are repeatable, whatever a model says of them.
func (r *Result) reproduced(counts []int) bool {
	for _, i := range counts {
		if i < 0 || i >= len(r.Steps) || !r.Steps[i].Remeasured || r.Steps[i].Swung != "" {
			return false
		}
	}
	return len(counts) > 0
}

// involved is the counts the contradictions name, each once, ascending.
func involved(cs []contradiction) []int {
	var out []int
	for _, c := range cs {
		for _, i := range c.counts {
			if !slices.Contains(out, i) {
				out = append(out, i)
			}
		}
	}
	slices.Sort(out)
	return out
}

// reasonsFor is why count i is measured again: the contradictions it is
// in. A count the machine bounded, alone in its table, was measured again
// with "the counts contradict each other", which named no other count and
// hid the reason.
func reasonsFor(cs []contradiction, i int) string {
	var why []string
	for _, c := range cs {
		if slices.Contains(c.counts, i) {
			why = append(why, c.why)
		}
	}
	return strings.Join(why, "; ")
}

func replicasText(n int) string {
	if n == 1 {
		return "1 replica"
	}
	return fmt.Sprintf("%d replicas", n)
}

// A count measured again (remeasure) measures one system twice:
// capacities further apart than countNoise say the machine or the system
// changed between them, and the table cannot tell which one is the
// count's. On a busy machine one count measured 391 req/s, then 3,134
// when measured again, and the table showed the second with no warning.
//
// Two probes at one rate within a search (a confirmation) are not
// compared: at the capacity itself a failing and a passing probe differ
// by their queue, not by noise (the scripted 100 req/s replica served 75
// and 90 req/s in two probes at 100 req/s).

// apart is how far apart two measurements of one thing are, as a share
// of the larger (1 when one of them is 0 and the other is not).
func apart(a, b float64) float64 {
	lo, hi := min(a, b), max(a, b)
	if hi <= 0 {
		return 0
	}
	return 1 - lo/hi
}

// remeasureSwing says how a count's capacity measured again lies more
// than countNoise from its first ("" when it does not).
func remeasureSwing(first, again float64) string {
	if d := apart(first, again); d > countNoise {
		return fmt.Sprintf("measured %.0f req/s, then %.0f when measured again (%.0f%% apart)", first, again, 100*d)
	}
	return ""
}

// warnSwung warns of every count whose own measurements disagreed
// (Step.Swung): the table is not to be trusted. The first vertical
// count is the first horizontal one when both are 1 replica, warned of
// once.
func (r *Result) warnSwung() {
	warn := func(s Step) {
		if s.Swung != "" {
			r.Warnings = append(r.Warnings, fmt.Sprintf("not to be trusted: %s: %s, more than the %.0f%% noise of the search: the machine or the system changed between the two, and which one the count is cannot be told",
				countName(s.Replicas, s.CPU), s.Swung, 100*countNoise))
		}
	}
	for _, s := range r.Steps {
		warn(s)
	}
	for i, s := range r.Vertical {
		if i > 0 || len(r.Steps) == 0 || r.Steps[0].Replicas != 1 {
			warn(s)
		}
	}
}

// aboveLinearInCPU is the scaling-up counts (indexes into Result.Vertical,
// past the first) whose capacity is more than efficiencyCeiling times
// linear in CPU from the first size. A CPU-bound replica given twice the
// CPU serves at most about twice as much, as replicas added do: far more
// says the first size measured low or the larger one high. The
// horizontal table remeasures a count above linear; the vertical one
// did not, and on a quiet machine (2026-12-07, b906175) one replica of
// 0.25 core measured 1,324 req/s where another run had 1,826, 1 × 0.5
// core 3,480 (131 % of linear from 1,324), and the row compared 2 × 0.25
// on that low size with it: "vertical".
func (r *Result) aboveLinearInCPU() []int {
	var out []int
	for i := 1; i < len(r.Vertical); i++ {
		if r.Vertical[i].Efficiency > efficiencyCeiling {
			out = append(out, i)
		}
	}
	return out
}

// aboveLinearText says why scaling-up count i contradicts the first.
func (r *Result) aboveLinearText(i int) string {
	v, base := r.Vertical[i], r.Vertical[0]
	return fmt.Sprintf("%s measured %.0f req/s, %.0f%% of linear in CPU from %s (%.0f req/s): more than %g times the CPU can give",
		countName(1, v.CPU), v.CapacityRPS, 100*v.Efficiency, countName(1, base.CPU), base.CapacityRPS, v.CPU/base.CPU)
}

// warnAboveLinear turns scaling-up counts still above linear in CPU
// after they were measured again into warnings: the table is not to be
// trusted.
func (r *Result) warnAboveLinear() {
	for _, i := range r.aboveLinearInCPU() {
		r.Warnings = append(r.Warnings, "not to be trusted: "+r.aboveLinearText(i)+"; measured twice, the contradiction stayed")
	}
}
