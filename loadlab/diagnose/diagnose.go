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
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/usl"
)

// Config describes a diagnosis.
type Config struct {
	Target           string        // for the report
	SLO              time.Duration // p99 a user should see
	MaxConcurrency   int           // the ramp goes 1, 2, 4, ... up to this (at least 2)
	StepDuration     time.Duration // per ramp step
	BaselineRequests int64         // baseline: at most this many requests (at least MinBaselineRequests)
	BaselineDuration time.Duration // baseline: at most this long
	// Cores is how many CPU cores the machine has (default runtime.NumCPU);
	// with the target on the same machine, its share is Cores minus what
	// the generator uses.
	Cores float64
	// Progress, if set, hears about each phase as it ends.
	Progress func(phase string, s Step)
}

// The defaults WithDefaults fills in for a zero field.
const (
	DefaultSLO              = 200 * time.Millisecond
	DefaultMaxConcurrency   = 64
	DefaultStepDuration     = 5 * time.Second
	DefaultBaselineRequests = 200
	DefaultBaselineDuration = 10 * time.Second
	// MinBaselineRequests is the fewest baseline requests a p99 is
	// estimated from.
	MinBaselineRequests = 10
)

// WithDefaults is the config with its zero fields set to the defaults
// (Cores to this machine's).
func (c Config) WithDefaults() Config {
	if c.SLO == 0 {
		c.SLO = DefaultSLO
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = DefaultMaxConcurrency
	}
	if c.StepDuration == 0 {
		c.StepDuration = DefaultStepDuration
	}
	if c.BaselineRequests == 0 {
		c.BaselineRequests = DefaultBaselineRequests
	}
	if c.BaselineDuration == 0 {
		c.BaselineDuration = DefaultBaselineDuration
	}
	if c.Cores == 0 {
		c.Cores = float64(runtime.NumCPU())
	}
	return c
}

// ConfigError is what Validate finds wrong: the Config field at fault
// (a command line names its flag instead) and why.
type ConfigError struct {
	Field  string // "SLO", "MaxConcurrency", ...
	Reason string // "must be positive, got 0s"
}

func (e *ConfigError) Error() string { return e.Field + " " + e.Reason }

// Validate says what is wrong with a config (a *ConfigError); a zero
// field is wrong here (Run fills them in first with WithDefaults, a
// command line passes what the user gave).
func (c Config) Validate() error {
	bad := func(field, reason string, a ...any) error {
		return &ConfigError{Field: field, Reason: fmt.Sprintf(reason, a...)}
	}
	switch {
	case c.SLO <= 0:
		return bad("SLO", "must be positive, got %v", c.SLO)
	case c.MaxConcurrency < 2:
		return bad("MaxConcurrency", "must be at least 2, or there is no ramp, got %d", c.MaxConcurrency)
	case c.StepDuration <= 0:
		return bad("StepDuration", "must be positive, got %v", c.StepDuration)
	case c.BaselineDuration <= 0:
		return bad("BaselineDuration", "must be positive, got %v", c.BaselineDuration)
	case c.BaselineRequests < MinBaselineRequests:
		return bad("BaselineRequests", "must be at least %d to estimate a p99, got %d", MinBaselineRequests, c.BaselineRequests)
	case !(c.Cores > 0) || math.IsInf(c.Cores, 0):
		return bad("Cores", "must be a positive number of cores, got %v", c.Cores)
	}
	return nil
}

// Step, ProcessStep and Spec are measure's: a diagnosis is a ramp of
// measured steps.
type (
	Step        = measure.Step
	ProcessStep = measure.ProcessStep
	Spec        = measure.Spec
)

// Run diagnoses the target: baseline, ramp, fit, verdict. w may be nil.
func Run(ctx context.Context, cfg Config, r measure.Runner, w measure.Watcher) (*Report, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Target: cfg.Target, SLO: cfg.SLO, SaturationSource: "none"}
	if w != nil {
		rep.SaturationSource = w.Source()
	}
	m := measure.NewMeter(w)
	if f, ok := w.(measure.Follower); ok {
		// Followed all along: a proxy may send one user to one replica
		// and spread only more users over the others. A group that grows
		// during a step sits that step out.
		// Once a second: each look reads every process's file
		// descriptors, CPU that counts as the generator's.
		defer f.Follow(ctx, time.Second)()
	}
	base, err := m.Measure(ctx, r, Spec{Concurrency: 1, Duration: cfg.BaselineDuration, Requests: cfg.BaselineRequests})
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if base.Requests == 0 {
		return nil, errors.New("baseline: no request completed; is the target up?")
	}
	if base.Errors == base.Requests {
		return nil, fmt.Errorf("baseline: every request failed (%v%s); check the request and that the target answers 2xx", base.ErrorKinds, firstCause(base))
	}
	rep.Baseline = base
	if cfg.Progress != nil {
		cfg.Progress("baseline", base)
	}

	for _, n := range Levels(cfg.MaxConcurrency) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := m.Measure(ctx, r, Spec{Concurrency: n, Duration: cfg.StepDuration})
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

// fitSteps fits the USL to the ramp.
func fitSteps(steps []Step) (usl.Fit, error) {
	pts := make([]usl.Point, 0, len(steps))
	for _, s := range steps {
		pts = append(pts, usl.Point{N: float64(s.Concurrency), X: s.ThroughputRPS})
	}
	return usl.FitPoints(pts)
}

// firstCause is the most frequent cause of a step's errors with its sample
// message (": 401 Unauthorized: missing token"), "" when unknown.
func firstCause(s Step) string {
	if s.Load == nil {
		return ""
	}
	var top *load.Cause
	for _, e := range s.Load.Endpoints {
		for i, c := range e.Errors.Causes {
			if top == nil || c.Count > top.Count {
				top = &e.Errors.Causes[i]
			}
		}
	}
	if top == nil {
		return ""
	}
	if top.Sample == "" || top.Sample == top.Cause {
		return ": " + top.Cause
	}
	return ": " + top.Cause + ": " + top.Sample
}
