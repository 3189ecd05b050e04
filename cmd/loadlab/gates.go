package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/scaleout"
	"github.com/perfscale/perfscale/loadlab/threshold"
)

// diagnoseThresholds checks a diagnosis: latency and error thresholds
// against the single-user baseline (the ramp overloads the service on
// purpose, so its later steps would fail any latency bound), rps against
// the capacity the ramp found (the highest goodput).
func diagnoseThresholds(checks threshold.List, rep *diagnose.Report) []threshold.Outcome {
	whole := stepMeasured(rep.Baseline)
	whole.RPS = rep.CapacityRPS
	return checks.Evaluate(whole, func(name string) (threshold.Measured, bool) {
		if rep.Baseline.Load == nil {
			return threshold.Measured{}, false
		}
		m, ok := endpointMeasured(rep.Baseline.Load)(name)
		return m, ok
	})
}

// stepMeasured is what thresholds check of one measured step: the whole
// latency histogram when the step kept it, else its p50 and p99.
func stepMeasured(s measure.Step) threshold.Measured {
	if s.Load != nil {
		return measuredRun(s.Load)
	}
	m := threshold.Measured{Requests: s.Requests, Errors: s.Errors, RPS: s.ThroughputRPS, Max: s.P99, Mean: s.P50}
	m.Quantile = func(p float64) time.Duration {
		if p <= 50 {
			return s.P50
		}
		return s.P99
	}
	return m
}

// checkScaleoutThresholds refuses, before the run, thresholds scaleout
// cannot check: it measures each replica count's capacity and the p99 at
// it.
func checkScaleoutThresholds(checks threshold.List) error {
	for _, t := range checks {
		switch {
		case t.Endpoint != "":
			return fmt.Errorf("--threshold %s: scaleout measures the whole target, not endpoints", t.Source)
		case t.Metric == threshold.RPS, t.Metric == threshold.Percentile && t.Percentile == 99:
		default:
			return fmt.Errorf("--threshold %s: scaleout measures capacity (rps) and p99 at each replica count; use those", t.Source)
		}
	}
	return nil
}

// scaleoutThresholds checks every replica count: rps against its
// capacity, p99 against the p99 at that capacity. The first failure names
// its replica count.
func scaleoutThresholds(checks threshold.List, res *scaleout.Result) ([]threshold.Outcome, error) {
	var all []threshold.Outcome
	var failure error
	for _, st := range res.Steps {
		p99 := st.P99
		m := threshold.Measured{Requests: 1, RPS: st.CapacityRPS, Quantile: func(float64) time.Duration { return p99 }}
		at := fmt.Sprintf("at %d replicas", st.Replicas)
		if st.Replicas == 1 {
			at = "at 1 replica"
		}
		for _, o := range checks.Evaluate(m, nil) {
			o.Observed += " " + at
			all = append(all, o)
			if !o.Passed && failure == nil {
				failure = failed(errors.New(o.String()))
			}
		}
	}
	return all, failure
}
