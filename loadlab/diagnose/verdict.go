package diagnose

import (
	"fmt"
	"math"
	"sort"
	"time"

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
	// cpuBound: at the plateau, a server using this share of the cores
	// left to it by the generator is CPU-bound.
	cpuBound = 0.75
	// machineSaturated and majorShare: on a machine whose CPUs are this busy,
	// a server using at least majorShare of the cores left to it is
	// CPU-bound too: it is taking what it can get, and other work (other
	// processes, noisy neighbours) holds the rest.
	machineSaturated = 0.9
	majorShare       = 0.5
	// cpuLost and costGrowth: past the peak, a server left with less than
	// cpuLost of its CPU at the peak, on a saturated machine, whose CPU per
	// request grew by less than costGrowth, was starved by other work.
	cpuLost    = 0.85
	costGrowth = 1.25
)

// Verdict is Judge's outcome.
type Verdict struct {
	Performance bool
	Scalability bool
	Kind        string
	Evidence    []string
	Warnings    []string
}

func (r *Report) judge(cfg Config) {
	fit, err := fitSteps(r.Steps)
	r.Fit, r.FitOK = fit, err == nil
	if err != nil {
		r.Warnings = append(r.Warnings, "no USL fit: "+err.Error())
	}
	r.Efficiency = efficiency(r.Steps)
	v := Judge(r.Baseline, r.Steps, fit, r.FitOK, cfg.SLO, cfg.Cores)
	r.Performance, r.Scalability, r.Kind = v.Performance, v.Scalability, v.Kind
	r.Evidence, r.Warnings = v.Evidence, append(r.Warnings, v.Warnings...)
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

func fmtMS(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func users(n int) string {
	if n == 1 {
		return "1 user"
	}
	return fmt.Sprintf("%d users", n)
}

// Judge decides both verdicts from the measurements alone (it does no I/O,
// so its rules are tested on synthetic data). steps must start at
// concurrency 1 and ascend. Server CPU is used where steps carry it.
func Judge(base Step, steps []Step, fit usl.Fit, fitOK bool, slo time.Duration, cores float64) Verdict {
	var v Verdict
	add := func(format string, a ...any) { v.Evidence = append(v.Evidence, fmt.Sprintf(format, a...)) }

	// Performance: slow even alone.
	v.Performance = base.P99 > slo
	if v.Performance {
		add("performance problem: a single user already waits %s at p99 (p50 %s), above the %s SLO; the work of one request is too slow, whatever the load",
			fmtMS(base.P99), fmtMS(base.P50), fmtMS(slo))
	} else {
		add("no performance problem: a single user sees p50 %s and p99 %s, within the %s SLO",
			fmtMS(base.P50), fmtMS(base.P99), fmtMS(slo))
	}
	if len(steps) < 2 {
		v.Kind = KindNone
		v.Warnings = append(v.Warnings, "the ramp has fewer than two steps: no scalability verdict")
		return v
	}

	eff := efficiency(steps)
	first, last := steps[0], steps[len(steps)-1]
	peak := 0
	for i, s := range steps {
		if s.ThroughputRPS > steps[peak].ThroughputRPS {
			peak = i
		}
	}
	xPeak := steps[peak].ThroughputRPS
	plateauFrom := peak
	for i := range steps {
		if steps[i].ThroughputRPS >= plateau*xPeak {
			plateauFrom = i
			break
		}
	}
	worst := 0
	for i, s := range steps {
		if s.P99 > steps[worst].P99 {
			worst = i
		}
	}
	climbed := steps[worst].P99 > slo && float64(steps[worst].P99) > latencyClimb*float64(base.P99)
	flattened := eff[len(eff)-1] < efficiencyFloor
	v.Scalability = climbed && flattened

	// Throughput and latency, in words.
	if flattened {
		add("throughput stops growing in proportion to users: it reaches %.0f req/s from %s on (peak %.0f req/s at %s), and with %s the service does %.0f%% of the work %s would do if it scaled linearly",
			steps[plateauFrom].ThroughputRPS, users(steps[plateauFrom].Concurrency), xPeak, users(steps[peak].Concurrency),
			users(last.Concurrency), 100*eff[len(eff)-1], users(last.Concurrency))
	} else {
		add("throughput scales: from %.0f req/s with 1 user to %.0f req/s with %s (%.0f%% of linear)",
			first.ThroughputRPS, last.ThroughputRPS, users(last.Concurrency), 100*eff[len(eff)-1])
	}
	if climbed {
		add("latency climbs with users: p99 goes from %s alone to %s with %s, above the %s SLO",
			fmtMS(base.P99), fmtMS(steps[worst].P99), users(steps[worst].Concurrency), fmtMS(slo))
	} else {
		add("latency holds: the worst p99 over the ramp is %s (with %s), against %s alone and a %s SLO",
			fmtMS(steps[worst].P99), users(steps[worst].Concurrency), fmtMS(base.P99), fmtMS(slo))
	}

	// The server's CPU at the plateau, where it could be seen.
	serverCPU, cpuWait, available, machineBusy, cpuKnown := plateauCPU(steps[plateauFrom:], cores)
	cpuBoundNow := cpuKnown && isCPUBound(serverCPU, cpuWait, available, machineBusy)

	v.Kind = KindNone
	switch {
	case !v.Scalability:
		if cpuKnown && flattened {
			saturated := "well below it, so the flat part comes from elsewhere"
			if cpuBoundNow {
				saturated = "so it is at its CPU capacity on this machine"
			}
			add("at the plateau the server uses %.2f of the %.2f cores left to it by the generator, %s; latency stays within the SLO, so this is not a problem at this load",
				serverCPU, available, saturated)
		}
	case peak < len(steps)-1 && last.ThroughputRPS < retrograde*xPeak && starvedOfCPU(steps[peak], last, cores):
		// Throughput fell because the server got less CPU, not because each
		// request cost more: other work on the machine took it.
		v.Kind = KindCapacity
		wanted := ""
		if w := steps[peak].ServerCPUWaitCores; !math.IsNaN(w) && w >= 0.05 {
			wanted = fmt.Sprintf(", and wanted %.2f counting the time its threads waited for a CPU", steps[peak].ServerCPUCores+w)
		}
		add("capacity: the server was CPU-bound at the peak (%.2f cores for %.0f req/s with %s%s); with %s it got only %.2f cores on a machine %.0f%% busy, and throughput fell with its CPU while the CPU per request did not grow. Other processes took the CPU, so the fall is not coherency; the service would scale by adding machines (or by making each request cheaper)",
			steps[peak].ServerCPUCores, xPeak, users(steps[peak].Concurrency), wanted, users(last.Concurrency), last.ServerCPUCores, 100*last.MachineBusy)
		v.Warnings = append(v.Warnings, fmt.Sprintf("with %s other processes held part of the machine's CPU: the top of the ramp measures the machine's load as much as the target; rerun on a quieter machine for a clean curve", users(last.Concurrency)))
	case peak < len(steps)-1 && last.ThroughputRPS < retrograde*xPeak:
		v.Kind = KindCoherency
		nStar := "near " + users(steps[peak].Concurrency)
		if fitOK && !math.IsInf(fit.PeakConcurrency, 1) {
			nStar = fmt.Sprintf("at N* ≈ %.1f (USL κ = %.3g)", fit.PeakConcurrency, fit.Kappa)
		}
		add("coherency: throughput peaks at %.0f req/s with %s and falls to %.0f req/s with %s; past the peak %s every added user slows everyone (shared state kept in step: lock handoffs, cache invalidation, chatty coordination). Fewer concurrent users per instance, or less shared state, would help; more CPU would not",
			xPeak, users(steps[peak].Concurrency), last.ThroughputRPS, users(last.Concurrency), nStar)
	case cpuBoundNow:
		v.Kind = KindCapacity
		busy := ""
		if !math.IsNaN(machineBusy) {
			busy = fmt.Sprintf(" on a machine %.0f%% busy", 100*machineBusy)
		}
		wanted := ""
		if !math.IsNaN(cpuWait) && cpuWait >= 0.05 {
			wanted = fmt.Sprintf(", and its threads waited for a CPU another %.2f cores' worth (it wanted %.2f)", cpuWait, serverCPU+cpuWait)
		}
		add("capacity: at the plateau the server uses %.2f of the %.2f cores left to it by the generator%s%s: it is CPU-bound. It would scale by adding machines (or by making each request cheaper)",
			serverCPU, available, busy, wanted)
	default:
		v.Kind = KindContention
		serial := time.Duration(float64(time.Second) / xPeak)
		add("contention: latency grows about linearly with users while throughput stays flat, the signature of a serial section of about %s per request (1 / %.0f req/s) that requests queue for: a global lock, a single connection or worker, a hot row. Adding machines does not help unless the serial part is removed or split",
			fmtMS(serial), xPeak)
		if cpuKnown {
			waited := ""
			if !math.IsNaN(cpuWait) {
				waited = fmt.Sprintf(" (%.2f counting the time its threads waited for a CPU)", serverCPU+cpuWait)
			}
			add("the server uses only %.2f of the %.2f cores left to it at the plateau%s: the limit is not the CPU", serverCPU, available, waited)
		}
	}
	if in := last.ServerInFlight; !math.IsNaN(in) && in > 0 {
		add("the server itself reported about %.1f requests in flight with %s (its in-flight gauges): by Little's law each spent about %s inside it at %.0f req/s",
			in, users(last.Concurrency), fmtMS(time.Duration(in/last.ThroughputRPS*float64(time.Second))), last.ThroughputRPS)
	}
	if !cpuKnown {
		add("the server's CPU was not seen (pass --pid, or --metrics with process_cpu_seconds_total): the verdict uses throughput and latency alone, so a CPU-bound service (capacity) would look like contention")
	}
	if fitOK {
		peakText := "no peak (κ = 0)"
		if !math.IsInf(fit.PeakConcurrency, 1) {
			peakText = fmt.Sprintf("peak at N* = %.1f", fit.PeakConcurrency)
		}
		add("USL fit: σ = %.4g (contention), κ = %.4g (coherency), λ = %.4g req/s per user, %s, R² = %.3f",
			fit.Sigma, fit.Kappa, fit.Lambda, peakText, fit.R2)
	}

	for _, s := range append([]Step{base}, steps...) {
		if s.GeneratorSaturated {
			v.Warnings = append(v.Warnings, fmt.Sprintf("with %s the generator itself was saturated: that step may describe loadlab more than the target", users(s.Concurrency)))
		}
		if s.Requests > 0 && s.Errors*100 > s.Requests {
			v.Warnings = append(v.Warnings, fmt.Sprintf("with %s, %d of %d requests failed", users(s.Concurrency), s.Errors, s.Requests))
		}
	}
	return v
}

// isCPUBound reports whether a server using serverCPU of the available
// cores is CPU-bound: it uses most of them; or, on a saturated machine, it
// takes a major share while other work holds the rest; or it wanted them
// (used the CPU or waited in the run queue for it; wait is NaN where
// unknown) even though other work kept it from getting them.
func isCPUBound(serverCPU, wait, available, machineBusy float64) bool {
	return serverCPU >= cpuBound*available ||
		(machineBusy >= machineSaturated && serverCPU >= majorShare*available) ||
		(!math.IsNaN(wait) && serverCPU+wait >= cpuBound*available)
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
	costPeak := peak.ServerCPUCores / peak.ThroughputRPS
	costLast := last.ServerCPUCores / last.ThroughputRPS
	return isCPUBound(peak.ServerCPUCores, peak.ServerCPUWaitCores, available, peak.MachineBusy) &&
		last.ServerCPUCores < cpuLost*peak.ServerCPUCores &&
		last.MachineBusy >= machineSaturated &&
		costLast <= costGrowth*costPeak
}

// coresLeft is the CPU the generator left to the server during a step.
func coresLeft(s Step, cores float64) float64 {
	return math.Max(cores-s.GeneratorCPUCores, 0.1)
}

// plateauCPU is the median server CPU over the plateau steps, the CPU its
// threads waited for, the cores left to the server there, and how busy the
// machine was (NaN where unknown).
func plateauCPU(steps []Step, cores float64) (server, wait, available, machineBusy float64, ok bool) {
	var cpu, waits, avail, busy []float64
	for _, s := range steps {
		if !math.IsNaN(s.ServerCPUCores) {
			cpu = append(cpu, s.ServerCPUCores)
			avail = append(avail, coresLeft(s, cores))
			if !math.IsNaN(s.MachineBusy) {
				busy = append(busy, s.MachineBusy)
			}
			if !math.IsNaN(s.ServerCPUWaitCores) {
				waits = append(waits, s.ServerCPUWaitCores)
			}
		}
	}
	if len(cpu) == 0 {
		return 0, math.NaN(), 0, math.NaN(), false
	}
	return median(cpu), medianOrNaN(waits), median(avail), medianOrNaN(busy), true
}

func medianOrNaN(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return median(v)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
