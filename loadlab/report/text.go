package report

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/scaleout"
	"github.com/perfscale/perfscale/loadlab/threshold"
	"github.com/perfscale/perfscale/loadlab/usl"
)

// TextReporter writes results as aligned text for a terminal.
type TextReporter struct{}

// Run writes a run's summary: requests, errors, latency percentiles and
// whether the generator kept up.
func (TextReporter) Run(w io.Writer, r RunResult) error {
	ew := &errWriter{w: w}
	e := r.Errors
	fmt.Fprintf(ew, "  requests    %d in %.2fs = %.1f req/s\n", r.Requests, r.Elapsed.Seconds(), r.ThroughputRPS)
	fmt.Fprintf(ew, "  errors      %d (4xx %d, 5xx %d, timeout %d, connection %d, other %d)\n",
		e.Total(), e.Status4xx, e.Status5xx, e.Timeout, e.Connection, e.Other)
	l := r.Latency
	fmt.Fprintf(ew, "  latency     %-10s %-10s %-10s %-10s %-10s %-10s %s\n", "min", "mean", "p50", "p90", "p99", "p99.9", "max")
	fmt.Fprintf(ew, "              %-10s %-10s %-10s %-10s %-10s %-10s %s\n",
		ms(l.Min), ms(l.Mean), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max))
	if r.Model == "open" {
		fmt.Fprintln(ew, "              (open loop: latency counts from each request's intended send time)")
	}
	if r.GeneratorSaturated {
		fmt.Fprintln(ew, "  generator   SATURATED: the numbers may describe loadlab, not the target:")
		for _, reason := range r.SaturationReasons {
			fmt.Fprintf(ew, "              - %s\n", reason)
		}
	} else {
		late := ""
		if r.Model == "open" {
			late = fmt.Sprintf(", requests sent at most %s late at p99", ms(r.SendDelayP99))
		}
		fmt.Fprintf(ew, "  generator   kept up (CPU %.2f cores%s)\n", r.GeneratorCPUCores, late)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(ew, "  note        %s\n", n)
	}
	printAgents(ew, r.Agents)
	printStages(ew, r.Stages, r.Model == "closed")
	printEndpoints(ew, r.Endpoints)
	Thresholds(ew, r.Thresholds)
	return ew.err
}

// printAgents prints each agent's part of a distributed run and its own
// saturation check (the reasons themselves are listed above).
func printAgents(w io.Writer, agents []load.AgentCheck) {
	if len(agents) == 0 {
		return
	}
	var late time.Duration
	for _, a := range agents {
		late = max(late, a.StartedLate)
	}
	fmt.Fprintf(w, "  agents      %d, histograms merged exactly; the last to start did %s after its agreed instant\n", len(agents), ms(late))
	for _, a := range agents {
		load := fmt.Sprintf("%d users", a.Concurrency)
		if a.Rate > 0 {
			load = fmt.Sprintf("%g req/s, sent at most %s late at p99", a.Rate, ms(a.SendDelayP99))
		}
		state := "kept up"
		if a.GeneratorSaturated {
			state = "SATURATED"
		}
		fmt.Fprintf(w, "              %s: %d requests (%.1f req/s, errors %s, p50 %s, p99 %s), %s, CPU %.2f cores: %s\n",
			a.Name, a.Requests, a.ThroughputRPS, errorShare(a.Errors.Total(), a.Requests), ms(a.Latency.P50), ms(a.Latency.P99),
			load, a.GeneratorCPUCores, state)
	}
}

// Thresholds writes one line per threshold checked, passed or failed.
func Thresholds(w io.Writer, outcomes []threshold.Outcome) {
	for i, o := range outcomes {
		label := ""
		if i == 0 {
			label = "thresholds"
		}
		verdict := "ok  "
		if !o.Passed {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "  %-11s %s %s: %s\n", label, verdict, o.Threshold.Source, o.Observed)
	}
}

// printStages prints one row per stage of a staged run.
func printStages(w io.Writer, stages []load.StageResult, users bool) {
	if len(stages) == 0 {
		return
	}
	unit := "req/s"
	if users {
		unit = "users"
	}
	fmt.Fprintf(w, "  stages\n    %-6s %8s %-17s %9s %10s %15s %10s %10s\n", "stage", "length", "target "+unit, "requests", "req/s", "errors", "p50", "p99")
	for i, s := range stages {
		fmt.Fprintf(w, "    %-6d %8v %-17s %9d %10.1f %15s %10s %10s\n", i+1, s.Duration,
			fmt.Sprintf("%g -> %g", s.From, s.Target), s.Requests, s.ThroughputRPS,
			errorShare(s.Errors.Total(), s.Requests), ms(s.Latency.P50), ms(s.Latency.P99))
	}
}

// printEndpoints prints one row per endpoint, then each endpoint's error
// causes with a sample message, so a failure says where and why.
func printEndpoints(w io.Writer, eps []load.Endpoint) {
	if len(eps) > 1 {
		nameW, reqW := len("endpoint"), len("request")
		for _, ep := range eps {
			nameW = max(nameW, utf8.RuneCountInString(ep.Name))
			reqW = max(reqW, min(utf8.RuneCountInString(ep.Request), 40))
		}
		fmt.Fprintf(w, "  endpoints\n    %-*s  %-*s %9s %15s %10s %10s %10s\n", nameW, "endpoint", reqW, "request", "requests", "errors", "p50", "p99", "max")
		for _, ep := range eps {
			fmt.Fprintf(w, "    %-*s  %-*s %9d %15s %10s %10s %10s\n", nameW, ep.Name, reqW, clip(ep.Request, 40),
				ep.Requests, errorShare(ep.Errors.Total, ep.Requests), ms(ep.Latency.P50), ms(ep.Latency.P99), ms(ep.Latency.Max))
		}
	}
	printed := false
	for _, ep := range eps {
		for _, c := range ep.Errors.Causes {
			if !printed {
				fmt.Fprintln(w, "  error causes")
				printed = true
			}
			name := c.Cause
			if c.Type != "" {
				// A message kind shows in its sample; a problem type does not.
				name = c.Label(0)
			}
			line := fmt.Sprintf("    %-12s %7d  %s", ep.Name, c.Count, name)
			if c.Sample != "" {
				line += fmt.Sprintf(": %q", c.Sample)
			}
			fmt.Fprintln(w, line)
		}
	}
}

func errorShare(errs, requests int64) string {
	if requests == 0 || errs == 0 {
		return fmt.Sprint(errs)
	}
	return fmt.Sprintf("%d (%.0f%%)", errs, 100*float64(errs)/float64(requests))
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// RunHeader is the line printed before a run starts: the target, the
// load model and its bounds.
func RunHeader(cfg load.Config, target string) string {
	model := fmt.Sprintf("closed loop, %d users", cfg.Concurrency)
	if cfg.ThinkTime > 0 {
		model += fmt.Sprintf(" thinking %v", cfg.ThinkTime)
	}
	if cfg.Rate > 0 {
		model = fmt.Sprintf("open loop at %g req/s", cfg.Rate)
	}
	if len(cfg.Stages) > 0 {
		var parts []string
		for _, s := range cfg.Stages {
			parts = append(parts, fmt.Sprintf("%v to %g", s.Duration, s.Target))
		}
		unit := "open loop, req/s ramping"
		if cfg.StagedUsers {
			unit = "closed loop, users ramping"
		}
		return fmt.Sprintf("loadlab run: %s, %s %s", target, unit, strings.Join(parts, ", then "))
	}
	var bounds []string
	if cfg.Duration > 0 {
		bounds = append(bounds, "for "+cfg.Duration.String())
	}
	if cfg.Requests > 0 {
		bounds = append(bounds, fmt.Sprintf("up to %d requests", cfg.Requests))
	}
	return fmt.Sprintf("loadlab run: %s, %s, %s", target, model, strings.Join(bounds, " and "))
}

// RunProgress is the live line a run shows on a terminal.
func RunProgress(s load.Snapshot) string {
	line := fmt.Sprintf("%5.0fs  %8.0f req/s  p99 %-9s  requests %d  errors %d",
		s.Elapsed.Seconds(), s.RateRPS, ms(s.P99), s.Requests, s.Errors)
	if s.Saturated {
		line += "  GENERATOR SATURATED"
	}
	return line
}

// DiagnoseProgress is the line diagnose prints as each step ends.
func DiagnoseProgress(phase string, s diagnose.Step) string {
	cpu := ""
	if !math.IsNaN(s.ServerCPUCores) {
		cpu = fmt.Sprintf("  server CPU %.2f cores", s.ServerCPUCores)
	}
	if !math.IsNaN(s.ServerCPUWaitCores) {
		cpu += fmt.Sprintf(" (+%.2f waiting for a CPU)", s.ServerCPUWaitCores)
	}
	for _, p := range s.Processes {
		cpu += fmt.Sprintf("  %s %.2f", p.Name, p.CPUCores)
	}
	if !math.IsNaN(s.ServerInFlight) {
		cpu += fmt.Sprintf("  server in flight %.1f", s.ServerInFlight)
	}
	users := "users"
	if s.Concurrency == 1 {
		users = "user " // the columns stay aligned
	}
	return fmt.Sprintf("  %-8s %3d %s  %9.1f req/s  p50 %8s  p99 %8s  errors %s%s", phase, s.Concurrency, users,
		s.ThroughputRPS, ms(s.P50), ms(s.P99), stepErrors(s), cpu)
}

// stepErrors is a step's failed requests with their share and kinds:
// "0", "8243 (99%: 5xx 8243)".
func stepErrors(s diagnose.Step) string {
	if s.Errors == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%.0f%%: %v)", s.Errors, 100*float64(s.Errors)/float64(s.Requests), s.ErrorKinds)
}

func yesNo(problem bool, kind string) string {
	if kind == "machine-bound" {
		return "no verdict (machine-bound: the machine, not the target, held the ramp back)"
	}
	if !problem {
		return "no problem"
	}
	if kind != "" {
		return "PROBLEM (" + kind + ")"
	}
	return "PROBLEM"
}

// Diagnosis writes the ramp's table, the two verdicts, the evidence and
// the warnings.
func (TextReporter) Diagnosis(w io.Writer, r *diagnose.Report) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "\n  %5s %10s %10s %9s %9s %11s  %s\n", "users", "goodput", "efficiency", "p50", "p99", "server CPU", "errors")
	failed := false
	for i, s := range r.Steps {
		cpu := "-"
		if !math.IsNaN(s.ServerCPUCores) {
			cpu = fmt.Sprintf("%.2f", s.ServerCPUCores)
		}
		failed = failed || s.Errors > 0
		fmt.Fprintf(ew, "  %5d %10.1f %9.0f%% %9s %9s %11s  %s\n", s.Concurrency, s.ThroughputRPS, 100*r.Efficiency[i], ms(s.P50), ms(s.P99), cpu, stepErrors(s))
	}
	if failed {
		fmt.Fprintln(ew, "  (goodput: successful answers a second; p50 and p99 of the successful answers)")
	}
	fmt.Fprintf(ew, "\n  capacity:                  %.0f req/s with %d users (goodput)\n", r.CapacityRPS, r.CapacityAt)
	perf := yesNo(r.Performance, "")
	if r.BaselineHeldBack {
		perf = "no verdict (machine-bound: the machine, not the target, held the single-user baseline back)"
	}
	fmt.Fprintf(ew, "  performance (one user):    %s\n", perf)
	fmt.Fprintf(ew, "  scalability (more users):  %s\n", yesNo(r.Scalability, r.Kind))
	// The USL fit is the last line of the evidence, in words; the exact
	// figures are in the JSON.
	fmt.Fprintln(ew, "\n  evidence:")
	for _, e := range r.Evidence {
		fmt.Fprintf(ew, "  - %s\n", e)
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintln(ew, "\n  warnings:")
		for _, e := range r.Warnings {
			fmt.Fprintf(ew, "  - %s\n", e)
		}
	}
	return ew.err
}

// Scaleout writes the replicas table, the scaling-up table and the
// equal-CPU comparison when CPU sizes were measured, and the USL fit.
func (TextReporter) Scaleout(w io.Writer, r *scaleout.Result) error {
	ew := &errWriter{w: w}
	// Why the table is not to be trusted, before it is read.
	for _, warning := range r.Warnings {
		fmt.Fprintf(ew, "\n  WARNING: %s\n", warning)
	}
	fmt.Fprintf(ew, "\n  %8s %12s %9s %11s %12s  %s\n", "replicas", "capacity", "speed-up", "efficiency", "p99 at cap.", "bottleneck")
	for _, s := range r.Steps {
		fmt.Fprintf(ew, "  %8d %8.0f/s %8.2fx %10.0f%% %12s  %s\n", s.Replicas, s.CapacityRPS, s.Speedup, 100*s.Efficiency, ms(s.P99), s.Bottleneck)
	}
	if len(r.Vertical) > 0 {
		fmt.Fprintf(ew, "\n  one replica, more CPU (scaling up):\n  %8s %12s %9s %11s %12s  %s\n", "cores", "capacity", "speed-up", "efficiency", "p99 at cap.", "bottleneck")
		for _, s := range r.Vertical {
			fmt.Fprintf(ew, "  %8g %8.0f/s %8.2fx %10.0f%% %12s  %s\n", s.CPU, s.CapacityRPS, s.Speedup, 100*s.Efficiency, ms(s.P99), s.Bottleneck)
		}
		fmt.Fprintf(ew, "\n  at equal total CPU:\n")
		for _, c := range equalCPUs(r) {
			fmt.Fprintf(ew, "  %g cores: %d replicas of %g give %.0f req/s, 1 replica of %g gives %.0f req/s\n",
				c.Cores, c.Replicas, c.PerReplica, c.Horizontal, c.Cores, c.Vertical)
		}
	}
	if r.FitOK {
		fmt.Fprintf(ew, "\n  USL over replicas: σ = %.4g, κ = %.4g, λ = %.4g req/s per replica, R² = %.3f; %s\n",
			r.Fit.Sigma, r.Fit.Kappa, r.Fit.Lambda, r.Fit.R2, r.PeakText())
	} else if r.FitError != "" {
		fmt.Fprintf(ew, "\n  no USL fit: %s\n", r.FitError)
	}
	for _, finding := range r.Retrograde {
		fmt.Fprintf(ew, "  capacity fell: %s\n", finding)
	}
	for _, finding := range r.OffCurve {
		fmt.Fprintf(ew, "  off the USL curve: %s\n", finding)
	}
	return ew.err
}

// Fit writes the fitted parameters, the peak and the points beside the
// model.
func (TextReporter) Fit(w io.Writer, r FitResult) error {
	ew := &errWriter{w: w}
	fit := r.Fit
	fmt.Fprintf(ew, "USL fit of %d points from %s\n", len(r.Points), r.Source)
	fmt.Fprintf(ew, "  sigma (contention)   %.7g\n", fit.Sigma)
	fmt.Fprintf(ew, "  kappa (coherency)    %.7g\n", fit.Kappa)
	fmt.Fprintf(ew, "  lambda (X at N=1)    %.7g\n", fit.Lambda)
	fmt.Fprintf(ew, "  peak concurrency     %s\n", fitPeak(fit))
	fmt.Fprintf(ew, "  R²                   %.4f\n", fit.R2)
	eff := usl.Efficiency(r.Points, fit)
	fmt.Fprintf(ew, "\n  %8s %12s %12s %10s\n", "N", "X measured", "X model", "efficiency")
	for i, p := range r.Points {
		fmt.Fprintf(ew, "  %8g %12.4g %12.4g %9.0f%%\n", p.N, p.X, fit.Throughput(p.N), 100*eff[i])
	}
	return ew.err
}

// fitPeak says where throughput peaks, in words.
func fitPeak(fit usl.Fit) string {
	switch {
	case fit.Sigma >= 1:
		return "1 (sigma >= 1: a second user already lowers throughput)"
	case math.IsInf(fit.PeakConcurrency, 1):
		return fmt.Sprintf("none (kappa about 0: throughput approaches %.4g and never falls)", fit.PeakThroughput())
	}
	return fmt.Sprintf("%.1f (X = %.4g there)", fit.PeakConcurrency, fit.PeakThroughput())
}

// equalCPU sets a count of replicas beside one replica with as much CPU
// as all of them.
type equalCPU struct {
	Cores                float64
	Replicas             int
	PerReplica           float64
	Horizontal, Vertical float64
}

func equalCPUs(r *scaleout.Result) []equalCPU {
	var out []equalCPU
	for _, v := range r.Vertical {
		for _, h := range r.Steps {
			if h.Replicas > 1 && math.Abs(float64(h.Replicas)*h.CPU-v.CPU) < 1e-9 {
				out = append(out, equalCPU{v.CPU, h.Replicas, h.CPU, h.CapacityRPS, v.CapacityRPS})
			}
		}
	}
	return out
}

// errWriter keeps the first write error, so a printer can check once at
// its end.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
