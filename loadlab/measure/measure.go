// Package measure runs one phase of load against a target and reports what
// it measured beside what the server side spent meanwhile: the load's
// throughput and latency, each watched process group's CPU, run-queue wait
// and cgroup quota, the generator's own CPU and the machine's. It also
// finds what to watch behind a local URL (Discover) and which watched
// group a phase found CPU-bound (Bottleneck). loadlab diagnose measures
// its ramp with it, loadlab scaleout its probes; neither judges the other's
// results.
package measure

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/procwatch"
)

// Spec is one phase of load: closed loop with Concurrency users, or open
// loop at Rate requests a second when Rate is set.
type Spec struct {
	Concurrency int
	Rate        float64       // req/s; 0: closed loop
	Duration    time.Duration // at most this long
	Requests    int64         // 0: bounded by Duration only
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
	// connected to the target during the step, summed, in cores; NaN when
	// none could be seen. Suspects (running here, not seen connected) are
	// in Processes but not in this sum.
	ServerCPUCores float64 `json:"-"`
	// ServerCPUWaitCores is how many of their threads were, on average,
	// runnable but waiting for a CPU during the step: CPU the server
	// wanted and did not get. NaN when unknown.
	ServerCPUWaitCores float64 `json:"-"`
	// ServerCPUPreemptedCores is the part of ServerCPUWaitCores its
	// threads spent waiting after being preempted (procwatch's
	// PreemptedWaitSince): CPU they wanted to go on using. The rest is
	// the wake-up latency of a busy machine. NaN when unknown.
	ServerCPUPreemptedCores float64 `json:"-"`
	// Processes is each watched group's share (the replicas, the
	// database, the proxy), in the order they were watched.
	Processes []ProcessStep `json:"-"`
	// ServerInFlight is the mean number of requests the server reported in
	// flight during the step (its in-flight gauges); NaN when unknown.
	ServerInFlight float64 `json:"-"`
	// JobsWaiting is the most background jobs the server reported waiting
	// for a worker during the step, DBPoolWaiting how many of its calls
	// waited for a database connection on average (a WindowWatcher's,
	// from Prometheus); NaN when unknown.
	JobsWaiting, DBPoolWaiting float64 `json:"-"`
	// MachineBusy is the share of the machine's CPU in use during the
	// step (by anything): the local machine's when the watched processes
	// run here, the scraped nodes' when a WindowWatcher reads them (a
	// Prometheus' node exporter); NaN when unknown.
	MachineBusy float64 `json:"-"`
	// MachineWaitCores is how many threads of the machine (of any
	// process) were, on average, runnable but waiting for a CPU, as a
	// WindowWatcher reads it when it cannot see the server's own
	// (ServerCPUWaitCores NaN): exact from the kernel's scheduler
	// statistics, a lower bound from its CPU pressure (the share of time
	// some thread waited); NaN when unknown. See CPUWait.
	MachineWaitCores float64 `json:"-"`
	// Load is the generator's whole result (errors by kind, its
	// self-check), when the Runner ran loadlab's generator (LoadRunner,
	// or agents: their merged result); nil otherwise.
	Load *load.Result `json:"-"`
}

// ProcessStep is what one watched group of processes used during a step.
// Unknown figures are NaN.
type ProcessStep struct {
	Name      string
	Members   int     // replicas
	CPUCores  float64 // CPU used, in cores
	WaitCores float64 // run-queue wait, in cores
	// PreemptedCores is the part of WaitCores that followed a preemption
	// (procwatch's PreemptedWaitSince): the CPU it wanted and did not
	// get, without the machine's wake-up latency.
	PreemptedCores float64
	// QuotaCores is the cgroup CPU quota of all members together;
	// ThrottledShare the share of its enforcement periods in which the
	// quota ran out.
	QuotaCores, ThrottledShare float64
	Local                      bool
	// Suspect: watched because it runs here, not because the server side
	// connects to it; never named the bottleneck, never in the server's
	// CPU.
	Suspect bool
}

// Runner runs one phase of load (LoadRunner, or anything else that can).
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

// Refresher is a Watcher that can look for more processes now; Meter does
// so before each step, so that what the last step's connections revealed
// is watched whole from the next step's start.
type Refresher interface {
	Refresh()
}

// Follower is a Watcher that can find more processes while load runs (a
// proxy's upstream connections exist while it forwards).
type Follower interface {
	Follow(ctx context.Context, every time.Duration) (stop func())
}

// WindowWatcher is a Watcher that reads what the server side used over a
// step's time window after it (a Prometheus server, which has scraped the
// processes all along), rather than sampling them before and after.
// Meter asks it instead of Sample.
type WindowWatcher interface {
	Window(ctx context.Context, from, to time.Time) (Window, error)
}

// Window is what a WindowWatcher read of one step: each group's use
// (CPUCores; the figures it cannot see NaN), and the server's own
// saturation gauges (NaN when unknown).
type Window struct {
	Processes                            []ProcessStep
	InFlight, JobsWaiting, DBPoolWaiting float64
	// MachineBusy and MachineWaitCores are the machine's, as Step's
	// (NaN when unknown).
	MachineBusy, MachineWaitCores float64
}

// NoWindow is a Window that knows nothing: every figure NaN.
func NoWindow() Window {
	nan := math.NaN()
	return Window{InFlight: nan, JobsWaiting: nan, DBPoolWaiting: nan, MachineBusy: nan, MachineWaitCores: nan}
}

// Meter measures steps: load from a Runner, and what the watched
// processes and the generator itself used meanwhile.
type Meter struct {
	w    Watcher
	self *procwatch.Set
}

// NewMeter measures with w watching the server side (w may be nil).
func NewMeter(w Watcher) *Meter {
	return &Meter{w: w, self: procwatch.NewSet(procwatch.Self())}
}

// Measure runs one step with r and returns it with the watched processes'
// use (w may be nil).
func Measure(ctx context.Context, w Watcher, r Runner, spec Spec) (Step, error) {
	return NewMeter(w).Measure(ctx, r, spec)
}

// Measure runs one step with r and returns it with the watched processes'
// use.
func (m *Meter) Measure(ctx context.Context, r Runner, spec Spec) (Step, error) {
	if ww, ok := m.w.(WindowWatcher); ok {
		return m.measureWindow(ctx, ww, r, spec)
	}
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
	s.ServerCPUPreemptedCores, s.MachineWaitCores = math.NaN(), math.NaN()
	s.GeneratorCPUWaitCores = math.NaN()
	s.JobsWaiting, s.DBPoolWaiting = math.NaN(), math.NaN()
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
	s.ServerCPUCores, s.ServerCPUWaitCores, s.ServerCPUPreemptedCores = ServerCPU(s.Processes)
	return s, nil
}

// measureWindow runs one step with r and asks ww, after it, what the
// server side used over the step's window. The generator's own wait is
// sampled as in Measure; the machine's load is the window's (the nodes
// its source scrapes), not this machine's.
func (m *Meter) measureWindow(ctx context.Context, ww WindowWatcher, r Runner, spec Spec) (Step, error) {
	self0, selfErr := m.self.Sample(ctx)
	t0 := time.Now()
	s, err := r.Run(ctx, spec)
	if err != nil {
		return Step{}, err
	}
	t1 := time.Now()
	self1, selfErr1 := m.self.Sample(ctx)
	s.Concurrency = spec.Concurrency
	s.GeneratorCPUWaitCores = math.NaN()
	if selfErr == nil && selfErr1 == nil {
		s.GeneratorCPUWaitCores = self1[0].WaitSince(self0[0]) / t1.Sub(t0).Seconds()
	}
	win, err := ww.Window(ctx, t0, t1)
	if err != nil {
		// The load was measured; the server side is unknown this step.
		win = NoWindow()
	}
	s.Processes, s.ServerInFlight, s.JobsWaiting, s.DBPoolWaiting = win.Processes, win.InFlight, win.JobsWaiting, win.DBPoolWaiting
	s.MachineBusy, s.MachineWaitCores = win.MachineBusy, win.MachineWaitCores
	s.ServerCPUCores, s.ServerCPUWaitCores, s.ServerCPUPreemptedCores = ServerCPU(s.Processes)
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
			CPUCores: math.Max(a.CPU-b.CPU, 0) / seconds, WaitCores: a.WaitSince(b) / seconds, PreemptedCores: a.PreemptedWaitSince(b) / seconds,
			QuotaCores: a.QuotaCores, ThrottledShare: math.NaN()}
		if periods := a.Periods - b.Periods; periods > 0 {
			p.ThrottledShare = (a.Throttled - b.Throttled) / periods
		}
		out = append(out, p)
	}
	return out
}

// ServerCPU is the CPU, run-queue wait and wait after preemption of the
// groups connected to the target (NaN where none is known). Suspects,
// processes only seen running on the same machine, are left out: another
// system's database is not this server's CPU.
func ServerCPU(ps []ProcessStep) (cpu, wait, preempted float64) {
	cpu, wait, preempted = math.NaN(), math.NaN(), math.NaN()
	add := func(sum *float64, v float64) {
		if math.IsNaN(v) {
			return
		}
		if math.IsNaN(*sum) {
			*sum = 0
		}
		*sum += v
	}
	for _, p := range ps {
		if p.Suspect {
			continue
		}
		add(&cpu, p.CPUCores)
		add(&wait, p.WaitCores)
		add(&preempted, p.PreemptedCores)
	}
	return cpu, wait, preempted
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

// FormatMS writes a latency for running text, in milliseconds with the
// precision its size needs ("0.42 ms", "12.3 ms", "480 ms"): diagnose's
// evidence and scaleout's progress and bottleneck lines share it so that
// one figure reads the same in both.
func FormatMS(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}
