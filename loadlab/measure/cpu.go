package measure

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// Thresholds for calling a process group CPU-bound, named so the rules
// read as they are documented.
const (
	// CPUBoundShare: a group using this share of the cores left to it is
	// CPU-bound.
	CPUBoundShare = 0.75
	// MachineSaturated and MajorShare: on a machine whose CPUs are this
	// busy, a group using at least MajorShare of the cores left to it is
	// CPU-bound too: it is taking what it can get, and other work (other
	// processes, noisy neighbours) holds the rest.
	MachineSaturated = 0.9
	MajorShare       = 0.5
	// QuotaBound and QuotaThrottled: a group held to a cgroup CPU quota is
	// CPU-bound at its quota when it uses QuotaBound of it, or MajorShare
	// of it while the quota ran out in QuotaThrottled of its periods.
	QuotaBound     = 0.75
	QuotaThrottled = 0.25
)

// Load is what a process group (or the whole server) used over one or
// more steps: medians, in cores. Unknown figures are NaN.
type Load struct {
	Name    string // "" for the server as a whole
	Members int
	CPU     float64
	Wait    float64 // run-queue wait
	// Preempted is the part of Wait that followed a preemption: CPU it
	// wanted to go on using (the rest is a busy machine's wake-up
	// latency, not demand).
	Preempted float64
	// Available is what it could have had: its cgroup quota, or the cores
	// the generator and the other watched processes left it.
	Available   float64
	Quota       float64
	Throttled   float64 // share of quota periods in which the quota ran out
	MachineBusy float64
	Bound       bool // CPU-bound (see IsCPUBound and QuotaBound)
	// Suspect: runs here but the server side was not seen connecting to
	// it; reported, never named the bottleneck.
	Suspect bool
}

// AtQuota reports whether the group is held by a cgroup quota.
func (l Load) AtQuota() bool { return !math.IsNaN(l.Quota) }

// IsCPUBound reports whether a server using serverCPU of the available
// cores is CPU-bound: it uses most of them; or, on a saturated machine, it
// takes a major share while other work holds the rest; or it wanted them
// (used the CPU, or was preempted and waited in the run queue to go on
// using it: preempted is NaN where unknown) even though other work kept it
// from getting them. The wait of threads that blocked and were woken
// does not count: on a busy machine every hand-off waits its turn, and a
// service whose requests wait on a lock wakes a thread for each.
func IsCPUBound(serverCPU, preempted, available, machineBusy float64) bool {
	return serverCPU >= CPUBoundShare*available ||
		(machineBusy >= MachineSaturated && serverCPU >= MajorShare*available) ||
		(!math.IsNaN(preempted) && serverCPU+preempted >= CPUBoundShare*available)
}

// BottleneckOf names the CPU-bound process group of a single step (as a
// scale-out capacity probe measures it), with every group's load.
func BottleneckOf(s Step, cores float64) (*Load, []Load) {
	loads := ProcessLoads([]Step{s}, cores)
	return Bottleneck(loads), loads
}

// ProcessLoads is each watched group over the steps: medians, with the CPU
// each could have had (its quota, or what the generator and the other
// groups left it) and whether it is CPU-bound.
func ProcessLoads(steps []Step, cores float64) []Load {
	if len(steps) == 0 {
		return nil
	}
	// Every group seen at any step, in the order first seen; a group
	// found during the steps counts from the steps that carry it. A group
	// is its name and whether it is a suspect: the PostgreSQL the target
	// connects to and the other PostgreSQL servers running here (another
	// cluster's, the machine's) share the name, and keyed by name alone
	// one hid the other.
	var keys []groupKey
	members := map[groupKey]int{}
	for _, s := range steps {
		for _, p := range s.Processes {
			k := groupKey{p.Name, p.Suspect}
			if _, ok := members[k]; !ok {
				keys = append(keys, k)
			}
			members[k] = p.Members
		}
	}
	var out []Load
	for _, k := range keys {
		if l, ok := groupLoad(steps, k, members[k]); ok {
			l.Suspect = k.suspect
			out = append(out, l)
		}
	}
	var total float64
	for _, l := range out {
		total += l.CPU
	}
	for i := range out {
		l := &out[i]
		if l.AtQuota() {
			l.Available = l.Quota
			l.Bound = l.CPU >= QuotaBound*l.Quota || (!math.IsNaN(l.Throttled) && l.Throttled >= QuotaThrottled && l.CPU >= MajorShare*l.Quota)
			continue
		}
		// What the generator (its CPU is in Available until here) and the
		// other watched processes left this one.
		l.Available = math.Max(cores-l.Available-(total-l.CPU), 0.1)
		l.Bound = IsCPUBound(l.CPU, l.Preempted, l.Available, l.MachineBusy)
	}
	return out
}

// groupKey names a watched group across steps.
type groupKey struct {
	name    string
	suspect bool
}

// groupLoad is one group's medians over the steps that measured it with
// all its members; Available holds the generator's CPU until the caller
// turns it into what was left to the group.
func groupLoad(steps []Step, k groupKey, members int) (Load, bool) {
	var cpu, wait, preempted, quota, thr, busy, gen []float64
	for _, s := range steps {
		i := slices.IndexFunc(s.Processes, func(p ProcessStep) bool { return p.Name == k.name && p.Suspect == k.suspect })
		if i < 0 || s.Processes[i].Members != members {
			continue // missing, or measured with fewer members
		}
		p := s.Processes[i]
		cpu = append(cpu, p.CPUCores)
		gen = append(gen, s.GeneratorCPUCores)
		for _, v := range []struct {
			dst *[]float64
			x   float64
		}{{&wait, p.WaitCores}, {&preempted, p.PreemptedCores}, {&quota, p.QuotaCores}, {&thr, p.ThrottledShare}, {&busy, s.MachineBusy}} {
			if !math.IsNaN(v.x) {
				*v.dst = append(*v.dst, v.x)
			}
		}
	}
	if len(cpu) == 0 {
		return Load{}, false
	}
	return Load{Name: k.name, Members: members, CPU: Median(cpu), Wait: MedianOrNaN(wait), Preempted: MedianOrNaN(preempted),
		Quota: MedianOrNaN(quota), Throttled: MedianOrNaN(thr), MachineBusy: MedianOrNaN(busy), Available: Median(gen)}, true
}

// Bottleneck is the CPU-bound group closest to its limit (nil when none
// is bound); suspects never are.
func Bottleneck(loads []Load) *Load {
	var best *Load
	score := func(l *Load) float64 {
		w := l.Preempted
		if math.IsNaN(w) || l.AtQuota() {
			w = 0
		}
		return (l.CPU + w) / l.Available
	}
	for i := range loads {
		if loads[i].Bound && !loads[i].Suspect && (best == nil || score(&loads[i]) > score(best)) {
			best = &loads[i]
		}
	}
	return best
}

// Who names a group in prose: "the server", "PostgreSQL", "the 4 shop
// replicas".
func (l Load) Who() string {
	switch {
	case l.Name == "":
		return "the server"
	case l.Members > 1:
		return fmt.Sprintf("the %d %s replicas", l.Members, l.Name)
	}
	return l.Name
}

// Describe is a group's load in a few words: "0.98 cores (+0.20 waiting
// for a CPU)", "0.24 of its 0.25-core quota, throttled in 80% of periods".
func (l Load) Describe() string {
	var b strings.Builder
	if l.AtQuota() {
		if l.Members > 1 {
			per := l.Quota / float64(l.Members)
			fmt.Fprintf(&b, "%.2f cores, at %.2f of their %.2f-core quota each", l.CPU, l.CPU/float64(l.Members), per)
		} else {
			fmt.Fprintf(&b, "%.2f of its %.2f-core quota", l.CPU, l.Quota)
		}
		if !math.IsNaN(l.Throttled) {
			fmt.Fprintf(&b, ", throttled in %.0f%% of quota periods", 100*l.Throttled)
		}
		return b.String()
	}
	fmt.Fprintf(&b, "%.2f cores", l.CPU)
	if l.Members > 1 {
		fmt.Fprintf(&b, " (%.2f each)", l.CPU/float64(l.Members))
	}
	if !math.IsNaN(l.Wait) && l.Wait >= 0.05 {
		fmt.Fprintf(&b, " +%.2f waiting for a CPU", l.Wait)
	}
	return b.String()
}

// MedianOrNaN is the median, NaN for no values.
func MedianOrNaN(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return Median(v)
}

// Median is the median of v (which it does not reorder); v must not be
// empty.
func Median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// StarvedWait is the run-queue wait, in cores, that can starve a system:
// half a core's worth of its threads waiting for a CPU all along. The
// virtual-clock test system of loadlab/scaleout, overloaded on its own,
// came with 0.2 to 0.3 (its processes then queued behind its virtual
// clock, not for a CPU); four 0.2-core replicas of it, starved beside two
// CPU hogs, with 1.1 to 3.5.
const StarvedWait = 0.5

// Starved reports whether the machine, not the system, held a step's
// server side back: the machine's CPUs were busy (MachineSaturated), no
// watched group was CPU-bound at its cgroup quota (which would explain
// the step by the system's own size), and the watched processes waited
// for a CPU longer than they ran, at least StarvedWait (CPUWait: where
// their own wait is not known, the machine's). loadlab's own wait is not
// in it: the generator has checks of its own.
func Starved(s Step, cores float64) bool {
	if math.IsNaN(s.MachineBusy) || s.MachineBusy < MachineSaturated || len(s.Processes) == 0 {
		return false
	}
	for _, l := range ProcessLoads([]Step{s}, cores) {
		if l.AtQuota() && l.Bound && !l.Suspect {
			return false
		}
	}
	wait, _ := s.CPUWait()
	return !math.IsNaN(wait) && !math.IsNaN(s.ServerCPUCores) && wait > max(s.ServerCPUCores, StarvedWait)
}

// CPUWait is the run-queue wait, in cores, that Starved weighs: the
// watched processes' own (ServerCPUWaitCores) when known, else the
// machine's (MachineWaitCores, from a Prometheus' node exporter), which
// holds theirs and any other work's: all of it is theirs when they have
// the machine to themselves. machine says it is the machine's. NaN when
// neither is known.
func (s Step) CPUWait() (cores float64, machine bool) {
	if !math.IsNaN(s.ServerCPUWaitCores) {
		return s.ServerCPUWaitCores, false
	}
	return s.MachineWaitCores, !math.IsNaN(s.MachineWaitCores)
}

// WaitedText is the wait of Starved's reason, to follow "the server's
// processes used 0.03 cores and": "waited for a CPU 0.88 cores' worth",
// or, where only the machine's wait is known, "the machine's threads (of
// every process; the server's own wait is not known) waited for a CPU
// 0.95 cores' worth". whose names the watched processes'.
func (s Step) WaitedText(whose string) string {
	wait, machine := s.CPUWait()
	if machine {
		return fmt.Sprintf("the machine's threads (of every process; %s own wait is not known) waited for a CPU %.2f cores' worth", whose, wait)
	}
	return fmt.Sprintf("waited for a CPU %.2f cores' worth", wait)
}
