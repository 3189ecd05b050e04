package scaleout

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/measure"
)

// The failing probes of the known-linear system's 4-replica count, beside
// two CPU hogs: the replicas well under their quota, everything queued
// for a CPU. That failure is the machine's; replicas at their quota, or
// an idle machine, make it the system's.
func TestStarvationTellsTheMachineFromTheSystem(t *testing.T) {
	nan := math.NaN()
	const slo = 200 * time.Millisecond
	starved := measure.Step{MachineBusy: 1, ThroughputRPS: 210, ServerCPUCores: 0.50, ServerCPUWaitCores: 3.52, GeneratorCPUCores: 0.05, GeneratorCPUWaitCores: 0.01,
		Processes: []measure.ProcessStep{
			{Name: "app", Members: 4, CPUCores: 0.44, WaitCores: 2.4, QuotaCores: 0.8, ThrottledShare: 0.05, Local: true},
			{Name: "lb", Members: 1, CPUCores: 0.06, WaitCores: 1.12, QuotaCores: nan, ThrottledShare: nan, Local: true},
		}}
	if why := starvation(starved, 2, slo); !strings.Contains(why, "used 0.50 cores and waited for a CPU 3.52 cores' worth (16.8 ms an answer)") {
		t.Errorf("starved probe: %q", why)
	}
	atQuota := starved
	atQuota.Processes = append([]measure.ProcessStep(nil), starved.Processes...)
	atQuota.Processes[0].CPUCores, atQuota.Processes[0].ThrottledShare = 0.78, 0.9
	if why := starvation(atQuota, 2, slo); why != "" {
		t.Errorf("replicas at their quota: %q, want the system's own failure", why)
	}
	idle := starved
	idle.MachineBusy = 0.5
	if why := starvation(idle, 2, slo); why != "" {
		t.Errorf("half-idle machine: %q", why)
	}
	// loadlab's own wait is the generator check's, not this.
	generator := starved
	generator.ServerCPUWaitCores, generator.GeneratorCPUWaitCores = 0.1, 3.01
	if why := starvation(generator, 2, slo); why != "" {
		t.Errorf("starved generator: %q", why)
	}
	// A virtual-clock system's own overload on a busy machine: its
	// processes wait a little, far from starving it.
	queued := measure.Step{MachineBusy: 1, ServerCPUCores: 0.06, ServerCPUWaitCores: 0.23, GeneratorCPUCores: 0.05, GeneratorCPUWaitCores: nan,
		Processes: []measure.ProcessStep{{Name: "app", Members: 1, CPUCores: 0.06, WaitCores: 0.23, QuotaCores: nan, ThrottledShare: nan, Local: true}}}
	if why := starvation(queued, 2, slo); why != "" {
		t.Errorf("an overload of the system's own: %q", why)
	}
	// Weighted, at a load average of 36: half a core and more of waiting,
	// 3 to 5 ms an answer at 108 and 213 req/s, while the virtual-clock
	// system was over its known 100 and 200 req/s.
	for _, busy := range []measure.Step{
		{MachineBusy: 1, ThroughputRPS: 108, ServerCPUCores: 0.09, ServerCPUWaitCores: 0.53, Processes: queued.Processes},
		{MachineBusy: 1, ThroughputRPS: 213, ServerCPUCores: 0.17, ServerCPUWaitCores: 1.10, Processes: queued.Processes},
	} {
		if why := starvation(busy, 2, slo); why != "" {
			t.Errorf("%.0f req/s, waiting %.2f cores: %q", busy.ThroughputRPS, busy.ServerCPUWaitCores, why)
		}
	}
}

// A failure the machine may explain is probed once more, even far from
// the capacity; if the second passes, the search goes on from it, and if
// it fails starved again the capacity says the machine bounded it.
func TestSearchProbesAStarvedFailureAgain(t *testing.T) {
	const capacity = 400.0
	s := Search{SLO: 200 * time.Millisecond, Start: 100, Factor: 2}
	starvedOnce := map[float64]bool{}
	c, err := s.Run(context.Background(), func(_ context.Context, rate float64) (Probe, error) {
		p := Probe{Rate: rate, ThroughputRPS: math.Min(rate, capacity), Requests: 1000, P99: 20 * time.Millisecond, SentShare: 1}
		if rate == 200 && !starvedOnce[rate] { // a starved moment at half the capacity
			starvedOnce[rate] = true
			p.P99, p.Starved = time.Second, "the machine's CPUs were 100% busy"
		}
		if rate > capacity {
			p.P99 = time.Second
		}
		return p, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Found || c.RPS < capacity/1.05 || c.RPS > capacity || c.Bound.Starved != "" {
		t.Fatalf("capacity %.0f (found %v, bound starved %q), want %.0f within 5%%", c.RPS, c.Found, c.Bound.Starved, capacity)
	}
	// Starved at every rate from 200 up: the bound says so.
	c, _ = s.Run(context.Background(), func(_ context.Context, rate float64) (Probe, error) {
		p := Probe{Rate: rate, ThroughputRPS: rate, Requests: 1000, P99: 20 * time.Millisecond, SentShare: 1}
		if rate >= 200 {
			p.P99, p.Starved = time.Second, "the machine's CPUs were 100% busy"
		}
		return p, nil
	})
	if c.Bound.Starved == "" || c.RPS >= 200 {
		t.Fatalf("a capacity bounded by starved probes: %.0f, bound %+v", c.RPS, c.Bound)
	}
}

// A count the machine bounded is measured again, and if it stays so the
// table says why it is not to be trusted.
func TestAMachineLimitedCountIsAContradiction(t *testing.T) {
	r := &Result{Steps: []Step{{Replicas: 1, CapacityRPS: 90}, {Replicas: 2, CapacityRPS: 180}, {Replicas: 4, CapacityRPS: 200,
		MachineLimited: "at 210 req/s, the rate that bounded it, the machine's CPUs were 100% busy (measured twice)"}}}
	r.score()
	found := r.contradictions()
	if got := involved(found); len(got) == 0 || got[len(got)-1] != 2 {
		t.Fatalf("contradictions %+v, want the 4-replica count among them", found)
	}
	if !strings.Contains(found[0].why, "4 replicas: the machine, not the system, bounded the capacity: at 210 req/s") {
		t.Fatalf("why %q", found[0].why)
	}
}
