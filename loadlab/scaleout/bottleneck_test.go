package scaleout

import (
	"math"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/loadlab/measure"
)

// Measured on the local cluster at load 20: no process used its share, and
// all of them queued for a CPU; the column names the machine, not "a
// serial section".
func TestBottleneckNamesAMachineHeldByOtherWork(t *testing.T) {
	nan := math.NaN()
	procs := []measure.ProcessStep{
		{Name: "nginx", Members: 1, CPUCores: 0.02, WaitCores: 0.10, QuotaCores: nan, ThrottledShare: nan, Local: true},
		{Name: "shop", Members: 2, CPUCores: 0.06, WaitCores: 0.02, QuotaCores: 0.5, ThrottledShare: 0, Local: true},
		{Name: "PostgreSQL", Members: 1, CPUCores: 0.11, WaitCores: 0.59, QuotaCores: nan, ThrottledShare: nan, Local: true},
		// The monitoring, as --prometheus lists it.
		{Name: "prometheus", Members: 1, CPUCores: 0.02, WaitCores: nan, QuotaCores: nan, ThrottledShare: nan, Suspect: true},
	}
	step := measure.Step{Processes: procs, ServerCPUCores: 0.19, ServerCPUWaitCores: 0.71, MachineBusy: 1, GeneratorCPUCores: 0.07}
	c := Capacity{RPS: 63}
	got := bottleneckText(step, c, Config{Cores: 2, SLO: 50e6})
	if !strings.HasPrefix(got, "the machine's CPU, held by other work (100% busy)") {
		t.Fatalf("bottleneck %q", got)
	}
	// The same figures on an idle machine: a limit that is not CPU, with
	// the monitoring listed as not counted.
	step.MachineBusy = 0.4
	if got := bottleneckText(step, c, Config{Cores: 2, SLO: 50e6}); !strings.HasPrefix(got, "no process CPU-bound") ||
		!strings.Contains(got, "prometheus 0.02 cores (not counted)") {
		t.Fatalf("bottleneck %q", got)
	}
}
