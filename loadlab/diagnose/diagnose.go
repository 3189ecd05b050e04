// Package diagnose answers the question every article on performance and
// scalability asks: is a service slow for one user (a performance problem),
// or only as users are added (a scalability problem), and of which kind? It
// measures a single-user baseline and a concurrency ramp, fits the
// Universal Scalability Law, watches the server's CPU where it can, and
// gives a verdict on each axis with the evidence behind it.
package diagnose

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/procwatch"
	"github.com/perfscale/perfscale/loadlab/usl"
)

// Config describes a diagnosis.
type Config struct {
	Target           string        // for the report
	SLO              time.Duration // p99 a user should see (default 200ms)
	MaxConcurrency   int           // the ramp goes 1, 2, 4, ... up to this (default 64)
	StepDuration     time.Duration // per ramp step (default 5s)
	BaselineRequests int64         // baseline: at most this many requests (default 200)
	BaselineDuration time.Duration // baseline: at most this long (default 10s)
	// Cores is how many CPU cores the machine has (default runtime.NumCPU);
	// with the target on the same machine, its share is Cores minus what
	// the generator uses.
	Cores float64
	// Progress, if set, hears about each phase as it ends.
	Progress func(phase string, s Step)
}

func (c *Config) defaults() error {
	if c.SLO == 0 {
		c.SLO = 200 * time.Millisecond
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = 64
	}
	if c.StepDuration == 0 {
		c.StepDuration = 5 * time.Second
	}
	if c.BaselineRequests == 0 {
		c.BaselineRequests = 200
	}
	if c.BaselineDuration == 0 {
		c.BaselineDuration = 10 * time.Second
	}
	if c.Cores == 0 {
		c.Cores = float64(runtime.NumCPU())
	}
	switch {
	case c.SLO < 0:
		return errors.New("the SLO must be positive")
	case c.MaxConcurrency < 2:
		return errors.New("the maximum concurrency must be at least 2, or there is no ramp")
	case c.StepDuration < 0 || c.BaselineDuration < 0 || c.BaselineRequests < 0:
		return errors.New("durations and request counts must be positive")
	}
	return nil
}

// Spec is one load phase for a Runner.
type Spec struct {
	Concurrency int
	Duration    time.Duration
	Requests    int64 // 0: bounded by Duration only
}

// Step is what one phase measured. Throughput and latency are of the
// successful answers (goodput): a service that refuses fast would
// otherwise look fast and ever busier as it turns more users away. The
// failed requests are counted beside them.
type Step struct {
	Concurrency int `json:"concurrency"`
	// ThroughputRPS is the goodput: successful answers per second.
	ThroughputRPS float64 `json:"throughput_rps"`
	// AnsweredRPS is every completed request per second, failed or not.
	AnsweredRPS float64       `json:"answered_rps"`
	P50         time.Duration `json:"-"`        // of the successful answers
	P99         time.Duration `json:"-"`        // of the successful answers
	Requests    int64         `json:"requests"` // completed, failed or not
	Errors      int64         `json:"errors"`
	// ErrorKinds breaks Errors down (4xx, 5xx, timeouts, connections).
	ErrorKinds         load.ErrorCounts `json:"-"`
	GeneratorSaturated bool             `json:"generator_saturated"`
	GeneratorCPUCores  float64          `json:"generator_cpu_cores"`
	// GeneratorCPUWaitCores is how many of the generator's threads were,
	// on average, runnable but waiting for a CPU; NaN when unknown.
	GeneratorCPUWaitCores float64 `json:"-"`
	// ServerCPUCores is the CPU use of the watched server processes
	// during the step, summed, in cores; NaN when none could be seen.
	ServerCPUCores float64 `json:"-"`
	// ServerCPUWaitCores is how many of their threads were, on average,
	// runnable but waiting for a CPU during the step: CPU the server
	// wanted and did not get. NaN when unknown.
	ServerCPUWaitCores float64 `json:"-"`
	// Processes is each watched group's share (the replicas, the
	// database, the proxy), in the order they were watched.
	Processes []ProcessStep `json:"-"`
	// ServerInFlight is the mean number of requests the server reported in
	// flight during the step (its in-flight gauges); NaN when unknown.
	ServerInFlight float64 `json:"-"`
	// MachineBusy is the share of the local machine's CPU in use during the
	// step (by anything); NaN when unknown or when the target is remote.
	MachineBusy float64 `json:"-"`
}

// ProcessStep is what one watched group of processes used during a step.
// Unknown figures are NaN.
type ProcessStep struct {
	Name      string
	Members   int     // replicas
	CPUCores  float64 // CPU used, in cores
	WaitCores float64 // run-queue wait, in cores
	// QuotaCores is the cgroup CPU quota of all members together;
	// ThrottledShare the share of its enforcement periods in which the
	// quota ran out.
	QuotaCores, ThrottledShare float64
	Local                      bool
	// Suspect: watched because it runs here, not because the server side
	// connects to it; never named the bottleneck.
	Suspect bool
}

// Runner runs closed-loop load (loadlab/load through LoadRunner, or
// anything else that can).
type Runner interface {
	Run(ctx context.Context, s Spec) (Step, error)
}

// Watcher samples the server side's processes (procwatch.Set, or
// anything else that can): each group's cumulative use, in the same order
// at every call.
type Watcher interface {
	Sample(ctx context.Context) ([]procwatch.Usage, error)
	// Source is "pid" when processes are read locally, "metrics" when
	// from Prometheus endpoints, "none" when nothing is watched.
	Source() string
}

// InFlightSampler reads how many requests the target has in flight; a
// Watcher that also implements it is sampled during steps.
type InFlightSampler interface {
	InFlight(ctx context.Context) (float64, error)
}

// Refresher is a Watcher that can look for more processes now; it does so
// before each step, so that what the last step's connections revealed is
// watched whole from the next step's start.
type Refresher interface {
	Refresh()
}

// Follower is a Watcher that can find more processes while load runs (a
// proxy's upstream connections exist while it forwards); the whole
// diagnosis runs with it following.
type Follower interface {
	Follow(ctx context.Context, every time.Duration) (stop func())
}

// Run diagnoses the target: baseline, ramp, fit, verdict. w may be nil.
func Run(ctx context.Context, cfg Config, r Runner, w Watcher) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	rep := &Report{Target: cfg.Target, SLO: cfg.SLO, SaturationSource: "none"}
	if w != nil {
		rep.SaturationSource = w.Source()
	}
	m := newMeter(w)
	if f, ok := w.(Follower); ok {
		// Followed all along: a proxy may send one user to one replica
		// and spread only more users over the others. A group that grows
		// during a step sits that step out.
		// Once a second: each look reads every process's file
		// descriptors, CPU that counts as the generator's.
		defer f.Follow(ctx, time.Second)()
	}
	base, err := m.measure(ctx, r, Spec{Concurrency: 1, Duration: cfg.BaselineDuration, Requests: cfg.BaselineRequests})
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if base.Requests == 0 {
		return nil, errors.New("baseline: no request completed; is the target up?")
	}
	if base.Errors == base.Requests {
		return nil, fmt.Errorf("baseline: every request failed (%v); check the URL and that the target answers 2xx", base.ErrorKinds)
	}
	rep.Baseline = base
	if cfg.Progress != nil {
		cfg.Progress("baseline", base)
	}

	for _, n := range Levels(cfg.MaxConcurrency) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := m.measure(ctx, r, Spec{Concurrency: n, Duration: cfg.StepDuration})
		if err != nil {
			return nil, fmt.Errorf("step with %d users: %w", n, err)
		}
		rep.Steps = append(rep.Steps, s)
		if cfg.Progress != nil {
			cfg.Progress("ramp", s)
		}
	}
	rep.judge(cfg)
	return rep, nil
}

// Levels are the ramp's concurrencies: powers of two up to max, and max.
func Levels(max int) []int {
	var out []int
	for n := 1; n < max; n *= 2 {
		out = append(out, n)
	}
	return append(out, max)
}

// meter measures steps: load from a Runner, and what the watched
// processes and the generator itself used meanwhile.
type meter struct {
	w    Watcher
	self *procwatch.Set
}

func newMeter(w Watcher) *meter {
	return &meter{w: w, self: procwatch.NewSet(procwatch.Self())}
}

// Measure runs one step with r and returns it with the watched processes'
// use (exported for loadlab scaleout's probes).
func Measure(ctx context.Context, w Watcher, r Runner, spec Spec) (Step, error) {
	return newMeter(w).measure(ctx, r, spec)
}

func (m *meter) measure(ctx context.Context, r Runner, spec Spec) (Step, error) {
	var before []procwatch.Usage
	watched := m.w != nil
	if r, ok := m.w.(Refresher); ok {
		r.Refresh()
	}
	if watched {
		// A group that could not be read is left out of the step; the
		// others still count.
		before, _ = m.w.Sample(ctx)
		watched = before != nil
	}
	self0, selfErr := m.self.Sample(ctx)
	busy0, total0, machineOK := load.MachineCPU()
	t0 := time.Now()
	inflight := sampleInFlight(ctx, m.w)
	s, err := r.Run(ctx, spec)
	meanInFlight := inflight()
	if err != nil {
		return Step{}, err
	}
	var after []procwatch.Usage
	if watched {
		after, _ = m.w.Sample(ctx)
		watched = after != nil
	}
	self1, selfErr1 := m.self.Sample(ctx)
	busy1, total1, machineOK1 := load.MachineCPU()
	dt := time.Since(t0).Seconds()

	s.Concurrency = spec.Concurrency
	s.ServerCPUCores, s.ServerCPUWaitCores, s.MachineBusy, s.ServerInFlight = math.NaN(), math.NaN(), math.NaN(), meanInFlight
	s.GeneratorCPUWaitCores = math.NaN()
	if selfErr == nil && selfErr1 == nil {
		s.GeneratorCPUWaitCores = self1[0].WaitSince(self0[0]) / dt
	}
	if watched {
		s.Processes = processSteps(before, after, dt)
	}
	local := false
	for _, p := range s.Processes {
		local = local || p.Local
	}
	// The machine's own load only tells about the target when it runs here.
	if local && machineOK && machineOK1 && total1 > total0 {
		s.MachineBusy = (busy1 - busy0) / (total1 - total0)
	}
	s.ServerCPUCores, s.ServerCPUWaitCores = sumProcesses(s.Processes)
	return s, nil
}

// processSteps turns two samples into each group's use per second. A group
// that appeared or changed its members in between is left out.
func processSteps(before, after []procwatch.Usage, seconds float64) []ProcessStep {
	var out []ProcessStep
	for i, a := range after {
		if i >= len(before) || before[i].Name != a.Name || before[i].Members != a.Members || !a.OK || !before[i].OK {
			continue
		}
		b := before[i]
		p := ProcessStep{Name: a.Name, Members: a.Members, Local: a.Local, Suspect: a.Suspect,
			CPUCores: math.Max(a.CPU-b.CPU, 0) / seconds, WaitCores: a.WaitSince(b) / seconds,
			QuotaCores: a.QuotaCores, ThrottledShare: math.NaN()}
		if periods := a.Periods - b.Periods; periods > 0 {
			p.ThrottledShare = (a.Throttled - b.Throttled) / periods
		}
		out = append(out, p)
	}
	return out
}

// sumProcesses is the CPU and run-queue wait of all watched groups (NaN
// where none is known).
func sumProcesses(ps []ProcessStep) (cpu, wait float64) {
	cpu, wait = math.NaN(), math.NaN()
	for _, p := range ps {
		if math.IsNaN(cpu) {
			cpu = 0
		}
		cpu += p.CPUCores
		if !math.IsNaN(p.WaitCores) {
			if math.IsNaN(wait) {
				wait = 0
			}
			wait += p.WaitCores
		}
	}
	return cpu, wait
}

// sampleInFlight samples the server's in-flight gauges every 200ms until
// the returned function is called; that function returns their mean (NaN
// when the sampler has none).
func sampleInFlight(ctx context.Context, w Watcher) func() float64 {
	in, ok := w.(InFlightSampler)
	if !ok {
		return func() float64 { return math.NaN() }
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan float64, 1)
	go func() {
		var sum float64
		var n int
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				if n == 0 {
					done <- math.NaN()
				} else {
					done <- sum / float64(n)
				}
				return
			case <-tick.C:
				if v, err := in.InFlight(ctx); err == nil {
					sum += v
					n++
				}
			}
		}
	}()
	return func() float64 {
		cancel()
		return <-done
	}
}

// fitSteps fits the USL to the ramp.
func fitSteps(steps []Step) (usl.Fit, error) {
	pts := make([]usl.Point, 0, len(steps))
	for _, s := range steps {
		pts = append(pts, usl.Point{N: float64(s.Concurrency), X: s.ThroughputRPS})
	}
	return usl.FitPoints(pts)
}
