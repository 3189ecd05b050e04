package procwatch

import (
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
)

// cpuLimit is the CPU quota of a process's cgroup and its enforcement
// counters. procfs finds the cgroup (/proc/PID/cgroup) and its mount
// (/proc/self/mountinfo); the control files are one number, a pair, or
// flat "key value" lines, read here.
type cpuLimit struct {
	dir     string  // the cgroup directory holding the quota
	v2      bool    // cgroup v2 (cpu.max) rather than v1 (cpu.cfs_quota_us)
	cores   float64 // the quota in cores
	periods float64 // cumulative enforcement periods
	// throttled counts the periods in which the quota ran out and the
	// group's threads were held until the next one, for throttledSeconds
	// in all.
	throttled, throttledSeconds float64
}

// cgroupMount is where one cgroup hierarchy is mounted.
type cgroupMount struct {
	root, point string
	v2          bool
}

// cpuMounts finds the mount of the v1 "cpu" controller and of the v2
// unified hierarchy.
func cpuMounts() (v1, v2 *cgroupMount) {
	self, err := procfs.Self()
	if err != nil {
		return nil, nil
	}
	mounts, err := self.MountInfo()
	if err != nil {
		return nil, nil
	}
	for _, m := range mounts {
		switch m.FSType {
		case "cgroup2":
			v2 = &cgroupMount{root: m.Root, point: m.MountPoint, v2: true}
		case "cgroup":
			if _, ok := m.SuperOptions["cpu"]; ok {
				v1 = &cgroupMount{root: m.Root, point: m.MountPoint}
			}
		}
	}
	return v1, v2
}

// limitOf finds the CPU quota that holds pid: its own cgroup's or, if that
// has none, the nearest ancestor's. ok is false when no quota applies.
func limitOf(pid int) (cpuLimit, bool) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return cpuLimit{}, false
	}
	groups, err := p.Cgroups()
	if err != nil {
		return cpuLimit{}, false
	}
	v1, v2 := cpuMounts()
	for _, g := range groups {
		var m *cgroupMount
		switch {
		case slices.Contains(g.Controllers, "cpu") && v1 != nil:
			m = v1
		case g.HierarchyID == 0 && v2 != nil:
			m = v2
		default:
			continue
		}
		rel, err := filepath.Rel(m.root, g.Path)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // the group lies outside what this mount shows
		}
		for dir := path.Join(m.point, rel); strings.HasPrefix(dir, m.point); dir = path.Dir(dir) {
			if l, ok := readLimit(dir, m.v2); ok {
				return l, true
			}
			if dir == m.point {
				break
			}
		}
	}
	return cpuLimit{}, false
}

// readLimit reads a cgroup directory's quota and counters.
func readLimit(dir string, v2 bool) (cpuLimit, bool) {
	l := cpuLimit{dir: dir, v2: v2}
	var quota, period float64
	if v2 {
		f := strings.Fields(readString(filepath.Join(dir, "cpu.max")))
		if len(f) != 2 || f[0] == "max" {
			return l, false
		}
		quota, period = parseNum(f[0]), parseNum(f[1])
	} else {
		quota = parseNum(readString(filepath.Join(dir, "cpu.cfs_quota_us")))
		period = parseNum(readString(filepath.Join(dir, "cpu.cfs_period_us")))
	}
	if !(quota > 0) || !(period > 0) {
		return l, false
	}
	l.cores = quota / period
	l.periods, l.throttled, l.throttledSeconds = l.counters()
	return l, true
}

// counters reads the cumulative periods, throttled periods and throttled
// time (NaN when unreadable): cpu.stat's throttled_usec on v2,
// throttled_time in nanoseconds on v1.
func (l cpuLimit) counters() (periods, throttled, throttledSeconds float64) {
	stat := keyed(readString(filepath.Join(l.dir, "cpu.stat")))
	p, okP := stat["nr_periods"]
	t, okT := stat["nr_throttled"]
	if !okP || !okT {
		return math.NaN(), math.NaN(), math.NaN()
	}
	throttledSeconds = math.NaN()
	if us, ok := stat["throttled_usec"]; ok {
		throttledSeconds = us / 1e6
	} else if ns, ok := stat["throttled_time"]; ok {
		throttledSeconds = ns / 1e9
	}
	return p, t, throttledSeconds
}

func readString(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func parseNum(s string) float64 {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// keyed reads a flat keyed file such as cpu.stat: "key value" lines.
func keyed(s string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		if n := parseNum(v); !math.IsNaN(n) {
			out[k] = n
		}
	}
	return out
}
