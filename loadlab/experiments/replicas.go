package experiments

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
)

// errorShareFails: a count where at least this share of requests failed
// is one the errors bound.
const errorShareFails = 0.01

// measureReplicas brings one setting to each replica count in turn (its
// up command with {n}; down at the end) and runs Users closed-loop users
// for Warmup, then for StepDuration measured, at each.
func (r *Runner) measureReplicas(ctx context.Context, e Experiment, s *Setting) (*Side, error) {
	x, err := r.prepare(e.Name)
	if err != nil {
		return nil, err
	}
	sys := &system{dir: x.dir, down: x.expand(s.Down), done: make(chan struct{})}
	close(sys.done)
	defer r.stop(sys) //nolint:errcheck // reported by the measurement's error, if any
	side := &Side{Setting: label(s), Metrics: map[string]float64{}}
	var parts []string
	var x1 float64
	for _, n := range e.Replicas {
		r.logf("%s: %s on %s", e.Name, replicasText(n), label(s))
		out, err := r.shell(ctx, strings.ReplaceAll(x.expand(s.Up), "{n}", strconv.Itoa(n)))
		if err != nil {
			return nil, fmt.Errorf("up %d: %w", n, err)
		}
		sys.url = lastLine(out)
		if err := r.waitReady(ctx, sys); err != nil {
			return nil, err
		}
		runner, err := e.workload(sys.url)
		if err != nil {
			return nil, err
		}
		runner.Client = r.Client
		// The processes behind the URL (nginx, the replicas, PostgreSQL)
		// are watched, so that a count the machine held back is known.
		watcher, _ := measure.Discover(sys.url, true)
		if _, err := runner.Run(ctx, measure.Spec{Concurrency: e.Users, Duration: time.Duration(e.Warmup)}); err != nil {
			return nil, fmt.Errorf("warm-up at %d replicas: %w", n, err)
		}
		step, err := measure.Measure(ctx, watcher, runner, measure.Spec{Concurrency: e.Users, Duration: time.Duration(e.StepDuration)})
		if err != nil {
			return nil, fmt.Errorf("%d replicas: %w", n, err)
		}
		if n == 1 {
			x1 = step.ThroughputRPS
		}
		st, share := replicaStep(n, step, x1, r.Cores)
		if st.MachineBound != "" && side.MachineBound == "" {
			side.MachineBound = st.MachineBound
		}
		side.Steps = append(side.Steps, st)
		key := strconv.Itoa(n)
		side.Metrics["goodput_rps@"+key] = step.ThroughputRPS
		side.Metrics["p99_ms@"+key] = ms(step.P99)
		side.Metrics["error_share@"+key] = share
		side.Metrics["efficiency@"+key] = st.Efficiency
		for name, v := range map[string]float64{"machine_busy@": step.MachineBusy, "server_cpu_cores@": step.ServerCPUCores, "server_cpu_wait_cores@": step.ServerCPUWaitCores} {
			if !math.IsNaN(v) {
				side.Metrics[name+key] = v
			}
		}
		processMetrics(side.Metrics, key, step.Processes)
		part := fmt.Sprintf("%d: %.0f req/s, p99 %s", n, step.ThroughputRPS, fmtMS(ms(step.P99)))
		if n > 1 {
			part += fmt.Sprintf(", efficiency %.0f%%", 100*st.Efficiency)
		}
		if share > 0 {
			part += fmt.Sprintf(", %.1f%% errors", 100*share)
		}
		if st.MachineBound != "" {
			part += ", machine-bound"
		}
		parts = append(parts, part)
	}
	side.Summary = fmt.Sprintf("%d users: %s", e.Users, strings.Join(parts, "; "))
	if err := r.stop(sys); err != nil {
		return nil, err
	}
	sys.down = ""
	os.RemoveAll(x.dir)
	return side, nil
}

// replicaStep is one count's figures from its step: the efficiency
// against x1 (the goodput at 1 replica; 0 when unknown), errors that bound
// it (at least errorShareFails of the requests failed), and whether the
// machine, not the replicas, held it back (measure.Starved: other work
// held the CPUs the system's processes, none at its quota, queued for).
// The failed requests' share is returned beside it.
func replicaStep(n int, step measure.Step, x1, cores float64) (ScaleStep, float64) {
	st := ScaleStep{Replicas: n, CapacityRPS: step.ThroughputRPS}
	if x1 > 0 {
		st.Efficiency = step.ThroughputRPS / (float64(n) * x1)
	}
	share := 0.0
	if step.Requests > 0 {
		share = float64(step.Errors) / float64(step.Requests)
	}
	if share >= errorShareFails {
		cause := ""
		if top := topCause(step.Load); top != nil {
			cause = ", most " + strings.TrimSpace(top.Label(60))
			st.ErrorStatus = top.Status
		}
		st.Bottleneck = fmt.Sprintf("errors: %.0f%% of %d requests failed%s", 100*share, step.Requests, cause)
	}
	if measure.Starved(step, cores) {
		st.MachineBound = fmt.Sprintf("%s: the machine's CPUs were %.0f%% busy and the system's processes, none at its quota, used %.2f cores and %s",
			replicasText(n), 100*step.MachineBusy, step.ServerCPUCores, step.WaitedText("the system's processes'"))
	}
	return st, share
}

func replicasText(n int) string {
	if n == 1 {
		return "1 replica"
	}
	return fmt.Sprintf("%d replicas", n)
}

// topCause is the most frequent error cause of a run (nil when none).
func topCause(res *load.Result) *load.Cause {
	if res == nil {
		return nil
	}
	var top *load.Cause
	for _, ep := range res.Endpoints {
		for i, c := range ep.Errors.Causes {
			if top == nil || c.Count > top.Count {
				top = &ep.Errors.Causes[i]
			}
		}
	}
	return top
}

// processMetrics records each watched group's CPU and run-queue wait at
// count key, to tell who used and who waited. The servers of a name that
// only run here (PostgreSQL, say) are kept apart from the connected one
// of that name.
func processMetrics(m map[string]float64, key string, procs []measure.ProcessStep) {
	for _, p := range procs {
		group := p.Name
		if p.Suspect {
			group += " (not connected)"
		}
		for name, v := range map[string]float64{"cpu_cores@": p.CPUCores, "cpu_wait_cores@": p.WaitCores} {
			if !math.IsNaN(v) {
				m[name+key+" "+group] = v
			}
		}
	}
}
