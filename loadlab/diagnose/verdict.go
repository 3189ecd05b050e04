package diagnose

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/usl"
)

// Thresholds of the verdict, named so the rules read as they are documented.
const (
	// efficiencyFloor: below this share of linear scaling at the top of the
	// ramp, throughput has stopped growing in proportion to users.
	efficiencyFloor = 0.5
	// latencyClimb: a step's p99 must exceed the single-user p99 by this
	// factor (and the SLO) for latency to count as having climbed.
	latencyClimb = 2.0
	// retrograde: throughput at the top of the ramp below this share of
	// the peak means adding users made it fall.
	retrograde = 0.8
	// plateau: steps within this share of the peak throughput form the
	// plateau whose CPU use decides capacity versus contention.
	plateau = 0.9
	// cpuLost and costGrowth: past the peak, a server left with less than
	// cpuLost of its CPU at the peak, on a saturated machine, whose CPU per
	// request grew by less than costGrowth, was starved by other work.
	cpuLost    = 0.85
	costGrowth = 1.25
	// cpuPerRequestFloor: watched processes spending less CPU than this per
	// request, at implausibleFrom requests a second or more, cannot be the
	// ones serving them (nginx's master, an idle proxy in front).
	cpuPerRequestFloor = 2e-6 // seconds
	implausibleFrom    = 1000 // req/s
	// acceptQueueRatio: a p99 on a TCP retransmission step with the median
	// at most this share of it means a few connections waited for a SYN
	// to be retransmitted, not that requests were slow.
	acceptQueueRatio = 0.1
	// errorRise: a step whose share of failed requests exceeds the
	// single-user baseline's by this much has errors rising with users.
	errorRise = 0.01
	// generatorDelayOfSLO: a generator whose threads waited for a CPU this
	// share of the SLO per request may have put that much into each
	// latency.
	generatorDelayOfSLO = 0.1
	// errorsDominate: at a step where this share of requests failed, the
	// failures are the verdict's kind even if latency climbed too.
	errorsDominate = 0.5
)

// synRetransmits are when a client's retransmitted SYNs go out (Linux's
// initial RTO of 1 s, doubling): a connection whose SYN a full accept
// queue dropped is answered at one of these.
var synRetransmits = []time.Duration{time.Second, 3 * time.Second, 7 * time.Second}

// Load is measure's: what a process group (or the whole server, Name "")
// used at the plateau.
type Load = measure.Load

// Verdict is Judge's outcome.
type Verdict struct {
	Performance bool
	Scalability bool
	Kind        string
	Evidence    []string
	Warnings    []string
	Facts       Facts
}

// Measurements are what a verdict is judged from: the single-user
// baseline, the ramp (starting at concurrency 1, ascending), its USL fit,
// the SLO and the machine's cores.
type Measurements struct {
	Baseline Step
	Steps    []Step
	Fit      usl.Fit
	FitOK    bool
	SLO      time.Duration
	Cores    float64
	// Source is where the server side's figures came from (the Report's
	// SaturationSource).
	Source string
}

// Facts are the measured facts a verdict rests on, as Classify finds them;
// the evidence is written from them.
type Facts struct {
	Performance, Scalability bool
	// BaselineHeldBack: the single user's p99 was above the SLO, but the
	// machine may have put it there (baselineHeldBack); Performance is
	// false and the evidence says the baseline gives no verdict.
	// BaselineWait is the wait for a CPU per request behind it, and
	// BaselineWaitNeeded the least wait, summed over the baseline, that
	// could have put the p99 over the SLO (both 0 when the server's own
	// wait is not known).
	BaselineHeldBack   bool
	BaselineWait       time.Duration
	BaselineWaitNeeded time.Duration
	// Ramp is false with fewer than two steps: no scalability verdict.
	Ramp       bool
	Efficiency []float64
	// Indexes into the ramp: the highest throughput, the first step of the
	// plateau around it, the worst p99.
	Peak, PlateauFrom, Worst int
	Flattened                bool // efficiency at the top below efficiencyFloor
	// Climbed: the worst p99 above the SLO, and above latencyClimb × the
	// baseline's when the baseline was above the SLO itself.
	Climbed bool
	Falls   bool // the top of the ramp below retrograde × the peak
	// Starved: the fall past the peak came from other work taking the
	// server's CPU, not from coherency. FallWithLostCPU: the same for a
	// server that was not CPU-bound; the fall is left out of the verdict.
	// FallWithinTheWait: the top waited for a CPU longer than it ran on a
	// saturated machine, and freed of that wait would not have fallen;
	// the fall is left out of the verdict too.
	Starved, FallWithLostCPU, FallWithinTheWait bool
	// MachineBound: the machine held the ramp back (KindMachineBound).
	MachineBound bool
	// Server is the watched processes together at the plateau; CPUKnown is
	// false when none was seen, or when CPUImplausible (too little CPU for
	// the requests served to be theirs).
	Server         Load
	CPUKnown       bool
	CPUImplausible bool
	// Processes are the watched groups at the plateau (empty when the
	// steps carry only the server's total), and Bottleneck the CPU-bound
	// one (nil when none is).
	Processes  []Load
	Bottleneck *Load
	// BaselineErrorShare and ErrorShares are the share of requests that
	// failed alone and at each step; ErrorsRose is true when a step's
	// share exceeds the baseline's by errorRise, and WorstErrors indexes
	// the step with the highest share.
	BaselineErrorShare float64
	ErrorShares        []float64
	ErrorsRose         bool
	WorstErrors        int
	// Generator is the generator's own part in the figures.
	Generator GeneratorCheck
	// AcceptQueue is a step whose p99 sits on a SYN retransmission while
	// its median stays low (nil when none does).
	AcceptQueue *Step
	Fit         usl.Fit
	FitOK       bool
}

func (r *Report) judge(cfg Config) {
	fit, err := fitSteps(r.Steps)
	r.Fit, r.FitOK = fit, err == nil
	if err != nil {
		r.Warnings = append(r.Warnings, "no USL fit: "+err.Error())
	}
	r.Efficiency = efficiency(r.Steps)
	for _, s := range r.Steps {
		if s.ThroughputRPS > r.CapacityRPS {
			r.CapacityRPS, r.CapacityAt = s.ThroughputRPS, s.Concurrency
		}
	}
	v := Judge(Measurements{Baseline: r.Baseline, Steps: r.Steps, Fit: fit, FitOK: r.FitOK, SLO: cfg.SLO, Cores: cfg.Cores, Source: r.SaturationSource})
	r.Performance, r.Scalability, r.Kind = v.Performance, v.Scalability, v.Kind
	r.BaselineHeldBack = v.Facts.BaselineHeldBack
	r.Evidence, r.Warnings = v.Evidence, append(r.Warnings, v.Warnings...)
	r.Bottleneck = v.Facts.Bottleneck
	r.Generator = v.Facts.Generator
}

func efficiency(steps []Step) []float64 {
	out := make([]float64, len(steps))
	if len(steps) == 0 || steps[0].ThroughputRPS <= 0 {
		return out
	}
	x1 := steps[0].ThroughputRPS / float64(steps[0].Concurrency)
	for i, s := range steps {
		out[i] = s.ThroughputRPS / (float64(s.Concurrency) * x1)
	}
	return out
}

// percent writes a share with the precision small shares need.
func percent(share float64) string {
	if share > 0 && share < 0.1 {
		return fmt.Sprintf("%.1f%%", 100*share)
	}
	return fmt.Sprintf("%.0f%%", 100*share)
}

func users(n int) string {
	if n == 1 {
		return "1 user"
	}
	return fmt.Sprintf("%d users", n)
}

// Judge decides both verdicts from the measurements alone (it does no I/O,
// so its rules are tested on synthetic data): Classify finds the kind and
// the facts, and the evidence is written from those.
func Judge(m Measurements) Verdict {
	kind, f := Classify(m)
	v := Verdict{Performance: f.Performance, Scalability: f.Scalability, Kind: kind, Facts: f}
	v.Evidence, v.Warnings = explain(kind, f, m)
	return v
}

// Classify finds the verdict's kind from measured facts, and the facts.
func Classify(m Measurements) (string, Facts) {
	base, steps := m.Baseline, m.Steps
	f := Facts{Performance: base.P99 > m.SLO, Fit: m.Fit, FitOK: m.FitOK, BaselineErrorShare: errorShare(base)}
	if f.Performance {
		f.BaselineHeldBack, f.BaselineWait, f.BaselineWaitNeeded = baselineHeldBack(base, m.SLO, m.Cores)
		f.Performance = !f.BaselineHeldBack
	}
	f.Generator = checkGenerator(base, steps, m.SLO, m.Cores)
	f.AcceptQueue = acceptQueueStep(append([]Step{base}, steps...))
	if len(steps) < 2 {
		return KindNone, f
	}
	for i, s := range steps {
		f.ErrorShares = append(f.ErrorShares, errorShare(s))
		if f.ErrorShares[i] > f.ErrorShares[f.WorstErrors] {
			f.WorstErrors = i
		}
	}
	f.ErrorsRose = f.ErrorShares[f.WorstErrors] >= f.BaselineErrorShare+errorRise
	f.Ramp = true
	f.Efficiency = efficiency(steps)
	last := steps[len(steps)-1]
	for i, s := range steps {
		if s.ThroughputRPS > steps[f.Peak].ThroughputRPS {
			f.Peak = i
		}
		if s.P99 > steps[f.Worst].P99 {
			f.Worst = i
		}
	}
	xPeak := steps[f.Peak].ThroughputRPS
	f.PlateauFrom = f.Peak
	for i := range steps {
		if steps[i].ThroughputRPS >= plateau*xPeak {
			f.PlateauFrom = i
			break
		}
	}
	f.Climbed = climbed(steps[f.Worst].P99, base.P99, m.SLO)
	f.Flattened = f.Efficiency[len(f.Efficiency)-1] < efficiencyFloor
	slowed := f.Climbed && f.Flattened
	// A p99 that left the SLO as users were added is a problem whatever
	// throughput did: a short ramp (1 and 2 users) whose p99 went over
	// the SLO at 2 was called "no problem" while its evidence said the
	// latency climbed above the SLO.
	f.Scalability = f.Climbed || f.ErrorsRose
	f.Falls = f.Peak < len(steps)-1 && last.ThroughputRPS < retrograde*xPeak && belowThePlateau(steps, f.PlateauFrom, f.Peak)

	plateauSteps := steps[f.PlateauFrom:]
	f.Server, f.CPUKnown = serverLoad(plateauSteps, m.Cores)
	if f.CPUKnown && xPeak >= implausibleFrom && f.Server.CPU < cpuPerRequestFloor*steps[f.PlateauFrom].ThroughputRPS {
		f.CPUKnown, f.CPUImplausible = false, true
	}
	if f.CPUKnown {
		f.Processes = measure.ProcessLoads(plateauSteps, m.Cores)
		f.Bottleneck = measure.Bottleneck(f.Processes)
		if len(f.Processes) == 0 && f.Server.Bound {
			f.Bottleneck = &f.Server
		}
	}

	switch {
	case !f.Scalability:
		return KindNone, f
	case f.ErrorsRose && (!slowed || f.ErrorShares[f.WorstErrors] >= errorsDominate):
		// The successful answers stayed fast, or most requests failed:
		// the failures are the problem, whatever the latency did.
		return KindErrors, f
	case f.Falls && f.CPUKnown && starvedOfCPU(steps[f.Peak], last, m.Cores):
		// Throughput fell because the server got less CPU, not because each
		// request cost more: other work on the machine took it.
		f.Starved = true
		return KindCapacity, f
	case f.CPUKnown && (measure.Starved(steps[f.Peak], m.Cores) || measure.Starved(last, m.Cores)) && !(f.Falls && fallOutlastsTheWait(steps[f.Peak], last)):
		// Not CPU-bound, yet waiting for a CPU longer than it ran: the
		// machine held the peak or the top of the ramp back. A server
		// with a lock and one kept in step both read as the other on
		// such a curve (a fresh-clone CI run at a load average of 25).
		// A fall too deep for the top's wait to have made stands: the
		// machine then only lowered the peak, which hides a fall.
		f.MachineBound = true
		return KindMachineBound, f
	case f.Falls && f.CPUKnown && lostCPU(steps[f.Peak], last):
		// The same loss of CPU to other work, by a server that was not
		// CPU-bound: the fall is the machine's; what held the plateau
		// decides.
		f.Falls, f.FallWithLostCPU = false, true
	case f.Falls && f.CPUKnown && waitCanMakeTheFall(steps[f.Peak], last):
		// Under StarvedWait, so not machine-bound, but the fall is no
		// evidence of coherency: a lock server's ramp (flat at 170 to 183
		// req/s, 146 at the top, its process waiting 0.34 cores' worth
		// for a CPU while running 0.13, the machine 93% busy) read as
		// coherency in a fresh-clone CI run at a load average of 20.
		f.Falls, f.FallWithinTheWait = false, true
	case f.Falls:
		return KindCoherency, f
	}
	if !f.Flattened && !f.Falls {
		// Throughput still grows with users: no plateau to name a limit
		// of, only the requests that waited.
		return KindTail, f
	}
	if f.Bottleneck != nil {
		return KindCapacity, f
	}
	return KindContention, f
}

// climbed reports whether the ramp's worst p99 left the SLO: above it,
// and, when the single user was above it already (a performance
// problem), above latencyClimb times the single user's p99.
func climbed(worst, base, slo time.Duration) bool {
	if worst <= slo {
		return false
	}
	return base <= slo || float64(worst) > latencyClimb*float64(base)
}

// belowThePlateau reports whether the top of the ramp is below every
// step from the plateau's start to the peak: a fall no larger than the
// ramp's own scatter before the peak (a step there as low as the last) is
// noise on a flat line, contention's shape, not coherency's.
func belowThePlateau(steps []Step, from, peak int) bool {
	last := steps[len(steps)-1].ThroughputRPS
	for _, s := range steps[from : peak+1] {
		if s.ThroughputRPS <= last {
			return false
		}
	}
	return true
}

// GeneratorCheck is the generator's own part in a diagnosis, judged once
// for the run: where it was saturated (its CPU, as loadlab/load judges it)
// or waited for a CPU long enough, per request, to matter against the SLO.
type GeneratorCheck struct {
	// Saturated: the generator was saturated or starved of CPU at some
	// step, and Text says where.
	Saturated bool
	// Concurrencies are the steps it was saturated at (0 for the
	// baseline).
	Concurrencies []int
	// MaxCPUCores is the most CPU it used in a step; MaxDelay the longest
	// its threads waited for a CPU per request in a step (the part of each
	// latency that may be the generator's, about), 0 when unknown.
	MaxCPUCores float64
	MaxDelay    time.Duration
	// Text is the warning, with the figures ("" when not saturated).
	Text string
}

// checkGenerator judges the generator over the baseline and the ramp: it
// was saturated where its own CPU was (as loadlab/load judges it), and
// starved where its threads waited for a CPU a tenth of the SLO per
// request (other work held the machine; the latencies there partly
// measure that wait).
func checkGenerator(base Step, steps []Step, slo time.Duration, cores float64) GeneratorCheck {
	var g GeneratorCheck
	var saturated, starved []string
	for i, s := range append([]Step{base}, steps...) {
		where, n := users(s.Concurrency), s.Concurrency
		if i == 0 {
			where, n = "the single-user baseline", 0
		}
		delay := generatorDelay(s)
		g.MaxCPUCores = math.Max(g.MaxCPUCores, s.GeneratorCPUCores)
		g.MaxDelay = max(g.MaxDelay, delay)
		late := float64(delay) >= generatorDelayOfSLO*float64(slo)
		if s.GeneratorSaturated {
			saturated = append(saturated, where)
		} else if late {
			starved = append(starved, where)
		}
		if s.GeneratorSaturated || late {
			g.Concurrencies = append(g.Concurrencies, n)
		}
	}
	if g.Saturated = len(g.Concurrencies) > 0; !g.Saturated {
		return g
	}
	var parts []string
	if len(saturated) > 0 {
		parts = append(parts, fmt.Sprintf("the generator itself was saturated in %s (its CPU up to %.2f of %.0f cores)",
			strings.Join(saturated, ", "), g.MaxCPUCores, cores))
	}
	if len(starved) > 0 {
		parts = append(parts, fmt.Sprintf("the generator's threads waited for a CPU up to about %s per request in %s, against the %s SLO, while it used at most %.2f cores: other work held the machine's CPU",
			measure.FormatMS(g.MaxDelay), strings.Join(starved, ", "), measure.FormatMS(slo), g.MaxCPUCores))
	}
	g.Text = strings.Join(parts, "; ") + ": those steps may describe loadlab and the machine more than the target"
	return g
}

// baselineHeldBack reports whether the machine, not the target, may have
// put a single user's p99 above the SLO: on a saturated machine, the
// server's processes and the generator waited for a CPU, summed over the
// baseline's requests, at least as long as would have had to come off
// the requests over the SLO for the p99 to be within it (waitToMeetSLO).
// A saturated machine's waits fall unevenly: most wake-ups get a CPU at
// once and a few wait out whole turns of a long run queue, so the slowest
// requests may hold most of the wait. The rule this replaces subtracted
// the mean wait per request from the p99, as if every request had waited
// alike: the pool ground-truth server (8 ms of CPU a request), at a load
// average of 45, had a p50 of 8.5 ms and a p99 of 88 ms against a 40 ms
// SLO, its process waiting 0.29 cores' worth (3.1 ms a request on
// average, 0.6 s over 200 requests), and was read as a performance
// problem. A p99 whose excess the whole wait cannot cover stands (a
// single user slow at the median too needs most of the requests to come
// down). Where the server's own wait is not known (a node exporter's
// wait holds other work's too), the baseline is held back when
// measure.Starved says so. wait is the wait per request and needed
// waitToMeetSLO's (0 when not known).
func baselineHeldBack(base Step, slo time.Duration, cores float64) (held bool, wait, needed time.Duration) {
	if math.IsNaN(base.MachineBusy) || base.MachineBusy < measure.MachineSaturated {
		return false, 0, 0
	}
	if math.IsNaN(base.ServerCPUWaitCores) || base.AnsweredRPS <= 0 {
		return measure.Starved(base, cores), 0, 0
	}
	wait = time.Duration(base.ServerCPUWaitCores/base.AnsweredRPS*float64(time.Second)) + generatorDelay(base)
	needed = waitToMeetSLO(base, slo)
	return float64(wait)*float64(base.Requests) >= float64(needed), wait, needed
}

// waitToMeetSLO is the least wait for a CPU, summed over a baseline's
// requests, that could have put its p99 above the SLO: the p99's own
// request must lose p99 - SLO, and each latency the generator knows (the
// fastest request, the median, the p90) is a floor for the requests
// between it and the next, which must each lose what that floor is over
// the SLO. Known only at the median and the p99, a baseline over the SLO
// at the median needs about half its requests to come down.
func waitToMeetSLO(base Step, slo time.Duration) time.Duration {
	type floor struct {
		q  float64
		at time.Duration
	}
	floors := []floor{{0.5, base.P50}}
	if base.Load != nil {
		l := base.Load.SuccessLatency
		floors = []floor{{0, l.Min}, {0.5, base.P50}, {0.9, l.P90}}
	}
	floors = append(floors, floor{0.99, base.P99})
	succeeded := float64(base.Requests - base.Errors)
	needed := float64(base.P99 - slo)
	for i, f := range floors[:len(floors)-1] {
		if over := f.at - slo; over > 0 {
			needed += math.Floor(succeeded*(floors[i+1].q-f.q)) * float64(over)
		}
	}
	return time.Duration(needed)
}

// generatorDelay is how long, per request, the generator's threads waited
// for a CPU during a step (0 when unknown).
func generatorDelay(s Step) time.Duration {
	if math.IsNaN(s.GeneratorCPUWaitCores) || s.AnsweredRPS <= 0 {
		return 0
	}
	return time.Duration(s.GeneratorCPUWaitCores / s.AnsweredRPS * float64(time.Second))
}

// endpointEvidence compares each endpoint (a scenario's steps, the
// requests of a sequence) alone and at the top of the ramp, slowest first
// at the top: which step of a journey slows down or fails. It is "" for a
// single endpoint, or when the steps carry no per-endpoint results.
func endpointEvidence(base, top Step) string {
	if base.Load == nil || top.Load == nil || len(top.Load.Endpoints) < 2 {
		return ""
	}
	alone := map[string]load.Endpoint{}
	for _, e := range base.Load.Endpoints {
		alone[e.Name] = e
	}
	eps := slices.Clone(top.Load.Endpoints)
	slices.SortStableFunc(eps, func(a, b load.Endpoint) int { return cmp.Compare(b.Latency.P99, a.Latency.P99) })
	var parts []string
	for _, e := range eps {
		if e.Requests == 0 {
			continue
		}
		was, wasErrors := "not reached", 0.0
		if a, ok := alone[e.Name]; ok && a.Requests > 0 {
			was, wasErrors = measure.FormatMS(a.Latency.P99), float64(a.Errors.Total)/float64(a.Requests)
		}
		part := fmt.Sprintf("%s %s → %s", e.Name, was, measure.FormatMS(e.Latency.P99))
		if share := float64(e.Errors.Total) / float64(e.Requests); share > 0 || wasErrors > 0 {
			part += fmt.Sprintf(", errors %s → %s", percent(wasErrors), percent(share))
		}
		if e.Errors.Total > 0 {
			part += " (" + statuses(e.Errors) + ")"
		}
		parts = append(parts, part)
	}
	return fmt.Sprintf("by endpoint, p99 of all its answers alone → with %s: %s", users(top.Concurrency), strings.Join(parts, "; "))
}

// statuses names an endpoint's errors by status ("429 40, 503 2"), or by
// kind when none had a status.
func statuses(e load.EndpointErrors) string {
	if len(e.ByStatus) == 0 {
		return e.ErrorCounts.String()
	}
	codes := slices.Sorted(maps.Keys(e.ByStatus))
	var out []string
	for _, c := range codes {
		out = append(out, fmt.Sprintf("%s %d", c, e.ByStatus[c]))
	}
	return strings.Join(out, ", ")
}

// errorShare is the share of a step's requests that failed.
func errorShare(s Step) float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// acceptQueueStep finds a step whose p99 sits on a SYN retransmission
// while its median stays low.
func acceptQueueStep(steps []Step) *Step {
	for i, s := range steps {
		for _, at := range synRetransmits {
			if s.P99 >= at-at/20 && s.P99 <= at+at/4 && float64(s.P50) <= acceptQueueRatio*float64(s.P99) {
				return &steps[i]
			}
		}
	}
	return nil
}

// serverLoad is the watched processes together at the plateau.
func serverLoad(steps []Step, cores float64) (Load, bool) {
	var cpu, waits, preempted, avail, busy []float64
	for _, s := range steps {
		if !math.IsNaN(s.ServerCPUCores) {
			cpu = append(cpu, s.ServerCPUCores)
			avail = append(avail, coresLeft(s, cores))
			for _, v := range []struct {
				dst *[]float64
				x   float64
			}{{&busy, s.MachineBusy}, {&waits, s.ServerCPUWaitCores}, {&preempted, s.ServerCPUPreemptedCores}} {
				if !math.IsNaN(v.x) {
					*v.dst = append(*v.dst, v.x)
				}
			}
		}
	}
	if len(cpu) == 0 {
		return Load{Quota: math.NaN(), Throttled: math.NaN(), Wait: math.NaN(), Preempted: math.NaN(), MachineBusy: math.NaN()}, false
	}
	l := Load{CPU: measure.Median(cpu), Wait: measure.MedianOrNaN(waits), Preempted: measure.MedianOrNaN(preempted), Available: measure.Median(avail),
		MachineBusy: measure.MedianOrNaN(busy), Quota: math.NaN(), Throttled: math.NaN()}
	l.Bound = measure.IsCPUBound(l.CPU, l.Preempted, l.Available, l.MachineBusy)
	return l, true
}

// explain writes the evidence and warnings from the facts.
func explain(kind string, f Facts, m Measurements) (evidence, warnings []string) {
	w := &explainer{f: f, m: m}
	w.performance()
	if !f.Ramp {
		if f.Generator.Saturated {
			w.warnings = append(w.warnings, f.Generator.Text)
		}
		return w.evidence, append(w.warnings, "the ramp has fewer than two steps: no scalability verdict")
	}
	w.ramp()
	w.kind(kind)
	w.processes()
	w.caveats()
	return w.evidence, w.warnings
}

// explainer gathers a diagnosis's evidence and warnings, a part at a time.
type explainer struct {
	f                  Facts
	m                  Measurements
	evidence, warnings []string
}

func (w *explainer) add(format string, a ...any) {
	w.evidence = append(w.evidence, fmt.Sprintf(format, a...))
}

// performance is the single user's verdict, and an accept queue's tail.
func (w *explainer) performance() {
	f, base, slo := w.f, w.m.Baseline, w.m.SLO
	add := w.add
	if f.BaselineHeldBack {
		w.baselineHeldBack()
	} else if f.Performance {
		add("performance problem: a single user already waits %s at p99 (p50 %s), above the %s SLO; the work of one request is too slow, whatever the load",
			measure.FormatMS(base.P99), measure.FormatMS(base.P50), measure.FormatMS(slo))
	} else {
		add("no performance problem: a single user sees p50 %s and p99 %s, within the %s SLO",
			measure.FormatMS(base.P50), measure.FormatMS(base.P99), measure.FormatMS(slo))
	}
	if s := f.AcceptQueue; s != nil {
		add("with %s the p99 is %s while the median is %s: a p99 at a TCP SYN retransmission (1 s, 3 s, 7 s) means connections waited in a full accept queue (the listen backlog overflowed, the kernel dropped the SYN and the client sent it again); no CPU or lock explains it. Raise the backlog (listen() and net.core.somaxconn) or accept connections faster",
			users(s.Concurrency), measure.FormatMS(s.P99), measure.FormatMS(s.P50))
	}
}

// baselineHeldBack says why a single user's p99 above the SLO gives no
// verdict, and what to do.
func (w *explainer) baselineHeldBack() {
	f, base, slo := w.f, w.m.Baseline, w.m.SLO
	why := fmt.Sprintf("the server's processes and loadlab waited for a CPU %s over the %d requests (%s a request on average; a busy machine's waits fall unevenly, most on the slowest requests), at least the %s that would have had to come off the requests over the SLO for the p99 to be within it",
		measure.FormatMS(time.Duration(float64(f.BaselineWait)*float64(base.Requests))), base.Requests, measure.FormatMS(f.BaselineWait), measure.FormatMS(f.BaselineWaitNeeded))
	if f.BaselineWait == 0 {
		why = fmt.Sprintf("the server's processes ran %.2f cores and %s", base.ServerCPUCores, base.WaitedText("their"))
	}
	w.add("no performance verdict: a single user waited %s at p99 (p50 %s), above the %s SLO, but on a machine %.0f%% busy %s: the baseline measures the machine's load, not the work of one request",
		measure.FormatMS(base.P99), measure.FormatMS(base.P50), measure.FormatMS(slo), 100*base.MachineBusy, why)
	w.warnings = append(w.warnings, "the machine held the single-user baseline back, so it gives no performance verdict: rerun on a quieter machine (or give the target and loadlab more of it) to know whether one request is too slow")
}

// ramp says how throughput, latency and errors went as users were added.
func (w *explainer) ramp() {
	f, base, steps, slo := w.f, w.m.Baseline, w.m.Steps, w.m.SLO
	add := w.add
	first, last := steps[0], steps[len(steps)-1]
	eff := f.Efficiency
	xPeak := steps[f.Peak].ThroughputRPS
	throughput := "throughput"
	if f.ErrorShares[f.WorstErrors] > 0 || f.BaselineErrorShare > 0 {
		throughput = "goodput (successful answers a second)"
	}
	if f.Flattened {
		add(throughput+" stops growing in proportion to users: it reaches %.0f req/s from %s on (peak %.0f req/s at %s), and with %s the service does %.0f%% of the work %s would do if it scaled linearly",
			steps[f.PlateauFrom].ThroughputRPS, users(steps[f.PlateauFrom].Concurrency), xPeak, users(steps[f.Peak].Concurrency),
			users(last.Concurrency), 100*eff[len(eff)-1], users(last.Concurrency))
	} else {
		add(throughput+" scales: from %.0f req/s with 1 user to %.0f req/s with %s (%.0f%% of linear)",
			first.ThroughputRPS, last.ThroughputRPS, users(last.Concurrency), 100*eff[len(eff)-1])
	}
	if f.Climbed {
		add("latency climbs with users: p99 goes from %s alone to %s with %s, above the %s SLO",
			measure.FormatMS(base.P99), measure.FormatMS(steps[f.Worst].P99), users(steps[f.Worst].Concurrency), measure.FormatMS(slo))
	} else {
		add("latency holds: the worst p99 over the ramp is %s (with %s), against %s alone and a %s SLO",
			measure.FormatMS(steps[f.Worst].P99), users(steps[f.Worst].Concurrency), measure.FormatMS(base.P99), measure.FormatMS(slo))
	}

	if e := endpointEvidence(base, last); e != "" {
		add("%s", e)
	}
	if f.ErrorsRose {
		w := steps[f.WorstErrors]
		add("errors rise with users: %s of requests failed alone, %s with %s (%d of %d: %v); throughput and latency count the successful answers only (with %s the service answered %.0f requests a second, %.0f of them successfully)",
			percent(f.BaselineErrorShare), percent(f.ErrorShares[f.WorstErrors]), users(w.Concurrency), w.Errors, w.Requests, w.ErrorKinds,
			users(w.Concurrency), w.AnsweredRPS, w.ThroughputRPS)
	}

}

// kind explains the kind of scalability problem (or its absence).
func (w *explainer) kind(kind string) {
	f, steps := w.f, w.m.Steps
	add := w.add
	srv, last, xPeak := f.Server, steps[len(steps)-1], steps[f.Peak].ThroughputRPS
	if f.FallWithLostCPU {
		peak := steps[f.Peak]
		add("throughput fell from %.0f req/s with %s to %.0f with %s as the server's CPU fell from %.2f to %.2f cores on a machine %.0f%% busy, its CPU per request not growing: other work took the CPU, so the fall is not coherency",
			xPeak, users(peak.Concurrency), last.ThroughputRPS, users(last.Concurrency), peak.ServerCPUCores, last.ServerCPUCores, 100*last.MachineBusy)
		w.warnings = append(w.warnings, fmt.Sprintf("with %s other processes held part of the machine's CPU: the top of the ramp measures the machine's load as much as the target; rerun on a quieter machine for a clean curve", users(last.Concurrency)))
	}
	if f.FallWithinTheWait {
		add("throughput fell from %.0f req/s with %s to %.0f with %s while the server's processes waited for a CPU %.2f cores' worth and ran %.2f on a machine %.0f%% busy: freed of that wait the top could have reached %.0f req/s, no fall, so the fall is not taken as coherency",
			xPeak, users(steps[f.Peak].Concurrency), last.ThroughputRPS, users(last.Concurrency), last.ServerCPUWaitCores, last.ServerCPUCores,
			100*last.MachineBusy, last.ThroughputRPS/(1-last.ServerCPUWaitCores))
		w.warnings = append(w.warnings, fmt.Sprintf("with %s the server waited for a CPU longer than it ran: the top of the ramp measures the machine's load as much as the target; rerun on a quieter machine for a clean curve", users(last.Concurrency)))
	}
	switch kind {
	case KindErrors:
		served := "while the ones it serves stay fast"
		if f.Climbed {
			served = "and the ones it serves slow down too"
		}
		add("errors: as users are added the service fails requests instead of serving them, %s; its capacity is the goodput, %.0f req/s at the peak with %s. If the failures are a deliberate limit (a rate limit, a cap on requests in flight, load shedding), that limit is the capacity: raise it where the CPU allows, or add instances; if not, their statuses and messages say where to look",
			served, xPeak, users(steps[f.Peak].Concurrency))
		if f.CPUKnown {
			room := "well below it: the limit is not the CPU"
			if srv.Bound {
				room = "so it is CPU-bound as well"
			}
			add("at the plateau the server uses %.2f of the %.2f cores left to it by the generator, %s", srv.CPU, srv.Available, room)
		}
	case KindNone:
		if f.CPUKnown && f.Flattened {
			saturated := "well below it, so the flat part comes from elsewhere"
			if s, ok := w.starvedStep(); srv.Bound {
				saturated = "so it is at its CPU capacity on this machine"
			} else if ok {
				// Not elsewhere in the target: other work on the machine.
				saturated = fmt.Sprintf("below it, but with %s its processes ran %.2f cores and %s on a machine %.0f%% busy: the flat part is the machine's load as much as the target's",
					users(s.Concurrency), s.ServerCPUCores, s.WaitedText("their"), 100*s.MachineBusy)
			}
			add("at the plateau the server uses %.2f of the %.2f cores left to it by the generator, %s; latency stays within the SLO, so this is not a problem at this load",
				srv.CPU, srv.Available, saturated)
		}
	case KindTail:
		w.tail()
	case KindCapacity:
		w.capacity(f)
	case KindMachineBound:
		w.machineBound()
	case KindCoherency:
		nStar := "near " + users(steps[f.Peak].Concurrency)
		if f.FitOK && !math.IsInf(f.Fit.PeakConcurrency, 1) {
			nStar = fmt.Sprintf("at N* ≈ %.1f (USL κ = %.3g)", f.Fit.PeakConcurrency, f.Fit.Kappa)
		}
		add("coherency: throughput peaks at %.0f req/s with %s and falls to %.0f req/s with %s; past the peak %s every added user slows everyone (shared state kept in step: lock handoffs, cache invalidation, chatty coordination). Fewer concurrent users per instance, or less shared state, would help; more CPU would not",
			xPeak, users(steps[f.Peak].Concurrency), last.ThroughputRPS, users(last.Concurrency), nStar)
	case KindContention:
		serial := time.Duration(float64(time.Second) / xPeak)
		lead := "contention:"
		if len(f.Processes) > 0 {
			lead = "contention: no watched process is CPU-bound;"
		}
		add("%s latency grows about linearly with users while throughput stays flat, the signature of a serial section of about %s per request (1 / %.0f req/s) that requests queue for: a global lock, a single connection or worker, a hot row. Adding machines does not help unless the serial part is removed or split",
			lead, measure.FormatMS(serial), xPeak)
		if f.CPUKnown {
			waited := ""
			if !math.IsNaN(srv.Preempted) {
				waited = fmt.Sprintf(" (%.2f counting the time its threads waited for a CPU after being preempted", srv.CPU+srv.Preempted)
				if srv.Wait-srv.Preempted >= 0.05 {
					waited += fmt.Sprintf("; another %.2f cores' worth was the machine's wake-up latency, threads woken from a lock or a socket waiting their turn", srv.Wait-srv.Preempted)
				}
				waited += ")"
			}
			add("the server uses only %.2f of the %.2f cores left to it at the plateau%s: the limit is not the CPU", srv.CPU, srv.Available, waited)
		}
	}
}

// tail explains a p99 over the SLO while throughput still grows.
func (w *explainer) tail() {
	steps, base := w.m.Steps, w.m.Baseline
	worst, last := steps[w.f.Worst], steps[len(steps)-1]
	median := fmt.Sprintf("the median holds (%s, %s alone): a few requests wait, most do not. Look for what stalls some requests (a pause, a periodic job, a lock held long, a retry)",
		measure.FormatMS(worst.P50), measure.FormatMS(base.P50))
	if float64(worst.P50) > latencyClimb*float64(base.P50) {
		median = fmt.Sprintf("the median rose too (%s, %s alone): requests queue, though throughput has not stopped growing yet",
			measure.FormatMS(worst.P50), measure.FormatMS(base.P50))
	}
	w.add("tail latency: with %s the p99 is %s, above the %s SLO, while throughput still grows in proportion to users (%.0f%% of linear with %s); %s. A longer ramp (--max-concurrency) shows where throughput stops growing",
		users(worst.Concurrency), measure.FormatMS(worst.P99), measure.FormatMS(w.m.SLO), 100*w.f.Efficiency[len(w.f.Efficiency)-1], users(last.Concurrency), median)
}

// capacity explains a CPU-bound service: starved by other processes, the
// server as a whole, or the watched group that is the bottleneck.
func (w *explainer) capacity(f Facts) {
	steps := w.m.Steps
	add := w.add
	last, xPeak := steps[len(steps)-1], steps[f.Peak].ThroughputRPS
	if f.Starved {
		peak := steps[f.Peak]
		wanted := ""
		if wait := peak.ServerCPUPreemptedCores; !math.IsNaN(wait) && wait >= 0.05 {
			wanted = fmt.Sprintf(", and wanted %.2f counting the time its threads waited for a CPU after being preempted", peak.ServerCPUCores+wait)
		}
		add("capacity: the server was CPU-bound at the peak (%.2f cores for %.0f req/s with %s%s); with %s it got only %.2f cores on a machine %.0f%% busy, and throughput fell with its CPU while the CPU per request did not grow. Other processes took the CPU, so the fall is not coherency; the service would scale by adding machines (or by making each request cheaper)",
			peak.ServerCPUCores, xPeak, users(peak.Concurrency), wanted, users(last.Concurrency), last.ServerCPUCores, 100*last.MachineBusy)
		w.warnings = append(w.warnings, fmt.Sprintf("with %s other processes held part of the machine's CPU: the top of the ramp measures the machine's load as much as the target; rerun on a quieter machine for a clean curve", users(last.Concurrency)))
		return
	}
	b := f.Bottleneck
	if b.Name == "" {
		busy := ""
		if !math.IsNaN(b.MachineBusy) {
			busy = fmt.Sprintf(" on a machine %.0f%% busy", 100*b.MachineBusy)
		}
		wanted := ""
		if !math.IsNaN(b.Preempted) && b.Preempted >= 0.05 {
			wanted = fmt.Sprintf(", and its threads, preempted, waited for a CPU another %.2f cores' worth (it wanted %.2f)", b.Preempted, b.CPU+b.Preempted)
		}
		add("capacity: at the plateau the server uses %.2f of the %.2f cores left to it by the generator%s%s: it is CPU-bound. It would scale by adding machines (or by making each request cheaper)",
			b.CPU, b.Available, busy, wanted)
		return
	}
	limit := fmt.Sprintf("of the %.2f cores the generator and the other watched processes left it", b.Available)
	if b.AtQuota() {
		limit = "held to its cgroup quota"
	}
	busy := ""
	if !math.IsNaN(b.MachineBusy) && b.MachineBusy >= measure.MachineSaturated {
		busy = fmt.Sprintf(", on a machine %.0f%% busy", 100*b.MachineBusy)
	}
	add("capacity: %s %s CPU-bound at the plateau (%s, %s%s), while %s. Give %s more CPU or more replicas (or make each request cheaper there)",
		b.Who(), isAre(b), b.Describe(), limit, busy, others(f.Processes, b), themOrIt(b))
}

// processes gives each watched group's use at the plateau, the server's
// own in-flight figure, what the CPU figures cannot say, and the USL fit.
func (w *explainer) processes() {
	f, steps := w.f, w.m.Steps
	add := w.add
	srv, last := f.Server, steps[len(steps)-1]
	if len(f.Processes) > 1 || (len(f.Processes) == 1 && f.Processes[0].Name != "") {
		var parts []string
		for _, l := range f.Processes {
			part := l.Name + " " + l.Describe()
			switch {
			case l.Suspect && strings.HasPrefix(w.m.Source, "prometheus "):
				part += " (the monitoring, not counted as the server's)"
			case l.Suspect:
				part += " (runs here, not connected to the server)"
			}
			parts = append(parts, part)
		}
		gen := steps[f.PlateauFrom].GeneratorCPUCores
		parts = append(parts, fmt.Sprintf("loadlab itself %.2f cores", gen))
		add("at the plateau, by process: %s", strings.Join(parts, "; "))
	}
	if url, ok := strings.CutPrefix(w.m.Source, "prometheus "); ok {
		add("%s", fromPrometheus(url, last))
	}
	if in := last.ServerInFlight; !math.IsNaN(in) && in > 0 {
		add("the server itself reported about %.1f requests in flight with %s (its in-flight gauges): by Little's law each spent about %s inside it at %.0f req/s",
			in, users(last.Concurrency), measure.FormatMS(time.Duration(in/last.ThroughputRPS*float64(time.Second))), last.ThroughputRPS)
	}
	switch {
	case f.CPUImplausible:
		add("the watched processes used only %.3f cores while serving %.0f req/s (under %.0f µs of CPU a request): these CPU figures cannot be the server's (an idle master or proxy was watched, not the processes doing the work), so the verdict uses throughput and latency alone; pass --watch NAME=PID for the workers",
			srv.CPU, steps[f.PlateauFrom].ThroughputRPS, cpuPerRequestFloor*1e6)
	case !f.CPUKnown && strings.HasPrefix(w.m.Source, "prometheus "):
		// A rate over a step needs two scrapes inside it: a 2 s step
		// against the cluster's 5 s scrape interval has none.
		add("the server's CPU was not seen: Prometheus had no two scrapes of process_cpu_seconds_total within a step (make --step-duration at least twice the scrape interval, or check that the server's jobs are scraped): the verdict uses throughput and latency alone, so a CPU-bound service (capacity) would look like contention")
	case !f.CPUKnown:
		add("the server's CPU was not seen (pass --pid, --watch, or --metrics with process_cpu_seconds_total): the verdict uses throughput and latency alone, so a CPU-bound service (capacity) would look like contention")
	}
	if f.FitOK {
		add("USL fit: σ = %.4g (contention), κ = %.4g (coherency), λ = %.4g req/s per user, %s, R² = %.3f",
			f.Fit.Sigma, f.Fit.Kappa, f.Fit.Lambda, f.Fit.PeakText(), f.Fit.R2)
	}

}

// fromPrometheus is the evidence line of a diagnosis watched through
// Prometheus: where its figures came from, and the server's own queue
// and database pool at the top of the ramp.
func fromPrometheus(url string, last Step) string {
	line := "the server side's figures came from Prometheus at " + url + " (CPU per scraped process by job and component over each step, in-flight requests, jobs waiting, database pool waits)"
	var seen []string
	if v := last.JobsWaiting; !math.IsNaN(v) {
		seen = append(seen, fmt.Sprintf("at most %.0f background jobs waited for a worker", v))
	}
	if v := last.DBPoolWaiting; !math.IsNaN(v) {
		seen = append(seen, fmt.Sprintf("%.2f calls waited for a database connection on average", v))
	}
	if len(seen) > 0 {
		line += fmt.Sprintf("; with %s %s", users(last.Concurrency), strings.Join(seen, " and "))
	}
	return line
}

// caveats are the warnings that apply whatever the kind.
func (w *explainer) caveats() {
	f, base := w.f, w.m.Baseline
	if f.Generator.Saturated {
		w.warnings = append(w.warnings, f.Generator.Text)
	}
	if !f.ErrorsRose && f.BaselineErrorShare >= errorRise {
		w.warnings = append(w.warnings, fmt.Sprintf("%s of requests failed already with one user (%v), and about as many with more: throughput and latency count the successful answers only; check the request",
			percent(f.BaselineErrorShare), base.ErrorKinds))
	}
}

func isAre(l *Load) string {
	if l.Members > 1 {
		return "are"
	}
	return "is"
}

func themOrIt(l *Load) string {
	if l.Members > 1 {
		return "them"
	}
	return "it"
}

// others describes the groups other than b: "the others are with room:
// nginx 0.10 cores; ...", the others that are CPU-bound too, or "it is the
// only process watched".
func others(loads []Load, b *Load) string {
	var room, bound, apart []string
	for _, l := range loads {
		switch {
		case l.Name == b.Name:
		case l.Suspect:
			apart = append(apart, l.Name+" "+l.Describe())
		case l.Bound:
			bound = append(bound, l.Name+" "+l.Describe())
		default:
			room = append(room, l.Name+" "+l.Describe())
		}
	}
	var out []string
	if len(bound) > 0 {
		out = append(out, "CPU-bound too: "+strings.Join(bound, "; "))
	}
	if len(room) > 0 {
		out = append(out, "with room: "+strings.Join(room, "; "))
	}
	if len(apart) > 0 {
		out = append(out, "not connected to the server: "+strings.Join(apart, "; "))
	}
	if len(out) == 0 {
		return "it is the only process watched"
	}
	return "the others are " + strings.Join(out, "; and ")
}

// starvedOfCPU reports whether a fall in throughput from the peak step to
// the last is explained by the server losing CPU to other work: it was
// CPU-bound at the peak, at the last step it used markedly less while the
// machine stayed busy, and the CPU it spent per request did not grow
// (growing cost per request is coherency's mark).
func starvedOfCPU(peak, last Step, cores float64) bool {
	if math.IsNaN(peak.ServerCPUCores) || math.IsNaN(last.ServerCPUCores) || math.IsNaN(last.MachineBusy) ||
		peak.ThroughputRPS <= 0 || last.ThroughputRPS <= 0 {
		return false
	}
	available := coresLeft(peak, cores)
	return measure.IsCPUBound(peak.ServerCPUCores, peak.ServerCPUPreemptedCores, available, peak.MachineBusy) && lostCPU(peak, last)
}

// lostCPU reports whether the server used markedly less CPU at the last
// step than at the peak while the machine stayed busy, and the CPU it
// spent per request did not grow: a fall in throughput that came with
// the CPU other work took. A server that was not CPU-bound at the peak
// (a lock holder on a busy machine, run less often) loses throughput
// that way too; its fall is not coherency either.
//
// A fall too deep for the last step's wait for a CPU to have made
// (fallOutlastsTheWait) is not lost CPU: a server that was not CPU-bound
// uses CPU in step with its throughput, so its CPU falls with any fall,
// its cost per request unchanged (the coherency ground-truth server at a
// load average of 25 fell from 241 to 35 req/s, its CPU from 0.06 to
// 0.01 cores, its threads waiting 0.10 cores' worth at the top).
func lostCPU(peak, last Step) bool {
	if math.IsNaN(peak.ServerCPUCores) || math.IsNaN(last.ServerCPUCores) || math.IsNaN(last.MachineBusy) ||
		peak.ThroughputRPS <= 0 || last.ThroughputRPS <= 0 || fallOutlastsTheWait(peak, last) {
		return false
	}
	costPeak := peak.ServerCPUCores / peak.ThroughputRPS
	costLast := last.ServerCPUCores / last.ThroughputRPS
	return last.ServerCPUCores < cpuLost*peak.ServerCPUCores &&
		last.MachineBusy >= measure.MachineSaturated &&
		costLast <= costGrowth*costPeak
}

// fallOutlastsTheWait reports whether the last step, freed of its
// processes' wait for a CPU, would still fall below retrograde of the
// peak: the fall is then the server's, whatever the machine did. Each of
// the server's threads waited at most W (the step's wait, in cores) of
// its time; without that wait it would have run at most 1/(1-W) as fast,
// and so would the answers it makes. The bound is known only for a wait
// of the processes' own under one core (the machine's wait, a node
// exporter's, holds other work's and may be a lower bound: it is not
// used).
func fallOutlastsTheWait(peak, last Step) bool {
	w := last.ServerCPUWaitCores
	if math.IsNaN(w) || w >= 1 || peak.ThroughputRPS <= 0 {
		return false
	}
	return last.ThroughputRPS/(1-w) < retrograde*peak.ThroughputRPS
}

// waitCanMakeTheFall reports whether the top of the ramp, on a saturated
// machine, waited for a CPU longer than it ran and, freed of that wait
// (fallOutlastsTheWait's bound), would not have fallen below retrograde
// of the peak: the machine may have made the fall.
func waitCanMakeTheFall(peak, last Step) bool {
	w := last.ServerCPUWaitCores
	if math.IsNaN(w) || w >= 1 || math.IsNaN(last.MachineBusy) || last.MachineBusy < measure.MachineSaturated ||
		math.IsNaN(last.ServerCPUCores) || w <= last.ServerCPUCores {
		return false
	}
	return !fallOutlastsTheWait(peak, last)
}

// coresLeft is the CPU the generator left to the server during a step.
func coresLeft(s Step, cores float64) float64 {
	return math.Max(cores-s.GeneratorCPUCores, 0.1)
}

// starvedStep is the step of the ramp the machine held back
// (measure.Starved): the peak, else the top; ok is false for neither.
func (w *explainer) starvedStep() (s Step, ok bool) {
	steps := w.m.Steps
	for _, s := range []Step{steps[w.f.Peak], steps[len(steps)-1]} {
		if measure.Starved(s, w.m.Cores) {
			return s, true
		}
	}
	return Step{}, false
}

// machineBound says why the ramp gets no scalability verdict: the step
// (the peak, else the top) whose processes waited for a CPU longer than
// they ran.
func (w *explainer) machineBound() {
	s, ok := w.starvedStep()
	if !ok {
		s = w.m.Steps[len(w.m.Steps)-1]
	}
	w.add("no scalability verdict: with %s the server's processes ran %.2f cores and %s on a machine %.0f%% busy: other work held them back, so throughput and latency there measure the machine's load, not the target's limits",
		users(s.Concurrency), s.ServerCPUCores, s.WaitedText("their"), 100*s.MachineBusy)
	w.warnings = append(w.warnings, "the machine was too busy for a scalability verdict: rerun on a quieter machine (or give the target and loadlab more of it)")
}
