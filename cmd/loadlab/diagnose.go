package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/report"
)

const diagnoseUsage = `Usage: loadlab diagnose [flags] URL

Tells a performance problem (slow even for one user) from a scalability
problem (slows down as users are added: contention, coherency or capacity).
It measures one user's latency, then ramps closed-loop users 1, 2, 4, ... up
to --max-concurrency, fits the Universal Scalability Law, watches the server
side's processes, and prints the verdicts with their evidence, naming the
process that is the bottleneck.

Watched processes: --watch NAME=PID or NAME=METRICS_URL (repeatable; the
same NAME twice is one group of replicas), --pid, --metrics; or, for a local
URL, every process holding its listening socket with their children, the
local services they connect to (a proxy's replicas, their database), and
PostgreSQL, nginx, Redis and NATS when they run here. For each: CPU, time
its threads waited for a CPU, and the cgroup CPU quota and throttling.

Examples:
  loadlab diagnose http://127.0.0.1:8080/v1/menu
  loadlab diagnose --slo 50ms --max-concurrency 32 --step-duration 3s \
      --json diag.json --html diag.html http://127.0.0.1:8080/v1/items/7
  loadlab diagnose --metrics http://127.0.0.1:9090/metrics http://10.0.0.5:8080/
  loadlab diagnose --watch api=4242 --watch api=4243 --watch db=http://10.0.0.6:9187/metrics http://127.0.0.1:8080/

Flags:
`

func runDiagnose(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("diagnose", diagnoseUsage, stdout)
	var (
		slo          = fs.Duration("slo", 200*time.Millisecond, "p99 latency objective")
		maxConc      = fs.Int("max-concurrency", 64, "highest number of users in the ramp")
		stepDuration = fs.Duration("step-duration", 5*time.Second, "length of each ramp step")
		baselineReqs = fs.Int64("baseline-requests", 200, "single-user baseline: at most this many requests")
		baselineDur  = fs.Duration("baseline-duration", 10*time.Second, "single-user baseline: at most this long")
		timeout      = fs.Duration("timeout", 10*time.Second, "per-request timeout")
		pid          = fs.Int("pid", 0, "the target's process id, to read its CPU from /proc")
		metrics      = fs.String("metrics", "", "the target's Prometheus endpoint, to read process_cpu_seconds_total")
		jsonOut      = fs.String("json", "", "write the diagnosis as JSON to this file")
		htmlOut      = fs.String("html", "", "write a self-contained HTML report to this file")
		client       = fs.String("client", string(load.ClientFastHTTP), "HTTP client: fasthttp or nethttp")
		watch        watchFlags
	)
	fs.Var(&watch, "watch", "watch a server process: NAME=PID or NAME=METRICS_URL (repeatable)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return errors.New("diagnose: give one URL to diagnose (see loadlab diagnose --help)")
	case *slo <= 0:
		return errors.New("diagnose: --slo must be positive")
	case *maxConc < 2:
		return errors.New("diagnose: --max-concurrency must be at least 2")
	case *stepDuration <= 0 || *baselineDur <= 0 || *timeout <= 0:
		return errors.New("diagnose: --step-duration, --baseline-duration and --timeout must be positive")
	case *baselineReqs < 10:
		return errors.New("diagnose: --baseline-requests must be at least 10 to estimate a p99")
	case *pid != 0 && *metrics != "":
		return errors.New("diagnose: give --pid or --metrics, not both")
	case (*pid != 0 || *metrics != "") && len(watch) > 0:
		return errors.New("diagnose: give --watch, or --pid/--metrics, not both")
	case *pid < 0:
		return errors.New("diagnose: --pid must be a process id")
	}
	target := pos[0]
	if err := load.CheckURL(target); err != nil {
		return fmt.Errorf("diagnose: %v", err)
	}
	if *metrics != "" {
		if err := load.CheckURL(*metrics); err != nil {
			return fmt.Errorf("diagnose: --metrics: %v", err)
		}
	}

	if *pid != 0 {
		watch = watchFlags{fmt.Sprintf("server=%d", *pid)}
	}
	if *metrics != "" {
		watch = watchFlags{"server=" + *metrics}
	}
	watcher, notes, err := watchSet(ctx, target, watch)
	if err != nil {
		return fmt.Errorf("diagnose: %v", err)
	}
	fmt.Fprintf(stdout, "loadlab diagnose: %s\n", target)
	for _, n := range notes {
		fmt.Fprintf(stdout, "  %s\n", n)
	}
	levels := diagnose.Levels(*maxConc)
	total := time.Duration(len(levels))**stepDuration + *baselineDur
	fmt.Fprintf(stdout, "  baseline (1 user, up to %d requests or %v), then %d steps of %v: at most about %v\n",
		*baselineReqs, *baselineDur, len(levels), *stepDuration, total.Round(time.Second))

	cfg := diagnose.Config{
		Target: target, SLO: *slo, MaxConcurrency: *maxConc, StepDuration: *stepDuration,
		BaselineRequests: *baselineReqs, BaselineDuration: *baselineDur,
		Progress: func(phase string, s diagnose.Step) {
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
			fmt.Fprintf(stderr, "  %-8s %3d users  %9.1f req/s  p50 %8s  p99 %8s  errors %s%s\n", phase, s.Concurrency,
				s.ThroughputRPS, ms(s.P50), ms(s.P99), stepErrors(s), cpu)
		},
	}
	runner := measure.LoadRunner{Target: &load.Request{Method: "GET", URL: target}, Timeout: *timeout, Client: load.Client(*client)}
	markStarted(ctx)
	rep, err := diagnose.Run(ctx, cfg, runner, watcher)
	if err != nil {
		return fmt.Errorf("diagnose: %v", err)
	}
	rep.Watched = watcher.Describe()
	printDiagnosis(stdout, rep)
	if *jsonOut != "" {
		if err := writeJSON(*jsonOut, rep); err != nil {
			return fmt.Errorf("diagnose: %v", err)
		}
	}
	if *htmlOut != "" {
		f, err := os.Create(*htmlOut)
		if err != nil {
			return fmt.Errorf("diagnose: %v", err)
		}
		if err := report.Render(f, rep); err != nil {
			f.Close()
			return fmt.Errorf("diagnose: %v", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("diagnose: %v", err)
		}
	}
	return nil
}

func yesNo(problem bool, kind string) string {
	if !problem {
		return "no problem"
	}
	if kind != "" {
		return "PROBLEM (" + kind + ")"
	}
	return "PROBLEM"
}

// stepErrors is a step's failed requests with their share and kinds:
// "0", "8243 (99%: 5xx 8243)".
func stepErrors(s diagnose.Step) string {
	if s.Errors == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%.0f%%: %v)", s.Errors, 100*float64(s.Errors)/float64(s.Requests), s.ErrorKinds)
}

func printDiagnosis(w io.Writer, r *diagnose.Report) {
	fmt.Fprintf(w, "\n  %5s %10s %10s %9s %9s %11s  %s\n", "users", "goodput", "efficiency", "p50", "p99", "server CPU", "errors")
	failed := false
	for i, s := range r.Steps {
		cpu := "-"
		if !math.IsNaN(s.ServerCPUCores) {
			cpu = fmt.Sprintf("%.2f", s.ServerCPUCores)
		}
		failed = failed || s.Errors > 0
		fmt.Fprintf(w, "  %5d %10.1f %9.0f%% %9s %9s %11s  %s\n", s.Concurrency, s.ThroughputRPS, 100*r.Efficiency[i], ms(s.P50), ms(s.P99), cpu, stepErrors(s))
	}
	if failed {
		fmt.Fprintln(w, "  (goodput: successful answers a second; p50 and p99 of the successful answers)")
	}
	fmt.Fprintf(w, "\n  capacity:                  %.0f req/s with %d users (goodput)\n", r.CapacityRPS, r.CapacityAt)
	fmt.Fprintf(w, "  performance (one user):    %s\n", yesNo(r.Performance, ""))
	fmt.Fprintf(w, "  scalability (more users):  %s\n", yesNo(r.Scalability, r.Kind))
	// The USL fit is the last line of the evidence, in words; the exact
	// figures are in --json.
	fmt.Fprintln(w, "\n  evidence:")
	for _, e := range r.Evidence {
		fmt.Fprintf(w, "  - %s\n", e)
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintln(w, "\n  warnings:")
		for _, e := range r.Warnings {
			fmt.Fprintf(w, "  - %s\n", e)
		}
	}
}
