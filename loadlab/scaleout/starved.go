package scaleout

import (
	"fmt"
	"time"

	"github.com/perfscale/perfscale/loadlab/measure"
)

// A probe fails when the system cannot serve its rate, or when the
// machine did not give the system the CPU it asked for: other work held
// the CPUs while the system's processes, none at its quota, queued for
// one. The second is no bound on the system's capacity. On the 2-core
// machine beside two CPU hogs, four 0.2-core replicas of the known-linear
// test system measured about 200 of their 360 req/s that way, the
// failing probes' processes using 0.50 cores and waiting for a CPU 3.52
// cores' worth. Such a probe is measured again, and a count whose
// capacity it still bounds is not to be trusted (contradictions).

// starvation says why a probe's failure is the machine's (the empty string
// when it is not): measure.Starved (the machine's CPUs busy, no watched
// group at its cgroup quota, the watched processes waiting for a CPU
// longer than they ran). (loadlab's own wait is the generator check's:
// its lateness is in the latencies it reports, and a probe it explains is
// tried again and, as the bound, named; counting it here as well marked
// the virtual-clock system's overloads, at its known capacity, as the
// machine's at a load average of 37 to 40.) The wait must also be able to
// move the p99 past the SLO: the threads' wait per answer, about what
// each request was held on its way through the system, at least a
// twentieth of the SLO. The starved 4-replica probes came with 17 ms an
// answer against a 200 ms SLO; the virtual-clock system's own overloads at
// a load average of 36, weighted, with 3 to 5 ms.
func starvation(s measure.Step, cores float64, slo time.Duration) string {
	if !measure.Starved(s, cores) || s.ThroughputRPS <= 0 {
		return ""
	}
	wait, _ := s.CPUWait()
	perAnswer := time.Duration(wait / s.ThroughputRPS * float64(time.Second))
	if perAnswer < slo/20 {
		return ""
	}
	return fmt.Sprintf("the machine's CPUs were %.0f%% busy and the system's processes, none at a quota, used %.2f cores and %s (%s an answer)",
		100*s.MachineBusy, s.ServerCPUCores, s.WaitedText("their"), measure.FormatMS(perAnswer))
}
