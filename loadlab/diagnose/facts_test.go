package diagnose

import (
	"github.com/perfscale/perfscale/loadlab/measure"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/usl"
)

// judged runs Judge on a ramp with its own USL fit, as Run does.
func judged(t *testing.T, baseP50, baseP99 time.Duration, steps []Step, slo time.Duration) Verdict {
	t.Helper()
	pts := make([]usl.Point, 0, len(steps))
	for _, s := range steps {
		pts = append(pts, usl.Point{N: float64(s.Concurrency), X: s.ThroughputRPS})
	}
	fit, err := usl.FitPoints(pts)
	return Judge(Measurements{Baseline: Step{Concurrency: 1, P50: baseP50, P99: baseP99, Requests: 200},
		Steps: steps, Fit: fit, FitOK: err == nil, SLO: slo, Cores: 2})
}

func evidenceHas(t *testing.T, v Verdict, want ...string) {
	t.Helper()
	all := strings.Join(v.Evidence, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("evidence lacks %q:\n%s", w, all)
		}
	}
}

func evidenceLacks(t *testing.T, v Verdict, unwanted ...string) {
	t.Helper()
	all := strings.Join(v.Evidence, "\n")
	for _, w := range unwanted {
		if strings.Contains(all, w) {
			t.Errorf("evidence says %q:\n%s", w, all)
		}
	}
}

// withProcesses gives every step the same watched groups.
func withProcesses(steps []Step, ps ...ProcessStep) []Step {
	for i := range steps {
		steps[i].Processes = ps
		steps[i].ServerCPUCores, steps[i].ServerCPUWaitCores, steps[i].ServerCPUPreemptedCores = measure.ServerCPU(ps)
	}
	return steps
}

// proc is a watched group whose threads waited for a CPU only after
// being preempted (preempted: the figure of each wait that counts as
// demand); procWoken gives the part that was wake-up latency.
func proc(name string, members int, cpu, wait, quota, throttled float64) ProcessStep {
	return procWoken(name, members, cpu, wait, wait, quota, throttled)
}

func procWoken(name string, members int, cpu, wait, preempted, quota, throttled float64) ProcessStep {
	return ProcessStep{Name: name, Members: members, CPUCores: cpu, WaitCores: wait, PreemptedCores: preempted, QuotaCores: quota,
		ThrottledShare: throttled, Local: true}
}

var nan = math.NaN()

func TestVerdictNamesTheBottleneckProcess(t *testing.T) {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	flat := func() []Step {
		return ramp([]float64{300, 560, 800, 810, 805}, []float64{4, 4.5, 6, 25, 60}, nil, 0.15)
	}
	tests := []struct {
		name      string
		steps     []Step
		kind      string
		mentions  []string
		forbidden []string
	}{
		{
			name: "PostgreSQL CPU-bound behind replicas with room",
			steps: withProcesses(flat(), proc("nginx", 1, 0.08, 0.01, nan, nan), proc("shop", 4, 0.41, 0.02, 1.0, 0.02),
				proc("PostgreSQL", 1, 0.98, 0.3, nan, nan)),
			kind: KindCapacity,
			mentions: []string{"capacity: PostgreSQL is CPU-bound at the plateau (0.98 cores +0.30 waiting for a CPU",
				"shop 0.41 cores, at 0.10 of their 0.25-core quota each", "loadlab itself 0.15 cores"},
		},
		{
			name: "replicas held to their quota",
			steps: withProcesses(flat(), proc("nginx", 1, 0.05, 0, nan, nan), proc("shop", 4, 0.97, 0.5, 1.0, 0.8),
				proc("PostgreSQL", 1, 0.2, 0.01, nan, nan)),
			kind:     KindCapacity,
			mentions: []string{"the 4 shop replicas are CPU-bound at the plateau (0.97 cores, at 0.24 of their 0.25-core quota each, throttled in 80% of quota periods, held to its cgroup quota)", "PostgreSQL 0.20 cores"},
		},
		{
			// The machine's shared PostgreSQL, busy with other work and
			// not connected to the server, waits for a CPU: it is reported
			// but not the bottleneck of a server with a lock.
			name: "a busy PostgreSQL the server does not use",
			steps: withProcesses(flat(), proc("lockserver", 1, 0.05, 0.02, nan, nan),
				ProcessStep{Name: "PostgreSQL", Members: 1, CPUCores: 0.9, WaitCores: 1.5, QuotaCores: nan, ThrottledShare: nan, Local: true, Suspect: true}),
			kind:      KindContention,
			mentions:  []string{"PostgreSQL 0.90 cores +1.50 waiting for a CPU (runs here, not connected to the server)"},
			forbidden: []string{"PostgreSQL is CPU-bound"},
		},
		{
			name: "no process bound: a serial section",
			steps: withProcesses(flat(), proc("nginx", 1, 0.05, 0, nan, nan), proc("shop", 2, 0.2, 0.01, nan, nan),
				proc("PostgreSQL", 1, 0.1, 0.01, nan, nan)),
			kind:      KindContention,
			mentions:  []string{"contention: no watched process is CPU-bound; latency grows", "serial section of about 1.23 ms"},
			forbidden: []string{"is CPU-bound at the plateau"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := judged(t, ms(3.2), ms(4), tt.steps, ms(20))
			if v.Kind != tt.kind || !v.Scalability {
				t.Fatalf("kind %s (scalability %v), want %s\n%s", v.Kind, v.Scalability, tt.kind, strings.Join(v.Evidence, "\n"))
			}
			evidenceHas(t, v, tt.mentions...)
			evidenceLacks(t, v, tt.forbidden...)
		})
	}
}

// nginx with one worker serving a small file, as a new user tried it: the
// watched master showed no CPU at 45,000 req/s.
func TestVerdictDistrustsCPUThatCannotBeTheServers(t *testing.T) {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	steps := withProcesses(ramp([]float64{9000, 17000, 30000, 44000, 45000}, []float64{0.3, 0.4, 0.6, 1.2, 2.5}, nil, 0.9),
		proc("nginx", 1, 0.001, 0, nan, nan))
	v := judged(t, ms(0.1), ms(0.3), steps, ms(200))
	if !v.Facts.CPUImplausible || v.Facts.CPUKnown {
		t.Fatalf("facts %+v", v.Facts)
	}
	evidenceHas(t, v, "these CPU figures cannot be the server's")
	evidenceLacks(t, v, "the flat part comes from elsewhere", "at the plateau the server uses")
}

// Python's http.server at 32 users: p99 1,026 ms with p50 4 ms; its USL fit
// had σ = 1.311.
func TestVerdictNamesAFullAcceptQueue(t *testing.T) {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	steps := ramp([]float64{700, 690, 600, 520, 480}, []float64{2, 3, 8, 30, 60}, nil, 0.2)
	steps[4].P99, steps[4].P50 = ms(1026), ms(4)
	v := judged(t, ms(1.2), ms(2), steps, ms(200))
	if v.Facts.AcceptQueue == nil || v.Facts.AcceptQueue.Concurrency != 16 {
		t.Fatalf("accept queue not found: %+v", v.Facts.AcceptQueue)
	}
	evidenceHas(t, v, "with 16 users the p99 is 1026 ms while the median is 4.00 ms", "full accept queue", "peak at one user")
	evidenceLacks(t, v, "no peak (κ")

	// A p99 of a second with a median near it is slow work, not SYNs.
	slow := ramp([]float64{700, 690, 600, 520, 480}, []float64{2, 3, 8, 30, 60}, nil, 0.2)
	slow[4].P99, slow[4].P50 = ms(1026), ms(700)
	if v := judged(t, ms(1.2), ms(2), slow, ms(200)); v.Facts.AcceptQueue != nil {
		t.Fatalf("a slow median was taken for an accept queue")
	}
}

// Throughput that levels off has no peak: the evidence says so instead of
// printing a fitted N* of hundreds of millions.
func TestVerdictSaysNoPeakWhenKappaIsZero(t *testing.T) {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	steps := ramp([]float64{170, 170, 170, 170, 170}, []float64{6, 12, 24, 48, 96}, nil, 0.05)
	v := judged(t, ms(5), ms(6), steps, ms(40))
	evidenceHas(t, v, "no peak (κ ≈ 0")
	evidenceLacks(t, v, "N* =")
}
