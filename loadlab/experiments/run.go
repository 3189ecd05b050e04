package experiments

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/scaleout"
	"github.com/perfscale/perfscale/loadlab/scenario"
)

// Runner runs experiments on this machine.
type Runner struct {
	// Shop replaces {shop} in the commands: the shop binary.
	Shop string
	// TempDir is where each system's {dir} is made ("": the default);
	// Dir is the directory the commands run in ("": this process's).
	TempDir, Dir string
	ReadyTimeout time.Duration // for a system to answer (default 90 s)
	Cores        float64       // the machine's
	// Log hears progress, a line at a time (may be nil).
	Log    io.Writer
	Client load.Client
}

// Report is a run of experiments.
type Report struct {
	Started, Finished time.Time
	// LoadBefore and LoadAfter are the machine's 1-minute load average
	// at the start and end (NaN when unknown).
	LoadBefore, LoadAfter float64
	Experiments           []Result
}

// Result is one experiment's outcome.
type Result struct {
	Name     string `json:"name"`
	Claim    string `json:"claim"`
	Expected string `json:"expected"`
	Measure  string `json:"measure"`
	// Verdict is the lab's ("waits" when not run, "" when it could not
	// run: Error says why); Holds whether it is the one expected (nil
	// when not measured).
	Verdict string `json:"verdict"`
	Holds   *bool  `json:"holds"`
	// Reason is the verdict in words, with the figures it rests on.
	Reason string `json:"reason"`
	// NotHere is the experiment's word on why the claim cannot hold on
	// this system, given when the verdict is not the claim's.
	NotHere string `json:"not_here,omitempty"`
	Waits   string `json:"waits,omitempty"`
	Error   string `json:"error,omitempty"`
	// Without and With are what each system measured (Without is nil for
	// a vertical experiment: its one system is With).
	Without  *Side        `json:"without"`
	With     *Side        `json:"with"`
	Tradeoff *TradeoffRow `json:"tradeoff,omitempty"`
	Seconds  float64      `json:"seconds"`
}

// Side is what one system measured.
type Side struct {
	// Setting is its label, or its command.
	Setting string `json:"setting"`
	// Summary is the measurement in one line, for the table.
	Summary string `json:"summary"`
	// Metrics are the figures by name: "ENDPOINT.p50_ms",
	// "ENDPOINT.p99_ms", "ENDPOINT.errors", "cpu_us_per_request",
	// "bytes PATH", "capacity_rps", "efficiency@N"...
	Metrics map[string]float64 `json:"metrics"`
	// Kind is a diagnosis's kind of scalability problem, Performance
	// whether one user was already above the SLO.
	Kind        string `json:"kind,omitempty"`
	Performance *bool  `json:"performance,omitempty"`
	// Steps are a scaleout's counts (and a vertical's sizes).
	Steps    []ScaleStep `json:"steps,omitempty"`
	Warnings []string    `json:"warnings,omitempty"`
	// MachineBound says why the machine, not the system, held back one of
	// its counts (the first such; empty when none was): its figures are
	// the machine's, and the experiment gives no verdict.
	MachineBound string `json:"machine_bound,omitempty"`
	// Rounds are a baseline's judged figure (its endpoint's stat, in ms)
	// in each of its alternating rounds, in order.
	Rounds []float64 `json:"rounds_ms,omitempty"`
}

// ScaleStep is one count or size of a scaleout.
type ScaleStep struct {
	Replicas    int     `json:"replicas"`
	CPU         float64 `json:"cpu_per_replica,omitempty"`
	Vertical    bool    `json:"vertical,omitempty"`
	CapacityRPS float64 `json:"capacity_rps"`
	Efficiency  float64 `json:"efficiency"`
	Bottleneck  string  `json:"bottleneck"`
	// MachineBound says why the machine, not the system, held this count
	// back (empty when it did not).
	MachineBound string `json:"machine_bound,omitempty"`
	// ErrorStatus is the HTTP status of the most frequent error of an
	// error-bound count (0 when none, or when it was not an HTTP status).
	ErrorStatus int `json:"error_status,omitempty"`
}

// TradeoffRow is a line of the trade-off table: what the setting
// improved and what it made worse, by how much.
type TradeoffRow struct {
	// Setting is the change the row's figures go through, "from → to":
	// without → with, or with → without for a trade-off of the side
	// without (the queue's: sync-mail → mail by a job).
	Setting  string `json:"setting"`
	Improved string `json:"improved"`
	Worse    string `json:"worse"`
}

// Run runs the experiments one after another. An experiment that cannot
// run (its system does not start) is reported with its error and the
// others still run; Run fails only when ctx ends.
func (r *Runner) Run(ctx context.Context, exps []Experiment) (*Report, error) {
	rep := &Report{Started: time.Now(), LoadBefore: LoadAverage()}
	for _, e := range exps {
		start := time.Now()
		res := r.one(ctx, e)
		res.Seconds = time.Since(start).Seconds()
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		r.logf("%s: %s (%s) in %.0f s", e.Name, orDash(res.Verdict), holdsText(res.Holds, res.Verdict), res.Seconds)
		rep.Experiments = append(rep.Experiments, res)
	}
	rep.Finished, rep.LoadAfter = time.Now(), LoadAverage()
	return rep, nil
}

func (r *Runner) logf(format string, a ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, format+"\n", a...)
	}
}

func (r *Runner) one(ctx context.Context, e Experiment) Result {
	res := Result{Name: e.Name, Claim: e.Claim, Expected: e.Expected, Measure: e.Measure}
	if e.Waits != "" {
		res.Verdict, res.Waits = VerdictWaits, e.Waits
		res.Reason = "waits for " + e.Waits + ": not built yet, so not measured"
		return res
	}
	var err error
	switch e.Measure {
	case MeasureVertical:
		res.With, err = r.measureScaled(ctx, e, e.With)
	case MeasureBaseline:
		res.Without, res.With, err = r.measureBaselines(ctx, e)
	default:
		if res.Without, err = r.measureSide(ctx, e, "without", e.Without); err == nil {
			res.With, err = r.measureSide(ctx, e, "with", e.With)
		}
	}
	if err != nil {
		res.Error = err.Error()
		res.Reason = "not measured: " + err.Error()
		return res
	}
	judge(&res, e)
	return res
}

// measureSide starts one system, measures it and stops it.
func (r *Runner) measureSide(ctx context.Context, e Experiment, which string, s *Setting) (*Side, error) {
	switch e.Measure {
	case MeasureScaleout:
		return r.measureScaled(ctx, e, s)
	case MeasureReplicas:
		return r.measureReplicas(ctx, e, s)
	}
	x, err := r.prepare(e.Name)
	if err != nil {
		return nil, err
	}
	r.logf("%s: starting the system %s (%s)", e.Name, which, label(s))
	sys, err := r.start(ctx, s, x)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", which, err)
	}
	side, merr := r.measureOn(ctx, e, sys.url)
	if serr := r.stop(sys); serr != nil && merr == nil {
		merr = fmt.Errorf("stop: %w", serr)
	}
	if merr != nil {
		return nil, fmt.Errorf("%s: %w", which, merr)
	}
	side.Setting = label(s)
	return side, nil
}

func label(s *Setting) string {
	if s.Label != "" {
		return s.Label
	}
	if s.Serve != "" {
		return s.Serve
	}
	return s.Up
}

// workload is what the experiment sends to a system at url.
func (e Experiment) workload(url string) (measure.LoadRunner, error) {
	if e.Scenario != "" {
		s, err := scenario.Load(e.Scenario, url)
		if err != nil {
			return measure.LoadRunner{}, err
		}
		return measure.LoadRunner{Scenario: s, Timeout: 10 * time.Second}, nil
	}
	target := strings.TrimSuffix(url, "/") + e.Path
	if err := load.CheckURL(target); err != nil {
		return measure.LoadRunner{}, err
	}
	return measure.LoadRunner{Target: &load.Request{Method: http.MethodGet, URL: target}, Timeout: 10 * time.Second}, nil
}

// measureOn diagnoses the system at url.
func (r *Runner) measureOn(ctx context.Context, e Experiment, url string) (*Side, error) {
	runner, err := e.workload(url)
	if err != nil {
		return nil, err
	}
	runner.Client = r.Client
	watcher, _ := measure.Discover(url, false)
	// A fresh system's first requests build caches and connections:
	// a short warm-up, not counted.
	if _, err := runner.Run(ctx, measure.Spec{Concurrency: 1, Requests: 30, Duration: 10 * time.Second}); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	side := &Side{Metrics: map[string]float64{}}
	if err := r.sizes(ctx, e, url, side); err != nil {
		return nil, err
	}
	cfg := diagnose.Config{Target: url, SLO: time.Duration(e.SLO), MaxConcurrency: e.MaxConcurrency,
		StepDuration: time.Duration(e.StepDuration), BaselineRequests: min(e.Requests, 100), BaselineDuration: 10 * time.Second, Cores: r.Cores}
	rep, err := diagnose.Run(ctx, cfg, runner, watcher)
	if err != nil {
		return nil, err
	}
	diagnosed(side, rep)
	return side, nil
}

// baselined records one user's latency per endpoint and the server's CPU
// per request.
func baselined(side *Side, e Experiment, step measure.Step) {
	var parts []string
	for _, ep := range step.Load.Endpoints {
		if ep.Requests == 0 {
			continue
		}
		side.Metrics[ep.Name+".p50_ms"] = ms(ep.SuccessLatency.P50)
		side.Metrics[ep.Name+".p99_ms"] = ms(ep.SuccessLatency.P99)
		side.Metrics[ep.Name+".errors"] = float64(ep.Errors.Total)
		side.Metrics[ep.Name+".requests"] = float64(ep.Requests)
		if ep.Name == e.judged(step) {
			parts = append([]string{fmt.Sprintf("%s %s %s", ep.Name, e.Stat, fmtMS(side.Metrics[ep.Name+"."+e.Stat+"_ms"]))}, parts...)
		}
	}
	if !math.IsNaN(step.ServerCPUCores) && step.AnsweredRPS > 0 {
		side.Metrics["cpu_us_per_request"] = step.ServerCPUCores / step.AnsweredRPS * 1e6
		parts = append(parts, fmt.Sprintf("server CPU %.0f µs/request", side.Metrics["cpu_us_per_request"]))
	}
	if step.Errors > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d requests failed", step.Errors, step.Requests))
	}
	side.Summary = strings.Join(append(parts, sizeParts(side)...), "; ")
}

// judged is the endpoint a baseline judges: the one named, or the only
// one a path sends.
func (e Experiment) judged(step measure.Step) string {
	if e.Path != "" && step.Load != nil && len(step.Load.Endpoints) == 1 {
		return step.Load.Endpoints[0].Name
	}
	return e.Endpoint
}

func diagnosed(side *Side, rep *diagnose.Report) {
	perf := rep.Performance
	side.Kind, side.Performance = rep.Kind, &perf
	if rep.BaselineHeldBack {
		// diagnose withheld its performance verdict: "not slow" would be
		// read as a measurement of the setting, and it is the machine's.
		side.MachineBound = "the machine held the one-user baseline back (diagnose gives no performance verdict)"
	}
	side.Metrics["baseline.p50_ms"] = ms(rep.Baseline.P50)
	side.Metrics["baseline.p99_ms"] = ms(rep.Baseline.P99)
	side.Metrics["capacity_rps"] = rep.CapacityRPS
	if n := len(rep.Efficiency); n > 0 {
		side.Metrics["efficiency_top"] = rep.Efficiency[n-1]
	}
	worst := time.Duration(0)
	errs := 0.0
	for _, s := range rep.Steps {
		worst = max(worst, s.P99)
		if s.Requests > 0 {
			errs = math.Max(errs, float64(s.Errors)/float64(s.Requests))
		}
	}
	side.Metrics["worst_p99_ms"] = ms(worst)
	side.Metrics["worst_error_share"] = errs
	one := "within the SLO alone"
	if perf {
		one = "above the SLO alone"
	}
	side.Summary = fmt.Sprintf("%s; 1 user p99 %s (%s), worst p99 %s; peak %.0f req/s at %d users, efficiency %.0f%% at the top",
		rep.Kind, fmtMS(ms(rep.Baseline.P99)), one, fmtMS(ms(worst)), rep.CapacityRPS, rep.CapacityAt, 100*side.Metrics["efficiency_top"])
	if errs > 0 {
		side.Summary += fmt.Sprintf(", errors up to %.0f%%", 100*errs)
	}
	side.Warnings = rep.Warnings
	if rep.Generator.Saturated {
		// diagnose's own flag: the ramp describes loadlab and the machine.
		side.Warnings = append([]string{"not to be trusted: " + rep.Generator.Text}, side.Warnings...)
	}
}

// sizes measures each of the experiment's paths' answer size.
func (r *Runner) sizes(ctx context.Context, e Experiment, url string, side *Side) error {
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 10 * time.Second}
	for _, p := range e.Sizes {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+p, nil)
		if err != nil {
			return fmt.Errorf("sizes: %v", err)
		}
		req.Header.Set("Accept-Encoding", "br, gzip")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("sizes: %v", err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("sizes: %s: %v", p, err)
		}
		side.Metrics["bytes "+p] = float64(n)
	}
	return nil
}

func sizeParts(side *Side) []string {
	var out []string
	for k, v := range side.Metrics {
		if p, ok := strings.CutPrefix(k, "bytes "); ok {
			out = append(out, fmt.Sprintf("%s %.0f bytes", p, v))
		}
	}
	return out
}

// measureScaled runs a capacity search over replica counts (and sizes)
// on one setting's up and down commands.
func (r *Runner) measureScaled(ctx context.Context, e Experiment, s *Setting) (*Side, error) {
	x, err := r.prepare(e.Name)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(x.dir)
	r.logf("%s: scaleout on %s", e.Name, label(s))
	res, err := scaleout.Run(ctx, r.scaleoutConfig(e, s, x))
	if err != nil {
		return nil, fmt.Errorf("scaleout: %w", err)
	}
	return scaledSide(e, label(s), res), nil
}

// scaledSide is a capacity search's result as a side of the experiment.
// A vertical experiment's count that the machine held back at its
// capacity is machine-bound too: its figure is the machine's spare CPU,
// not the replicas' size, which is what out and up are compared on (on
// the busy 2-core machine one replica of 0.5 core measured 911 req/s
// while 1 of 0.25 measured 1,588: the watched processes used 0.47 cores
// and waited for a CPU 2.03 cores' worth).
func scaledSide(e Experiment, setting string, res *scaleout.Result) *Side {
	side := &Side{Setting: setting, Metrics: map[string]float64{}, Warnings: res.Warnings}
	var parts []string
	add := func(st scaleout.Step, vertical bool) {
		ss := ScaleStep{Replicas: st.Replicas, Vertical: vertical, CapacityRPS: st.CapacityRPS, Efficiency: st.Efficiency, Bottleneck: st.Bottleneck}
		if !math.IsNaN(st.CPU) {
			ss.CPU = st.CPU
		}
		key := fmt.Sprintf("%d", st.Replicas)
		if ss.CPU > 0 {
			key = fmt.Sprintf("%dx%g", st.Replicas, ss.CPU)
		}
		switch {
		case st.MachineLimited != "":
			ss.MachineBound = key + ": " + st.MachineLimited
		case e.Measure == MeasureVertical && st.MachineHeld():
			ss.MachineBound = key + ": at its capacity, " + st.Bottleneck
		}
		if ss.MachineBound != "" && side.MachineBound == "" {
			side.MachineBound = ss.MachineBound
		}
		side.Steps = append(side.Steps, ss)
		side.Metrics["capacity_rps@"+key] = st.CapacityRPS
		if !vertical {
			side.Metrics["efficiency@"+key] = st.Efficiency
		}
		part := fmt.Sprintf("%s: %.0f req/s", key, st.CapacityRPS)
		if !vertical && st.Replicas > 1 {
			part += fmt.Sprintf(" (efficiency %.0f%%)", 100*st.Efficiency)
		}
		if isErrorBound(st.Bottleneck) {
			part += ", errors bound it"
		}
		parts = append(parts, part)
		side.Warnings = append(side.Warnings, st.Warnings...)
	}
	for _, st := range res.Steps {
		add(st, false)
	}
	for _, st := range res.Vertical {
		add(st, true)
	}
	if len(res.Retrograde) > 0 {
		// A fall that stayed when measured again: the system's, not noise.
		parts = append(parts, "capacity fell as replicas were added, measured twice (retrograde)")
	}
	if len(res.OffCurve) > 0 {
		// Repeatable counts the USL does not describe: the system's shape.
		parts = append(parts, "no USL curve passes through the counts, measured twice (the system's shape)")
	}
	side.Summary = strings.Join(parts, "; ")
	return side
}

// scaleoutConfig is the capacity search of one setting of a scaleout or
// vertical experiment, its commands expanded by x.
func (r *Runner) scaleoutConfig(e Experiment, s *Setting, x expander) scaleout.Config {
	return scaleout.Config{
		ScaleCmd: r.inDir(x.expand(s.Up)), DownCmd: r.inDir(x.expand(s.Down)), Replicas: e.Replicas, CPUs: e.CPUs,
		SLO: time.Duration(e.SLO), ProbeDuration: time.Duration(e.ProbeDuration), Cores: r.Cores, Client: r.Client,
		Users: e.Users,
		Workload: func(u string) (scaleout.Workload, error) {
			lr, err := e.workload(u)
			if err != nil {
				return scaleout.Workload{}, err
			}
			return scaleout.Workload{Target: lr.Target, Scenario: lr.Scenario, ReadyURL: u}, nil
		},
		Watch: func(_ context.Context, u string) (scaleout.Watcher, error) {
			set, _ := measure.Discover(u, true)
			return set, nil
		},
		Progress: func(line string) { r.logf("%s: %s", e.Name, line) },
	}
}

// inDir runs a command scaleout runs in the runner's Dir.
func (r *Runner) inDir(command string) string {
	if r.Dir == "" {
		return command
	}
	return "cd '" + strings.ReplaceAll(r.Dir, "'", `'\''`) + "' && " + command
}

func isErrorBound(bottleneck string) bool { return strings.HasPrefix(bottleneck, "errors") }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMS(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func orDash(s string) string {
	if s == "" {
		return "not measured"
	}
	return s
}

func holdsText(h *bool, verdict string) string {
	switch {
	case verdict == VerdictUntrusted:
		return "no verdict: the measurement flags its own figures"
	case verdict == VerdictMachineBound:
		return "no verdict: machine-bound"
	case h == nil:
		return "not measured"
	case *h:
		return "claim holds"
	}
	return "claim does not hold here"
}

// LoadAverage is the machine's 1-minute load average (NaN when unknown).
func LoadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	var v float64
	if _, err := fmt.Sscan(string(b), &v); err != nil {
		return math.NaN()
	}
	return v
}
