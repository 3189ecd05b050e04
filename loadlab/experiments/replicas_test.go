package experiments

import (
	"math"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/loadlab/load"
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

// failing is a count where share of the requests failed, mostly with
// status (cause its text).
func failing(m measure.Step, share float64, status int, cause string) measure.Step {
	m.Errors = int64(share * float64(m.Requests))
	m.Load = &load.Result{Endpoints: []load.Endpoint{{Name: "cart", Errors: load.EndpointErrors{
		Causes: []load.Cause{{Cause: cause, Status: status, Count: m.Errors}}}}}}
	return m
}

// local-sessions in the run of 2026-12-07 01:02 UTC (2 replicas of 0.5
// core): both sides' 2-replica counts were machine-bound (92% busy),
// and with the switch 12.4% of the requests failed with 401, a session
// the other replica did not know. A busy machine makes requests slow,
// refused or timed out, not a session unknown: the verdict on errors
// of that kind stands on a machine-bound count. Errors a starved machine
// does make (503, 429) give no verdict there, as the efficiencies do not.
func TestClientErrorsTheLoadDoesNotMakeStandOnAMachineBoundCount(t *testing.T) {
	e := Experiment{Measure: MeasureReplicas, Expected: VerdictFailsToScaleOut}
	without := func() *Side { return sideOf(step(3025, 0.85, 1, 0.5, 0.3), step(2859, 0.92, 2, 0.7, 5.68)) }
	for _, tt := range []struct {
		status int
		cause  string
		want   string
	}{
		{401, "401 Unauthorized", VerdictFailsToScaleOut},
		{404, "404 Not Found", VerdictFailsToScaleOut},
		{503, "503 Service Unavailable", VerdictMachineBound},
		{429, "429 Too Many Requests", VerdictMachineBound},
		{408, "408 Request Timeout", VerdictMachineBound},
		{0, "timeout after 5s", VerdictMachineBound},
	} {
		with := sideOf(step(2951, 0.85, 1, 0.5, 0.3), failing(step(3909, 0.92, 2, 0.7, 5.68), 0.124, tt.status, tt.cause))
		if with.MachineBound == "" || with.Steps[1].ErrorStatus != tt.status || !strings.Contains(with.Steps[1].Bottleneck, "most "+tt.cause) {
			t.Fatalf("%s: the count %+v", tt.cause, with.Steps[1])
		}
		res := Result{Without: without(), With: with}
		judge(&res, e)
		if res.Verdict != tt.want {
			t.Errorf("%s: %s, want %s (%s)", tt.cause, res.Verdict, tt.want, res.Reason)
			continue
		}
		if tt.want == VerdictFailsToScaleOut && (res.Holds == nil || !*res.Holds || !strings.Contains(res.Reason, "machine-bound")) {
			t.Errorf("%s: holds %v, reason %q", tt.cause, res.Holds, res.Reason)
		}
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
