package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/promwatch"
	"github.com/perfscale/perfscale/loadlab/report"
	"github.com/perfscale/perfscale/loadlab/scenario"
	"github.com/perfscale/perfscale/loadlab/threshold"
)

const diagnoseUsage = `Usage: loadlab diagnose [flags] URL
       loadlab diagnose [flags] --scenario FILE|shop|shop-writes [BASE_URL]

Tells a performance problem (slow even for one user) from a scalability
problem (slows down as users are added: contention, coherency, capacity,
errors, or tail latency while throughput still grows).
It measures one user's latency, then ramps closed-loop users 1, 2, 4, ... up
to --max-concurrency, fits the Universal Scalability Law, watches the server
side's processes, and prints the verdicts with their evidence, naming the
process that is the bottleneck.

Each user sends the URL with --method, -H and --body (@FILE reads the body
from a file), or walks a scenario (--scenario, as in loadlab run; BASE_URL
overrides its base), so a journey such as the shop's checkout can be
diagnosed; its evidence then gives each step's latency and errors alone
and at the top of the ramp. Throughput and latency are of the successful
answers; errors are counted beside them, and errors that rise with users
are a scalability problem of their own.

--prometheus URL takes the saturation evidence from a Prometheus server
that scrapes the target's processes (scripts/cluster.sh up --prometheus
prints its URL in status) instead of watching processes here: after each
step, the CPU of every scraped process by job and component, the
requests in flight, the jobs waiting and the calls waiting for a
database connection over the step's window (a step should span two
scrapes or more: 10 s with the cluster's 5 s interval).

Watched processes: --watch NAME=PID or NAME=METRICS_URL (repeatable; the
same NAME twice is one group of replicas), --pid, --metrics; or, for a local
URL, every process holding its listening socket with their children, the
local services they connect to (a proxy's replicas, their database), and
PostgreSQL, nginx, Redis and NATS when they run here. For each: CPU, time
its threads waited for a CPU, and the cgroup CPU quota and throttling.

--agents A,B,C sends each step's load from 'loadlab agent' processes
(see loadlab agent --help) instead of this one: the step's users are
split across them (a step with fewer users than agents runs on the first
ones, one user each: the baseline is one agent's), they start at one
instant, their HDR histograms merge exactly, an agent's saturation check
marks the step, and an agent that dies fails the diagnosis (exit 3)
naming it. Only agents on this machine count as the generator's CPU.

Examples:
  loadlab diagnose http://127.0.0.1:8080/v1/menu
  loadlab diagnose --slo 50ms --max-concurrency 32 --step-duration 3s \
      --json diag.json --html diag.html http://127.0.0.1:8080/v1/items/7
  TOKEN=$(curl -s -X POST http://127.0.0.1:8080/v1/sessions | jq -r .token)
  loadlab diagnose --method PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      --body '{"quantity": 1}' http://127.0.0.1:8080/v1/cart/items/3
  loadlab diagnose --scenario shop --max-concurrency 16 http://127.0.0.1:8080
  loadlab diagnose --metrics http://127.0.0.1:9090/metrics http://10.0.0.5:8080/
  loadlab diagnose --prometheus http://127.0.0.1:9090 --step-duration 10s --scenario shop http://127.0.0.1:8080
  loadlab diagnose --watch api=4242 --watch api=4243 --watch db=http://10.0.0.6:9187/metrics http://127.0.0.1:8080/
  loadlab diagnose --agents 127.0.0.1:7071,127.0.0.1:7072 --max-concurrency 16 http://127.0.0.1:8080/v1/menu

Flags:
`

// diagnoseFlagOf names the flag that sets each diagnose.Config field, for
// its validation errors.
var diagnoseFlagOf = map[string]string{
	"SLO": "--slo", "MaxConcurrency": "--max-concurrency", "StepDuration": "--step-duration",
	"BaselineRequests": "--baseline-requests", "BaselineDuration": "--baseline-duration",
}

// diagnoseFlags are diagnose's command-line flags.
type diagnoseFlags struct {
	fs                             *flag.FlagSet
	slo, stepDuration, baselineDur *time.Duration
	timeout                        *time.Duration
	maxConc, pid                   *int
	baselineReqs                   *int64
	metrics, client, method, body  *string
	prometheus                     *string
	scen                           *string
	agents                         agentFlags
	headers                        headerFlags
	watch                          watchFlags
	outputs                        *report.Outputs
	checks                         threshold.List
}

func newDiagnoseFlags(stdout io.Writer) *diagnoseFlags {
	fs := newFlagSet("diagnose", diagnoseUsage, stdout)
	f := &diagnoseFlags{
		fs:           fs,
		slo:          fs.Duration("slo", diagnose.DefaultSLO, "p99 latency objective"),
		maxConc:      fs.Int("max-concurrency", diagnose.DefaultMaxConcurrency, "highest number of users in the ramp"),
		stepDuration: fs.Duration("step-duration", diagnose.DefaultStepDuration, "length of each ramp step"),
		baselineReqs: fs.Int64("baseline-requests", diagnose.DefaultBaselineRequests, "single-user baseline: at most this many requests"),
		baselineDur:  fs.Duration("baseline-duration", diagnose.DefaultBaselineDuration, "single-user baseline: at most this long"),
		timeout:      fs.Duration("timeout", 10*time.Second, "per-request timeout"),
		pid:          fs.Int("pid", 0, "the target's process id, to read its CPU from /proc"),
		metrics:      fs.String("metrics", "", "the target's Prometheus endpoint, to read process_cpu_seconds_total"),
		client:       fs.String("client", string(load.ClientFastHTTP), "HTTP client: fasthttp or nethttp"),
		prometheus:   fs.String("prometheus", "", "a Prometheus server scraping the target's processes: the saturation evidence comes from it"),
		method:       fs.String("method", "GET", "HTTP method for a URL target"),
		body:         fs.String("body", "", "request body for a URL target; @FILE reads it from a file"),
		scen:         fs.String("scenario", "", "scenario file (YAML or JSON) or a built-in name: shop, shop-writes; the URL, if given, is its base"),
		outputs:      outputFlags(fs),
		agents:       newAgentFlags(fs, "each step's load"),
	}
	fs.Var(&f.headers, "H", "request header 'Name: value' for a URL target (repeatable)")
	fs.Var(&f.watch, "watch", "watch a server process: NAME=PID or NAME=METRICS_URL (repeatable)")
	fs.Var(&f.checks, "threshold", "fail (exit 1) unless this holds: latency and errors of the single-user baseline\n(p99<50ms, errors<1%), rps of the capacity found (rps>500) (repeatable)")
	return f
}

func runDiagnose(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newDiagnoseFlags(stdout)
	pos, err := parseArgs(f.fs, args)
	if err != nil {
		return err
	}
	cfg, runner, target, err := f.config(pos)
	if err != nil {
		return fmt.Errorf("diagnose: %v", err)
	}
	watcher, notes, err := f.watcher(ctx, target.url)
	if err != nil {
		return fmt.Errorf("diagnose: %v", err)
	}
	human := f.outputs.Human(stdout, stderr)
	fmt.Fprintf(human, "loadlab diagnose: %s\n", target.name)
	for _, n := range notes {
		fmt.Fprintf(human, "  %s\n", n)
	}
	if f.agents.on() {
		fmt.Fprintf(human, "  load from %s, each step's users split across them: %s\n", agentCount(len(f.agents.agents())), strings.Join(f.agents.agents(), ", "))
	}
	levels := diagnose.Levels(cfg.MaxConcurrency)
	total := time.Duration(len(levels))*cfg.StepDuration + cfg.BaselineDuration
	fmt.Fprintf(human, "  baseline (1 user, up to %d requests or %v), then %d steps of %v: at most about %v\n",
		cfg.BaselineRequests, cfg.BaselineDuration, len(levels), cfg.StepDuration, total.Round(time.Second))

	cfg.Target = target.name
	cfg.Progress = func(phase string, s diagnose.Step) {
		fmt.Fprintln(stderr, report.DiagnoseProgress(phase, s))
	}
	markStarted(ctx)
	rep, err := diagnose.Run(ctx, cfg, runner, watcher)
	if err != nil {
		return fmt.Errorf("diagnose: %v", err)
	}
	rep.Watched = watcher.Describe()
	if err := (report.TextReporter{}).Diagnosis(human, rep); err != nil {
		return fmt.Errorf("diagnose: %v", err)
	}
	if err := f.outputs.Write(stdout, func(r report.Reporter, w io.Writer) error { return r.Diagnosis(w, rep) }); err != nil {
		return fmt.Errorf("diagnose: %v", err)
	}
	outcomes := diagnoseThresholds(f.checks, rep)
	report.Thresholds(human, outcomes)
	return thresholdFailure(outcomes, nil)
}

// check refuses flags that contradict each other or the arguments.
func (f *diagnoseFlags) check(pos []string) error {
	switch {
	case len(pos) > 1:
		return fmt.Errorf("one URL only, got %d arguments", len(pos))
	case len(pos) == 0 && *f.scen == "":
		return errors.New("give one URL to diagnose, or --scenario (see loadlab diagnose --help)")
	case *f.scen != "" && (*f.method != "GET" || *f.body != "" || len(f.headers) > 0):
		return errors.New("--method, -H and --body apply to a URL; a scenario's requests carry their own")
	case *f.timeout <= 0:
		return fmt.Errorf("--timeout must be positive, got %v", *f.timeout)
	case *f.pid != 0 && *f.metrics != "":
		return errors.New("give --pid or --metrics, not both")
	case (*f.pid != 0 || *f.metrics != "") && len(f.watch) > 0:
		return errors.New("give --watch, or --pid/--metrics, not both")
	case *f.pid <= 0 && given(f.fs, "pid"):
		// 0 is the flag's default, "no pid": given on the command line it
		// was silently taken as no pid, and the run watched nothing.
		return fmt.Errorf("--pid must be a process id (a positive number), got %d", *f.pid)
	case *f.prometheus != "" && (*f.pid != 0 || *f.metrics != "" || len(f.watch) > 0):
		return errors.New("give --prometheus, or --watch/--pid/--metrics, not both")
	}
	if *f.prometheus != "" {
		if err := load.CheckURL(*f.prometheus); err != nil {
			return fmt.Errorf("--prometheus: %v", err)
		}
	}
	if err := f.agents.check(); err != nil {
		return err
	}
	if *f.metrics != "" {
		if err := load.CheckURL(*f.metrics); err != nil {
			return fmt.Errorf("--metrics: %v", err)
		}
	}
	return f.outputs.Check()
}

// config checks every flag and builds the diagnosis, the runner that
// sends its load (this process's generator, or the agents) and what it
// is aimed at, before any load.
func (f *diagnoseFlags) config(pos []string) (diagnose.Config, measure.Runner, diagnosed, error) {
	var runner measure.LoadRunner
	var target diagnosed
	if err := f.check(pos); err != nil {
		return diagnose.Config{}, runner, target, err
	}
	cfg := diagnose.Config{
		SLO: *f.slo, MaxConcurrency: *f.maxConc, StepDuration: *f.stepDuration,
		BaselineRequests: *f.baselineReqs, BaselineDuration: *f.baselineDur,
		Cores: float64(runtime.NumCPU()),
	}
	if err := cfg.Validate(); err != nil {
		var bad *diagnose.ConfigError
		if errors.As(err, &bad) {
			return cfg, runner, target, fmt.Errorf("%s %s (see loadlab diagnose --help)", diagnoseFlagOf[bad.Field], bad.Reason)
		}
		return cfg, runner, target, err
	}
	runner, target, err := diagnoseRunner(*f.scen, pos, *f.method, f.headers, *f.body)
	if err != nil {
		return cfg, runner, target, err
	}
	runner.Timeout, runner.Client = *f.timeout, load.Client(*f.client)
	// The generator's own checks (the method, the client), before any load.
	check := load.Config{Concurrency: 1, Duration: *f.stepDuration, Target: runner.Target, Scenario: runner.Scenario, Client: runner.Client}
	if err := check.Validate(); err != nil {
		return cfg, runner, target, err
	}
	// Per-endpoint thresholds are judged on the baseline's endpoints,
	// which are the request's or the scenario's: a name it lacks would
	// fail only after the whole ramp.
	if err := checkEndpointNames(f.checks, load.EndpointsOf(check)); err != nil {
		return cfg, runner, target, err
	}
	if !f.agents.on() {
		return cfg, runner, target, nil
	}
	base := ""
	if len(pos) == 1 {
		base = pos[0]
	}
	agents, err := f.agents.source(load.Config{Target: runner.Target, Scenario: runner.Scenario, Timeout: runner.Timeout, Client: runner.Client}, *f.scen, base)
	return cfg, agents, target, err
}

// diagnoseWatcher is what diagnose watches the server side with.
type diagnoseWatcher interface {
	measure.Watcher
	Describe() []string
}

// watcher is the Prometheus server of --prometheus, or the processes
// watchSet finds.
func (f *diagnoseFlags) watcher(ctx context.Context, target string) (diagnoseWatcher, []string, error) {
	if *f.prometheus != "" {
		w, err := promwatch.New(ctx, *f.prometheus)
		if err != nil {
			return nil, nil, err
		}
		return w, []string{"watching " + w.Describe()[0]}, nil
	}
	return watchSet(ctx, target, f.watched())
}

// watched is what to watch on the server side: --watch, or the one
// process --pid or --metrics names.
func (f *diagnoseFlags) watched() watchFlags {
	switch {
	case *f.pid != 0:
		return watchFlags{fmt.Sprintf("server=%d", *f.pid)}
	case *f.metrics != "":
		return watchFlags{"server=" + *f.metrics}
	}
	return f.watch
}

// diagnosed names what a diagnosis sends load to: name for the report
// ("POST http://...", "scenario shop at http://..."), url for finding
// the server's processes.
type diagnosed struct{ name, url string }

// diagnoseRunner builds the runner for a URL target or a scenario.
func diagnoseRunner(scen string, pos []string, method string, headers []string, body string) (measure.LoadRunner, diagnosed, error) {
	base := ""
	if len(pos) == 1 {
		base = pos[0]
	}
	if scen != "" {
		if base != "" {
			if err := load.CheckURL(base); err != nil {
				return measure.LoadRunner{}, diagnosed{}, err
			}
		}
		s, err := scenario.Load(scen, base)
		if err != nil {
			return measure.LoadRunner{}, diagnosed{}, err
		}
		return measure.LoadRunner{Scenario: s}, diagnosed{name: "scenario " + scen + " at " + s.Base(), url: s.Base()}, nil
	}
	b, err := bodyArg(body)
	if err != nil {
		return measure.LoadRunner{}, diagnosed{}, err
	}
	req, err := newRequest(method, base, headers, b)
	if err != nil {
		return measure.LoadRunner{}, diagnosed{}, err
	}
	name := req.URL
	if req.Method != "GET" {
		name = req.Method + " " + req.URL
	}
	return measure.LoadRunner{Target: req}, diagnosed{name: name, url: req.URL}, nil
}
