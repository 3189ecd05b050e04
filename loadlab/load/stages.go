package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Stage is one stage of a run whose load varies over time: over Duration
// the load moves linearly from the previous stage's Target (0 before the
// first) to this one's, as k6's ramping executors do. Target is requests
// per second in open loop, users in closed loop.
type Stage struct {
	Duration time.Duration `json:"duration_ns"`
	Target   float64       `json:"target"`
}

// ParseStages reads "30s:100,1m:400,30s:0": each stage's duration and
// the target it ramps to.
func ParseStages(s string) ([]Stage, error) {
	var stages []Stage
	for i, part := range strings.Split(s, ",") {
		d, t, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("stage %d %q: want DURATION:TARGET, such as 30s:100", i+1, part)
		}
		dur, err := time.ParseDuration(d)
		if err != nil || dur <= 0 {
			return nil, fmt.Errorf("stage %d %q: %q is not a positive duration (30s, 1m)", i+1, part, d)
		}
		target, err := strconv.ParseFloat(t, 64)
		if err != nil || target < 0 || math.IsNaN(target) || math.IsInf(target, 0) {
			return nil, fmt.Errorf("stage %d %q: %q is not a target of zero or more", i+1, part, t)
		}
		stages = append(stages, Stage{Duration: dur, Target: target})
	}
	return stages, nil
}

// validateStages checks a staged configuration.
func (c *Config) validateStages() error {
	if len(c.Stages) == 0 {
		if c.StagedUsers {
			return errors.New("staged users need stages")
		}
		return nil
	}
	switch {
	case c.Rate > 0 || c.Concurrency > 0:
		return errors.New("stages set the load: give no rate or concurrency beside them")
	case c.Duration > 0 || c.Requests > 0:
		return errors.New("stages set how long the run lasts: give no duration or request count beside them")
	}
	peak := 0.0
	for i, s := range c.Stages {
		switch {
		case s.Duration <= 0:
			return fmt.Errorf("stage %d: duration must be positive", i+1)
		case s.Target < 0 || math.IsNaN(s.Target) || math.IsInf(s.Target, 0):
			return fmt.Errorf("stage %d: target must be zero or more", i+1)
		case c.StagedUsers && s.Target != math.Trunc(s.Target):
			return fmt.Errorf("stage %d: %g users is not a whole number", i+1, s.Target)
		case c.StagedUsers && s.Target > MaxUsers:
			return fmt.Errorf("stage %d: %g users is more than %d", i+1, s.Target, MaxUsers)
		case !c.StagedUsers && s.Target > MaxRate:
			return fmt.Errorf("stage %d: %g req/s is above the %d req/s one generator can send", i+1, s.Target, MaxRate)
		}
		peak = max(peak, s.Target)
	}
	if peak == 0 {
		return errors.New("every stage's target is 0: nothing would be sent")
	}
	if c.StagedUsers && c.ThinkTime < 0 {
		return errors.New("think time must not be negative")
	}
	return nil
}

// Limits on what one generator is asked to do: far above what it can,
// so that a value past them is a typo, not a plan.
const (
	MaxRate  = 1_000_000 // requests per second
	MaxUsers = 100_000   // closed-loop users
)

// stagesDuration is how long the stages last in all.
func stagesDuration(stages []Stage) time.Duration {
	var d time.Duration
	for _, s := range stages {
		d += s.Duration
	}
	return d
}

// stageAt returns the index of the stage running at offset from the
// start (the last one at or after the end).
func stageAt(stages []Stage, offset time.Duration) int {
	for i, s := range stages {
		if offset < s.Duration {
			return i
		}
		offset -= s.Duration
	}
	return len(stages) - 1
}

// targetAt is the load the stages call for at offset: interpolated
// linearly within the stage.
func targetAt(stages []Stage, offset time.Duration) float64 {
	from := 0.0
	for _, s := range stages {
		if offset < s.Duration {
			return from + (s.Target-from)*float64(offset)/float64(s.Duration)
		}
		offset -= s.Duration
		from = s.Target
	}
	return from
}

// stagesDue is how many requests the stages' rates call for in the first
// d of the run.
func stagesDue(stages []Stage, d time.Duration) float64 {
	n, from := 0.0, 0.0
	for _, s := range stages {
		span := min(d, s.Duration)
		rateAtEnd := from + (s.Target-from)*float64(span)/float64(s.Duration)
		n += (from + rateAtEnd) / 2 * span.Seconds()
		d -= span
		if d <= 0 {
			break
		}
		from = s.Target
	}
	return n
}

// rampSchedule places the requests of an open loop whose rate ramps
// linearly within each stage: request k is due when the integral of the
// rate reaches k.
type rampSchedule struct {
	stages []Stage
	i      int           // the stage of the last request placed
	from   float64       // rate at the start of stage i
	begin  time.Duration // offset of stage i's start
	before float64       // requests due before stage i
}

// offset returns when request k is due, or false after the last stage.
func (r *rampSchedule) offset(k int64) (time.Duration, bool) {
	for r.i < len(r.stages) {
		s := r.stages[r.i]
		secs := s.Duration.Seconds()
		inStage := (r.from + s.Target) / 2 * secs
		n := float64(k) - r.before
		if n < inStage {
			// Solve from*t + (to-from)/(2*secs)*t^2 = n for t.
			a, b := (s.Target-r.from)/(2*secs), r.from
			var t float64
			if math.Abs(a) < 1e-12 {
				t = n / b
			} else {
				t = (-b + math.Sqrt(math.Max(b*b+4*a*n, 0))) / (2 * a)
			}
			return r.begin + time.Duration(t*float64(time.Second)), true
		}
		r.before += inStage
		r.begin += s.Duration
		r.from = s.Target
		r.i++
	}
	return 0, false
}

// closedLoopStaged runs as many users as the stages call for at each
// moment: users past the current target wait, parked, until it rises.
func (g *generator) closedLoopStaged(ctx context.Context, start time.Time) {
	peak := 0
	for _, s := range g.cfg.Stages {
		peak = max(peak, int(s.Target))
	}
	var (
		target  atomic.Int64
		mu      sync.Mutex
		changed = make(chan struct{})
	)
	wake := func() {
		mu.Lock()
		close(changed)
		changed = make(chan struct{})
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := range peak {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var w *worker // created on first use: a parked user has no session yet
			for !g.stop.Load() && ctx.Err() == nil {
				mu.Lock()
				ch := changed
				mu.Unlock()
				if int64(i) >= target.Load() {
					select {
					case <-ch:
					case <-ctx.Done():
						return
					}
					continue
				}
				if !g.take() {
					return
				}
				if w == nil {
					w = g.newWorker()
				}
				if !w.sendAndThink(ctx) {
					return
				}
			}
		}()
	}
	// The controller follows the ramp in steps of at most 50 ms.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		users := int64(math.Round(targetAt(g.cfg.Stages, time.Since(start))))
		if users != target.Load() {
			target.Store(users)
			wake()
		}
		if g.stop.Load() || ctx.Err() != nil {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	wake() // parked users see the stop and leave
	wg.Wait()
}

// StageResult is what one stage measured.
type StageResult struct {
	Stage
	From          float64     `json:"from"` // the target at the stage's start
	Requests      int64       `json:"requests"`
	Errors        ErrorCounts `json:"errors"`
	ThroughputRPS float64     `json:"throughput_rps"` // Requests / the stage's duration
	Latency       Latency     `json:"latency"`
	// Histogram holds the stage's latencies in microseconds.
	Histogram *hdrhistogram.Histogram `json:"-"`
}

// stageResults merges the shards' per-stage results. A request counts in
// the stage it was due in.
func (g *generator) stageResults() []StageResult {
	if len(g.cfg.Stages) == 0 {
		return nil
	}
	out := make([]StageResult, len(g.cfg.Stages))
	hists := make([]*endpointStats, len(out))
	from := 0.0
	for i, s := range g.cfg.Stages {
		out[i] = StageResult{Stage: s, From: from}
		from = s.Target
		hists[i] = newEndpointStats()
	}
	for _, sh := range g.rec.shards {
		sh.mu.Lock()
		for i, st := range sh.stages {
			if st == nil || i >= len(out) {
				continue
			}
			hists[i].hist.Merge(st.hist)
			out[i].Requests += st.count
			addErrs(&out[i].Errors, st.errs)
		}
		sh.mu.Unlock()
	}
	for i := range out {
		out[i].Latency = latencyOf(hists[i].hist)
		out[i].Histogram = hists[i].hist
		out[i].ThroughputRPS = float64(out[i].Requests) / out[i].Duration.Seconds()
	}
	return out
}
