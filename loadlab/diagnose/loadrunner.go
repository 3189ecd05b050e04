package diagnose

import (
	"context"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
)

// LoadRunner runs each phase with loadlab's generator in closed loop.
type LoadRunner struct {
	Target  load.Request
	Timeout time.Duration
	Client  load.Client
}

// Run implements Runner.
func (l LoadRunner) Run(ctx context.Context, s Spec) (Step, error) {
	target := l.Target
	res, err := load.Run(ctx, load.Config{
		Concurrency: s.Concurrency, Duration: s.Duration, Requests: s.Requests,
		Timeout: l.Timeout, Target: &target, Client: l.Client,
	})
	if err != nil {
		return Step{}, err
	}
	if err := ctx.Err(); err != nil {
		return Step{}, err
	}
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
	}, nil
}
