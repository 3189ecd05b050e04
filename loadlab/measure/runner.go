package measure

import (
	"context"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
)

// LoadRunner runs each phase with loadlab's generator: closed loop, or
// open loop when the Spec has a Rate. It sends Target, or runs Scenario
// when Target is nil.
type LoadRunner struct {
	Target   *load.Request
	Scenario load.Scenario
	Timeout  time.Duration
	Client   load.Client
	// SLO, if set, is what the generator judges its own lateness against
	// (load.Config.SLO).
	SLO time.Duration
	// Users, if set, is the pool of users the open-loop phases of a
	// Scenario spread their requests over (load.Users), shared by every
	// phase this runner runs; closed-loop phases have their own users.
	Users *load.Users
}

// Run implements Runner; the Step keeps the generator's whole result.
func (l LoadRunner) Run(ctx context.Context, s Spec) (Step, error) {
	cfg := load.Config{Concurrency: s.Concurrency, Rate: s.Rate, Duration: s.Duration, Requests: s.Requests,
		Timeout: l.Timeout, Scenario: l.Scenario, Client: l.Client, SLO: l.SLO}
	if l.Target != nil {
		target := *l.Target
		cfg.Target = &target
	}
	if s.Rate > 0 {
		cfg.Concurrency = 0
		if l.Scenario != nil {
			cfg.Users = l.Users
		}
	}
	res, err := load.Run(ctx, cfg)
	if err != nil {
		return Step{}, err
	}
	if err := ctx.Err(); err != nil {
		return Step{}, err
	}
	return StepOf(s, res), nil
}

// StepOf is the step a generator's whole result measured for s (any
// load source: this process's generator, or agents whose results were
// merged).
func StepOf(s Spec, res *load.Result) Step {
	return Step{
		Concurrency:        s.Concurrency,
		ThroughputRPS:      res.GoodputRPS,
		AnsweredRPS:        res.ThroughputRPS,
		P50:                res.SuccessLatency.P50,
		P99:                res.SuccessLatency.P99,
		Requests:           res.Requests,
		Errors:             res.Errors.Total(),
		ErrorKinds:         res.Errors,
		GeneratorSaturated: res.GeneratorSaturated,
		GeneratorCPUCores:  res.GeneratorCPUCores,
		Load:               res,
	}
}
