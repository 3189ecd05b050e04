package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/term"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/report"
	"github.com/perfscale/perfscale/loadlab/scenario"
	"github.com/perfscale/perfscale/loadlab/threshold"
)

const runUsage = `Usage: loadlab run [flags] URL
       loadlab run [flags] --scenario FILE|shop|shop-writes [--base URL]

Sends HTTP load and reports latency percentiles (HDR histogram), throughput
and errors. Open loop (--rate) sends at a fixed rate whatever the target
does and measures each latency from the request's intended send time, so
a stall cannot hide (no coordinated omission). Closed loop (--concurrency)
runs N users that each wait for their answer.

A scenario file (YAML or JSON) has a base URL, setup requests each user
makes once (capture: {token: $.token} keeps a value from the JSON answer),
and weighted steps, each one request or a sequence (add to cart, then check
out). Paths, headers and bodies are templates: {{.token}} for a captured
value, {{rand 1 200}}, {{uuid}}. See loadlab/scenario/shop.yaml, the
built-in "shop" journey ("shop-writes" is its cart changes and checkouts
alone). In open loop each request slot in flight is a user.

--targets FILE (or - for stdin) sends a list of requests in turn, in
either of vegeta's formats: http (a line METHOD URL, optional 'Name: value'
header lines and an '@FILE' body line, a blank line before the next
target) or json (one object a line: {"method", "url", "header": {NAME:
[VALUES]}, "body": BASE64}). The format is told from the first line, or
given with --targets-format.

Results are kept per endpoint: each scenario step (each request of a
sequence as STEP/1, STEP/2), or the method and path of a URL run, with
errors by status and by cause and one sample message each; the answers of
one status are split by the kind their bodies name (a problem+json type,
else its message with numbers as N), so a service's own refusals and a
dependency's failures are told apart.

--stages 30s:100,1m:400,30s:0 varies the load: each stage ramps linearly
(as k6 does) from the previous target, 0 at first, to its own; targets are
req/s in open loop, or users with --stage-users. Each stage is summarised.

A run fails (exit 1, one line saying what failed) when a --threshold does
not hold or more requests failed than --max-errors allows (1%). Exit 2 is
bad input (nothing sent), 3 a run that could not happen or finish.
--agents A,B,C runs the same load from several 'loadlab agent' processes
(see loadlab agent --help): the rate, users and requests are split across
them, they start at one instant, their HDR histograms merge exactly into
one report, each agent's saturation check is listed, and an agent that
dies fails the run (exit 3) naming it.

Thresholds: p50, p99, p99.9 (any pN), mean, max, with < <= > >= and a
duration; errors with a share (errors<0.1%) or a count (errors<10); rps;
ENDPOINT:... for one endpoint (checkout covers checkout/1 and /2).

The summary says, once, when loadlab itself may have limited the run or
its latency (its CPU, requests never sent or waiting for --max-inflight,
requests sent late by enough to matter against a p99 threshold, or
without one a tenth of the p99), with the figures, and so does --json
("generator_saturated", "saturation_reasons"; "notes" when a busy machine,
not loadlab, delayed the sends).

Examples:
  loadlab run --rate 500 --duration 30s http://127.0.0.1:8080/v1/menu
  loadlab run --concurrency 16 --requests 10000 http://127.0.0.1:8080/v1/items/7
  TOKEN=$(curl -s -X POST http://127.0.0.1:8080/v1/sessions | sed 's/.*"token": *"\([^"]*\)".*/\1/')
  loadlab run --rate 50 -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
      --method PUT --body '{"quantity": 1}' http://127.0.0.1:8080/v1/cart/items/3
  loadlab run --scenario shop --base http://127.0.0.1:8080 --rate 200 --duration 10s --json out.json
  loadlab run --rate 200 --duration 30s --threshold 'p99<50ms' --threshold 'errors<0.1%' \
      http://127.0.0.1:8080/v1/menu
  loadlab run --scenario shop --base http://127.0.0.1:8080 --concurrency 20 --duration 20s \
      --threshold 'checkout:p99<200ms'
  loadlab run --stages 10s:100,20s:400,10s:0 http://127.0.0.1:8080/v1/menu
  printf 'GET http://127.0.0.1:8080/v1/menu\n\nGET http://127.0.0.1:8080/v1/items/7\n' | \
      loadlab run --targets - --rate 100 --duration 10s
  loadlab run --agents 10.0.0.5:7070,10.0.0.6:7070 --rate 20000 --duration 60s http://10.0.0.9:8080/v1/menu

Flags:
`

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

// maxRate is the highest open-loop rate accepted: far above what one
// generator process sends (about 50,000 req/s on a fast core), so a rate
// above it is a typo, not a plan.
const maxRate = load.MaxRate

// runFlags are run's flags, parsed.
type runFlags struct {
	fs                                 *flag.FlagSet
	rate                               *float64
	concurrency, maxInFlight           *int
	think, duration, timeout           *time.Duration
	requests                           *int64
	method, body, bodyFile, scen, base *string
	client, maxErrors, stages, targets *string
	targetsFormat                      *string
	agents                             agentFlags
	stageUsers                         *bool
	users                              *int
	outputs                            *report.Outputs
	headers                            headerFlags
	thresholds                         threshold.List
}

func newRunFlags(stdout io.Writer) *runFlags {
	fs := newFlagSet("run", runUsage, stdout)
	f := &runFlags{
		fs:            fs,
		rate:          fs.Float64("rate", 0, "open loop: requests per second"),
		concurrency:   fs.Int("concurrency", 0, "closed loop: number of users"),
		think:         fs.Duration("think", 0, "closed loop: pause between a user's requests"),
		duration:      fs.Duration("duration", 0, "how long to send (default 10s when --requests is not given)"),
		requests:      fs.Int64("requests", 0, "how many requests to send"),
		timeout:       fs.Duration("timeout", load.DefaultTimeout, "per-request timeout"),
		method:        fs.String("method", "GET", "HTTP method for a URL target"),
		body:          fs.String("body", "", "request body for a URL target; @FILE reads it from a file"),
		bodyFile:      fs.String("body-file", "", "read the request body from this file"),
		scen:          fs.String("scenario", "", "scenario file (YAML or JSON) or a built-in name: shop, shop-writes"),
		base:          fs.String("base", "", "base URL for the scenario (overrides the file's)"),
		client:        fs.String("client", string(load.ClientFastHTTP), "HTTP client: fasthttp or nethttp"),
		maxInFlight:   fs.Int("max-inflight", load.DefaultMaxInFlight, "open loop: most requests in flight at once"),
		users:         fs.Int("users", 0, "open loop with --scenario: spread the requests over this many users (0: a user for each request in flight)"),
		outputs:       outputFlags(fs),
		stages:        fs.String("stages", "", "vary the load: DURATION:TARGET,... such as 30s:100,1m:400,30s:0; each stage ramps linearly\nfrom the previous target (0 at first) to its own; targets are req/s (open loop) unless --stage-users"),
		targets:       fs.String("targets", "", "read the requests from this file, or - for stdin, sent in turn: vegeta's http format, 'METHOD URL' lines,\neach followed by optional 'Name: value' headers and an '@FILE' body, blank lines between; or its json format,\none {\"method\", \"url\", \"header\", \"body\" (base64)} a line"),
		targetsFormat: fs.String("targets-format", "", "the --targets format: http or json (vegeta's two); told from the first line when not given"),
		stageUsers:    fs.Bool("stage-users", false, "with --stages: the targets are closed-loop users, not req/s"),
		agents:        newAgentFlags(fs, "the load"),
		maxErrors:     fs.String("max-errors", "1%", "fail the run (exit 1) when more requests than this failed: a share (1%) or a count (0); 100% never fails"),
	}
	fs.Var(&f.headers, "H", "request header 'Name: value' (repeatable)")
	fs.Var(&f.thresholds, "threshold", "fail the run (exit 1) unless this holds: p99<50ms, p50<=10ms, mean<5ms, errors<0.1%, rps>100,\nper endpoint checkout:p99<200ms (repeatable)")
	return f
}

// set reports whether a flag was given on the command line.
func (f *runFlags) set(name string) bool { return given(f.fs, name) }

// validate checks the flag values that load.Config does not (those the
// command line gives a meaning of its own), each with its reason.
func (f *runFlags) validate() error {
	switch {
	case f.set("duration") && *f.duration <= 0:
		return fmt.Errorf("--duration must be positive, got %v (leave it out and give --requests to bound the run by a count)", *f.duration)
	case f.set("requests") && *f.requests <= 0:
		return fmt.Errorf("--requests must be at least 1, got %d", *f.requests)
	case *f.rate > maxRate:
		return fmt.Errorf("--rate %g is above the %d req/s one generator can send", *f.rate, maxRate)
	case f.set("rate") && !(*f.rate > 0): // NaN too: it compares false
		return fmt.Errorf("--rate must be a positive number of requests per second, got %g", *f.rate)
	case f.set("concurrency") && *f.concurrency <= 0:
		return fmt.Errorf("--concurrency must be at least 1 user, got %d", *f.concurrency)
	case *f.users < 0:
		return fmt.Errorf("--users must not be negative, got %d", *f.users)
	case *f.maxInFlight <= 0:
		return fmt.Errorf("--max-inflight must be at least 1, got %d", *f.maxInFlight)
	case *f.timeout <= 0:
		return fmt.Errorf("--timeout must be positive, got %v", *f.timeout)
	case *f.think < 0:
		return fmt.Errorf("--think must not be negative, got %v", *f.think)
	case *f.stages != "" && (f.set("rate") || f.set("concurrency")):
		return errors.New("--stages sets the load: give no --rate or --concurrency beside it")
	case *f.stages != "" && (f.set("duration") || f.set("requests")):
		return errors.New("--stages sets how long the run lasts: give no --duration or --requests beside it")
	case *f.stageUsers && *f.stages == "":
		return errors.New("--stage-users applies to --stages only")
	case f.agents.on() && *f.targets != "":
		return errors.New("--agents takes a URL or --scenario: a --targets list is not sent to agents")
	case f.set("targets-format") && *f.targets == "":
		return errors.New("--targets-format applies to --targets only")
	case *f.targetsFormat != scenario.TargetsAuto && *f.targetsFormat != scenario.TargetsHTTP && *f.targetsFormat != scenario.TargetsJSON:
		return fmt.Errorf("--targets-format must be http or json, got %q", *f.targetsFormat)
	}
	return f.agents.check()
}

// checks returns the thresholds the run must pass: the user's, and the
// error limit unless a threshold on the whole run's errors replaces it.
func (f *runFlags) checks() (threshold.List, error) {
	checks := append(threshold.List(nil), f.thresholds...)
	if !checks.HasWholeRunErrors() {
		t, err := threshold.Parse("errors<=" + *f.maxErrors)
		if err != nil {
			return nil, fmt.Errorf("--max-errors %q: want a share such as 1%% or a count such as 0", *f.maxErrors)
		}
		checks = append(checks, t)
	}
	return checks, nil
}

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newRunFlags(stdout)
	pos, err := parseArgs(f.fs, args)
	if err != nil {
		return err
	}
	cfg, target, checks, err := f.config(pos)
	if err != nil {
		return badInput(fmt.Errorf("run: %v", err))
	}
	if err := f.outputs.Check(); err != nil {
		return badInput(fmt.Errorf("run: %v", err))
	}
	human := f.outputs.Human(stdout, stderr)

	if isTerminal(stderr) {
		cfg.Progress = func(s load.Snapshot) { fmt.Fprintf(stderr, "\r\033[K%s", report.RunProgress(s)) }
	}
	header := report.RunHeader(cfg, target)
	if f.agents.on() {
		header += ", on " + agentCount(len(f.agents.agents()))
	}
	fmt.Fprintln(human, header)
	markStarted(ctx)
	var res *load.Result
	if f.agents.on() {
		res, err = runOnAgents(ctx, f, cfg)
	} else {
		res, err = load.Run(ctx, cfg)
		if err != nil {
			err = notRun(fmt.Errorf("run: %v", err))
		}
	}
	if cfg.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		return err
	}
	outcomes := checks.Evaluate(measuredRun(res), endpointMeasured(res))
	result := report.RunResult{Target: target, Result: res, Thresholds: outcomes}
	if err := (report.TextReporter{}).Run(human, result); err != nil {
		return notRun(fmt.Errorf("run: %v", err))
	}
	if err := f.outputs.Write(stdout, func(r report.Reporter, w io.Writer) error { return r.Run(w, result) }); err != nil {
		return notRun(fmt.Errorf("run: %v", err))
	}
	return thresholdFailure(outcomes, res.Endpoints)
}

// config turns the flags and arguments into a load configuration, the
// target's description and the thresholds, or says what is wrong.
func (f *runFlags) config(pos []string) (load.Config, string, threshold.List, error) {
	if err := f.validate(); err != nil {
		return load.Config{}, "", nil, err
	}
	checks, err := f.checks()
	if err != nil {
		return load.Config{}, "", nil, err
	}
	cfg := load.Config{
		Rate: *f.rate, Concurrency: *f.concurrency, ThinkTime: *f.think, Duration: *f.duration,
		Requests: *f.requests, Timeout: *f.timeout, Client: load.Client(*f.client), MaxInFlight: *f.maxInFlight,
	}
	if *f.users > 0 {
		cfg.Users = load.NewUsers(*f.users)
	}
	if *f.stages != "" {
		stages, err := load.ParseStages(*f.stages)
		if err != nil {
			return cfg, "", nil, fmt.Errorf("--stages: %v", err)
		}
		cfg.Stages, cfg.StagedUsers = stages, *f.stageUsers
	}
	if cfg.Duration == 0 && cfg.Requests == 0 && len(cfg.Stages) == 0 {
		cfg.Duration = 10 * time.Second
	}
	target, err := f.target(pos, &cfg)
	if err != nil {
		return cfg, "", nil, err
	}
	if *f.scen == "" && *f.base != "" {
		return cfg, "", nil, errors.New("--base applies to --scenario only")
	}
	if err := cfg.Validate(); err != nil {
		if len(cfg.Stages) > 0 {
			err = fmt.Errorf("--stages: %v", err)
		}
		return cfg, "", nil, err
	}
	if err := checkEndpointNames(checks, load.EndpointsOf(cfg)); err != nil {
		return cfg, "", nil, err
	}
	cfg.SLO = sloOf(checks)
	return cfg, target, checks, nil
}

// target sets what cfg sends (the URL, the scenario or the targets) and
// returns its description.
func (f *runFlags) target(pos []string, cfg *load.Config) (string, error) {
	switch {
	case *f.targets != "":
		if *f.scen != "" || len(pos) > 0 {
			return "", errors.New("give one of a URL, --scenario and --targets")
		}
		t, err := f.readTargets()
		if err != nil {
			return "", err
		}
		cfg.Scenario = t
		return fmt.Sprintf("%d targets from %s", t.Len(), map[bool]string{true: "stdin", false: *f.targets}[*f.targets == "-"]), nil
	case *f.scen != "" && len(pos) > 0:
		return "", errors.New("give a URL or --scenario, not both")
	case *f.scen != "":
		s, err := scenario.Load(*f.scen, *f.base)
		if err != nil {
			return "", err
		}
		cfg.Scenario = s
		return "scenario " + *f.scen, nil
	case len(pos) == 0:
		return "", errors.New("no target: give a URL, --scenario or --targets (see loadlab run --help)")
	case len(pos) > 1:
		return "", fmt.Errorf("one URL only, got %d arguments", len(pos))
	default:
		req, err := f.request(pos[0])
		if err != nil {
			return "", err
		}
		cfg.Target = req
		return req.Method + " " + req.URL, nil
	}
}

// stdin is where --targets - reads from (a variable for the tests).
var stdin io.Reader = os.Stdin

// readTargets reads --targets; -H headers apply to each target, --method
// and --body belong to a URL run.
func (f *runFlags) readTargets() (*scenario.Targets, error) {
	if f.set("method") || f.set("body") || f.set("body-file") {
		return nil, errors.New("--method, --body and --body-file apply to a URL; in --targets each target has its own")
	}
	extra := http.Header{}
	for _, h := range f.headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("header %q must look like 'Name: value'", h)
		}
		extra.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if *f.targets == "-" {
		wd, _ := os.Getwd()
		return scenario.ReadTargets(stdin, *f.targetsFormat, wd, extra)
	}
	file, err := os.Open(*f.targets)
	if err != nil {
		return nil, fmt.Errorf("--targets %s: %w", *f.targets, err)
	}
	defer file.Close()
	return scenario.ReadTargets(file, *f.targetsFormat, filepath.Dir(*f.targets), extra)
}

// sloOf is the p99 bound among the whole run's thresholds (0 without
// one): the generator's lateness is judged against it.
func sloOf(checks threshold.List) time.Duration {
	for _, c := range checks {
		if c.Endpoint == "" && c.Metric == threshold.Percentile && c.Percentile == 99 && (c.Op == threshold.Less || c.Op == threshold.LessEqual) {
			return time.Duration(c.Limit)
		}
	}
	return 0
}

// request builds the one request of a URL run from the flags.
func (f *runFlags) request(rawURL string) (*load.Request, error) {
	var body []byte
	switch {
	case *f.body != "" && *f.bodyFile != "":
		return nil, errors.New("give --body or --body-file, not both")
	case *f.bodyFile != "":
		b, err := os.ReadFile(*f.bodyFile)
		if err != nil {
			return nil, fmt.Errorf("--body-file %s: %w", *f.bodyFile, err)
		}
		body = b
	case *f.body != "":
		b, err := bodyArg(*f.body)
		if err != nil {
			return nil, err
		}
		body = b
	}
	return newRequest(*f.method, rawURL, f.headers, body)
}

// measuredRun is what the thresholds check of a whole run.
func measuredRun(r *load.Result) threshold.Measured {
	return measured(r.Requests, r.Errors.Total(), r.Elapsed, r.Histogram)
}

func measured(requests, errs int64, elapsed time.Duration, h *hdrhistogram.Histogram) threshold.Measured {
	m := threshold.Measured{Requests: requests, Errors: errs}
	if elapsed > 0 {
		m.RPS = float64(requests) / elapsed.Seconds()
	}
	if h != nil && h.TotalCount() > 0 {
		m.Quantile = func(p float64) time.Duration { return time.Duration(h.ValueAtQuantile(p)) * time.Microsecond }
		m.Mean = time.Duration(h.Mean() * float64(time.Microsecond))
		m.Max = time.Duration(h.Max()) * time.Microsecond
	}
	return m
}

// thresholdFailure is the one line that names the first failed threshold
// (and how many others failed), or nil when all passed.
func thresholdFailure(outcomes []threshold.Outcome, eps []load.Endpoint) error {
	first, ok := threshold.FirstFailure(outcomes)
	if !ok {
		return nil
	}
	n := 0
	for _, o := range outcomes {
		if !o.Passed {
			n++
		}
	}
	msg := first.String()
	if m := first.Threshold.Metric; m == threshold.ErrorShare || m == threshold.ErrorCount {
		if c := topCause(eps); c != "" {
			msg += "; most: " + c
		}
	}
	if n > 1 {
		more := "threshold"
		if n > 2 {
			more += "s"
		}
		msg += fmt.Sprintf(" (and %d more %s failed)", n-1, more)
	}
	return failed(errors.New(msg))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
