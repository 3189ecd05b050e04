package report

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/load"
)

func TestRunProgress(t *testing.T) {
	s := load.Snapshot{Elapsed: 3 * time.Second, Requests: 600, Errors: 2, RateRPS: 200, P99: 1500 * time.Microsecond}
	line := RunProgress(s)
	for _, want := range []string{"3s", "200 req/s", "p99 1.50ms", "requests 600", "errors 2"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "SATURATED") {
		t.Errorf("progress line %q: saturated without cause", line)
	}
	s.Saturated = true
	if line := RunProgress(s); !strings.Contains(line, "GENERATOR SATURATED") {
		t.Errorf("progress line %q does not say the generator is saturated", line)
	}
}

// One user is said in the singular ("baseline   1 users" before), the
// columns aligned with the steps' lines.
func TestDiagnoseProgressSaysOneUser(t *testing.T) {
	nan := math.NaN()
	step := func(n int) string {
		return DiagnoseProgress("ramp", diagnose.Step{Concurrency: n, ThroughputRPS: 100, ServerCPUCores: nan, ServerCPUWaitCores: nan, ServerInFlight: nan})
	}
	one, two := step(1), step(2)
	if !strings.Contains(one, "  1 user   ") || !strings.Contains(two, "  2 users  ") || strings.Index(one, "req/s") != strings.Index(two, "req/s") {
		t.Errorf("progress lines:\n%s\n%s", one, two)
	}
}
