package experiments

import (
	"math"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/loadlab/measure"
)

// step is a replicas count as measure.Measure gives it: the goodput, the
// machine's CPU, and the replicas (at a 0.5-core quota each) and
// PostgreSQL (no quota) beside it.
func step(rps, machineBusy float64, replicas int, replicasCPU, replicasWait float64) measure.Step {
	nan := math.NaN()
	procs := []measure.ProcessStep{
		{Name: "shop", Members: replicas, CPUCores: replicasCPU, WaitCores: replicasWait, PreemptedCores: nan, QuotaCores: 0.5 * float64(replicas), ThrottledShare: 0.05, Local: true},
		{Name: "postgres", Members: 1, CPUCores: 0.3, WaitCores: 0.2, PreemptedCores: nan, QuotaCores: nan, ThrottledShare: nan, Local: true},
	}
	return measure.Step{ThroughputRPS: rps, Requests: int64(4 * rps), MachineBusy: machineBusy, GeneratorCPUCores: 0.3,
		ServerCPUCores: replicasCPU + 0.3, ServerCPUWaitCores: replicasWait + 0.2, Processes: procs}
}

// sideOf is a side measured at 1 and 2 replicas.
func sideOf(steps ...measure.Step) *Side {
	s := &Side{Metrics: map[string]float64{}}
	var x1 float64
	for i, m := range steps {
		n := i + 1
		if n == 1 {
			x1 = m.ThroughputRPS
		}
		st, _ := replicaStep(n, m, x1, 2)
		if st.MachineBound != "" && s.MachineBound == "" {
			s.MachineBound = st.MachineBound
		}
		s.Steps = append(s.Steps, st)
	}
	return s
}

// The global lock's row of the last session, at a load average of 36:
// without the lock 802 req/s on 1 replica and 609 on 2, with it 433 and
// 361. Judged on efficiencies alone that is "scales" (38% without, 42%
// with), a false verdict on the claim: at 2 replicas the machine was the
// bound, the replicas under their quota and queued for a CPU. Such a row
// gives no verdict.
func TestAMachineBoundCountGivesNoVerdict(t *testing.T) {
	e := Experiment{Measure: MeasureReplicas, Expected: VerdictEfficiencyFalls}
	without := sideOf(step(802, 0.97, 1, 0.45, 0.3), step(609, 0.99, 2, 0.55, 1.4))
	with := sideOf(step(433, 0.98, 1, 0.25, 0.2), step(361, 0.99, 2, 0.3, 0.25))
	if without.Steps[1].MachineBound == "" || without.Steps[0].MachineBound != "" || with.MachineBound != "" {
		t.Fatalf("machine-bound: without %q, %q; with %q", without.Steps[0].MachineBound, without.Steps[1].MachineBound, with.MachineBound)
	}
	res := Result{Without: without, With: with}
	judge(&res, e)
	if res.Verdict != VerdictMachineBound || res.Holds != nil || !strings.Contains(res.Reason, "2 replicas: the machine's CPUs were 99% busy") {
		t.Fatalf("%s (holds %v): %s", res.Verdict, res.Holds, res.Reason)
	}
	if got := holdsText(res.Holds, res.Verdict); got != "no verdict: machine-bound" {
		t.Errorf("the row says %q", got)
	}
}

// The machine's check names the machine only: replicas at their quota on
// a busy machine are the system's own bound, and a machine with CPU to
// spare bounds nothing, whatever the replicas waited.
func TestTheReplicasOwnBoundIsNotTheMachines(t *testing.T) {
	for _, tt := range []struct {
		name string
		step measure.Step
	}{
		{"at their quota on a busy machine", step(900, 0.99, 2, 0.95, 1.4)},
		{"a machine with CPU to spare", step(609, 0.6, 2, 0.55, 1.4)},
		{"waiting less than they ran", step(609, 0.99, 2, 0.55, 0.3)},
		{"nothing watched", measure.Step{ThroughputRPS: 609, MachineBusy: math.NaN(), ServerCPUCores: math.NaN(), ServerCPUWaitCores: math.NaN()}},
	} {
		if st, _ := replicaStep(2, tt.step, 400, 2); st.MachineBound != "" {
			t.Errorf("%s: %q", tt.name, st.MachineBound)
		}
	}
	// And the verdict is judged as before.
	res := Result{Without: sideOf(step(450, 0.99, 1, 0.47, 0.5), step(880, 0.99, 2, 0.93, 1.0)),
		With: sideOf(step(300, 0.7, 1, 0.2, 0.1), step(310, 0.7, 2, 0.22, 0.1))}
	judge(&res, Experiment{Measure: MeasureReplicas, Expected: VerdictEfficiencyFalls})
	if res.Verdict != VerdictEfficiencyFalls || res.Holds == nil || !*res.Holds {
		t.Fatalf("%s: %s", res.Verdict, res.Reason)
	}
}

// The cluster's PostgreSQL and the other PostgreSQL servers running here
// share a name: each keeps its own figures.
func TestProcessMetricsKeepTheConnectedServerApartFromSuspects(t *testing.T) {
	nan := math.NaN()
	m := map[string]float64{}
	processMetrics(m, "1", []measure.ProcessStep{
		{Name: "PostgreSQL", Members: 1, CPUCores: 0.14, WaitCores: 0.02, QuotaCores: 0.15},
		{Name: "PostgreSQL", Members: 3, CPUCores: 0.05, WaitCores: nan, QuotaCores: nan, Suspect: true},
	})
	want := map[string]float64{"cpu_cores@1 PostgreSQL": 0.14, "cpu_wait_cores@1 PostgreSQL": 0.02, "cpu_cores@1 PostgreSQL (not connected)": 0.05}
	if len(m) != len(want) {
		t.Fatalf("metrics %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Fatalf("metrics %v, want %v", m, want)
		}
	}
}
