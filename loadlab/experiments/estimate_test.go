package experiments

import (
	"testing"
	"time"
)

// The issue asks the whole built-in list to run in under 20 minutes on
// this machine: its estimate, from each experiment's settings, must say
// so before anyone waits for it.
func TestTheBuiltinListRunsInUnderTwentyMinutes(t *testing.T) {
	var total time.Duration
	for _, e := range Builtin().Experiments {
		d := e.Estimate()
		if d <= 0 && e.Waits == "" {
			t.Errorf("%s (%s): no estimate", e.Name, e.Measure)
		}
		t.Logf("%-24s %-9s %s", e.Name, e.Measure, d)
		total += d
	}
	t.Logf("total %s", total)
	if total >= 20*time.Minute {
		t.Fatalf("the built-in list would take %s on a quiet machine; the issue wants under 20 minutes", total)
	}
}

func TestEstimateFollowsTheSettings(t *testing.T) {
	d := func(s string) Duration { v, _ := time.ParseDuration(s); return Duration(v) }
	serve := &Setting{Serve: "x", URL: "u"}
	up := &Setting{Up: "x", Down: "y"}
	tests := []struct {
		name string
		e    Experiment
		want time.Duration
	}{
		{"waits", Experiment{Waits: "sharding"}, 0},
		{"baseline, embedded", Experiment{Measure: MeasureBaseline, Requests: 170, Without: serve, With: serve},
			2*estServe + 2*200*estRequest},
		{"baseline, cluster", Experiment{Measure: MeasureBaseline, Requests: 170, Without: up, With: up},
			2*estUp + 2*200*estRequest},
		{"diagnose to 16 users", Experiment{Measure: MeasureDiagnose, MaxConcurrency: 16, StepDuration: d("2s")},
			2 * (estServe + estDiagnoseBaseline + 5*2*time.Second)},
		{"replicas 1, 2, 4", Experiment{Measure: MeasureReplicas, Replicas: []int{1, 2, 4}, StepDuration: d("4s"), Warmup: d("1s")},
			6 * (estUp + time.Second + 4*time.Second)},
		{"replicas 1, 2 with 3 s of warm-up", Experiment{Measure: MeasureReplicas, Replicas: []int{1, 2}, StepDuration: d("4s"), Warmup: d("3s")},
			4 * (estUp + 3*time.Second + 4*time.Second)},
		{"scaleout 1, 2", Experiment{Measure: MeasureScaleout, Replicas: []int{1, 2}, ProbeDuration: d("3s")},
			4 * (estUp + estProbes*(3*time.Second+estProbeDrain))},
		// 512 users made at 50 req/s take 11 s of warm-up at the first
		// count, 8 s more than a probe's.
		{"scaleout 1, 2 over 512 users", Experiment{Measure: MeasureScaleout, Replicas: []int{1, 2}, ProbeDuration: d("3s"), Users: 512},
			4*(estUp+estProbes*(3*time.Second+estProbeDrain)) + 2*8*time.Second},
		{"vertical", Experiment{Measure: MeasureVertical, Replicas: []int{1, 2}, CPUs: []float64{0.5, 1}, ProbeDuration: d("1.5s")},
			4 * (estUp + estProbes*(1500*time.Millisecond+estProbeDrain))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.e.Estimate(); got != tt.want {
				t.Fatalf("Estimate() = %s, want %s", got, tt.want)
			}
		})
	}
}
