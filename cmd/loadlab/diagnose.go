package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/report"
	"github.com/perfscale/perfscale/loadlab/threshold"
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
		client       = fs.String("client", string(load.ClientFastHTTP), "HTTP client: fasthttp or nethttp")
		watch        watchFlags
		outputs      = outputFlags(fs)
	)
	fs.Var(&watch, "watch", "watch a server process: NAME=PID or NAME=METRICS_URL (repeatable)")
	var checks threshold.List
	fs.Var(&checks, "threshold", "fail (exit 1) unless this holds: latency and errors of the single-user baseline\n(p99<50ms, errors<1%), rps of the capacity found (rps>500) (repeatable)")
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

	if err := outputs.Check(); err != nil {
		return fmt.Errorf("diagnose: %v", err)
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
	human := outputs.Human(stdout, stderr)
	fmt.Fprintf(human, "loadlab diagnose: %s\n", target)
	for _, n := range notes {
		fmt.Fprintf(human, "  %s\n", n)
	}
	levels := diagnose.Levels(*maxConc)
	total := time.Duration(len(levels))**stepDuration + *baselineDur
	fmt.Fprintf(human, "  baseline (1 user, up to %d requests or %v), then %d steps of %v: at most about %v\n",
		*baselineReqs, *baselineDur, len(levels), *stepDuration, total.Round(time.Second))

	cfg := diagnose.Config{
		Target: target, SLO: *slo, MaxConcurrency: *maxConc, StepDuration: *stepDuration,
		BaselineRequests: *baselineReqs, BaselineDuration: *baselineDur,
		Progress: func(phase string, s diagnose.Step) {
			fmt.Fprintln(stderr, report.DiagnoseProgress(phase, s))
		},
	}
	runner := measure.LoadRunner{Target: &load.Request{Method: "GET", URL: target}, Timeout: *timeout, Client: load.Client(*client)}
	markStarted(ctx)
	rep, err := diagnose.Run(ctx, cfg, runner, watcher)
	if err != nil {
		return fmt.Errorf("diagnose: %v", err)
	}
	rep.Watched = watcher.Describe()
	if err := (report.TextReporter{}).Diagnosis(human, rep); err != nil {
		return fmt.Errorf("diagnose: %v", err)
	}
	if err := outputs.Write(stdout, func(r report.Reporter, w io.Writer) error { return r.Diagnosis(w, rep) }); err != nil {
		return fmt.Errorf("diagnose: %v", err)
	}
	outcomes := diagnoseThresholds(checks, rep)
	report.Thresholds(human, outcomes)
	return thresholdFailure(outcomes, nil)
}
