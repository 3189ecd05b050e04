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

// Step is what one phase measured.
type Step struct {
	Concurrency        int           `json:"concurrency"`
	ThroughputRPS      float64       `json:"throughput_rps"`
	P50                time.Duration `json:"-"`
	P99                time.Duration `json:"-"`
	Requests           int64         `json:"requests"`
	Errors             int64         `json:"errors"`
	GeneratorSaturated bool          `json:"generator_saturated"`
	GeneratorCPUCores  float64       `json:"generator_cpu_cores"`
	// ServerCPUCores is the target's CPU use during the step, in cores;
	// NaN when the server's CPU cannot be seen.
	ServerCPUCores float64 `json:"-"`
	// ServerCPUWaitCores is how many of the target's threads were, on
	// average, runnable but waiting for a CPU during the step: CPU the
	// server wanted and did not get. NaN when unknown.
	ServerCPUWaitCores float64 `json:"-"`
	// ServerInFlight is the mean number of requests the server reported in
	// flight during the step (its in-flight gauges); NaN when unknown.
	ServerInFlight float64 `json:"-"`
	// MachineBusy is the share of the local machine's CPU in use during the
	// step (by anything); NaN when unknown or when the target is remote.
	MachineBusy float64 `json:"-"`
}

// Runner runs closed-loop load (loadlab/load through LoadRunner, or
// anything else that can).
type Runner interface {
	Run(ctx context.Context, s Spec) (Step, error)
}

// CPUSampler reads the target's cumulative CPU seconds.
type CPUSampler interface {
	CPUSeconds(ctx context.Context) (float64, error)
	Source() string // "pid" or "metrics"
}

// InFlightSampler reads how many requests the target has in flight; a
// CPUSampler that also implements it (MetricsCPU) is sampled during steps.
type InFlightSampler interface {
	InFlight(ctx context.Context) (float64, error)
}

// CPUWaitSampler reads the cumulative seconds the target's threads spent
// waiting for a CPU; a CPUSampler that also implements it (ProcessCPU) is
// sampled around each step, so a server starved of CPU by other work is
// told from one that leaves the CPU idle.
type CPUWaitSampler interface {
	CPUWaitSeconds(ctx context.Context) (float64, error)
}

// Run diagnoses the target: baseline, ramp, fit, verdict. cpu may be nil.
func Run(ctx context.Context, cfg Config, r Runner, cpu CPUSampler) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	rep := &Report{Target: cfg.Target, SLO: cfg.SLO, SaturationSource: "none"}
	if cpu != nil {
		rep.SaturationSource = cpu.Source()
	}

	base, err := measure(ctx, r, cpu, Spec{Concurrency: 1, Duration: cfg.BaselineDuration, Requests: cfg.BaselineRequests})
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if base.Requests == 0 {
		return nil, errors.New("baseline: no request completed; is the target up?")
	}
	if base.Errors == base.Requests {
		return nil, errors.New("baseline: every request failed; check the URL and that the target answers 2xx")
	}
	rep.Baseline = base
	if cfg.Progress != nil {
		cfg.Progress("baseline", base)
	}

	for _, n := range Levels(cfg.MaxConcurrency) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := measure(ctx, r, cpu, Spec{Concurrency: n, Duration: cfg.StepDuration})
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

func measure(ctx context.Context, r Runner, cpu CPUSampler, spec Spec) (Step, error) {
	var c0, w0 float64
	var t0 time.Time
	cpuOK := cpu != nil
	// The machine's own load only tells about the target when the target
	// runs here.
	local := cpuOK && cpu.Source() == "pid"
	busy0, total0, machineOK := load.MachineCPU()
	waiter, waitOK := cpu.(CPUWaitSampler)
	if cpuOK {
		var err error
		if c0, err = cpu.CPUSeconds(ctx); err != nil {
			cpuOK = false
		}
		if waitOK {
			if w0, err = waiter.CPUWaitSeconds(ctx); err != nil {
				waitOK = false
			}
		}
		t0 = time.Now()
	}
	inflight := sampleInFlight(ctx, cpu)
	s, err := r.Run(ctx, spec)
	meanInFlight := inflight()
	if err != nil {
		return Step{}, err
	}
	s.Concurrency = spec.Concurrency
	s.ServerCPUCores, s.ServerCPUWaitCores, s.MachineBusy, s.ServerInFlight = math.NaN(), math.NaN(), math.NaN(), meanInFlight
	if busy1, total1, ok := load.MachineCPU(); local && machineOK && ok && total1 > total0 {
		s.MachineBusy = (busy1 - busy0) / (total1 - total0)
	}
	if cpuOK {
		if c1, err := cpu.CPUSeconds(ctx); err == nil {
			s.ServerCPUCores = (c1 - c0) / time.Since(t0).Seconds()
		}
		if waitOK {
			if w1, err := waiter.CPUWaitSeconds(ctx); err == nil {
				s.ServerCPUWaitCores = (w1 - w0) / time.Since(t0).Seconds()
			}
		}
	}
	return s, nil
}

// sampleInFlight samples the server's in-flight gauges every 200ms until
// the returned function is called; that function returns their mean (NaN
// when the sampler has none).
func sampleInFlight(ctx context.Context, cpu CPUSampler) func() float64 {
	in, ok := cpu.(InFlightSampler)
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
