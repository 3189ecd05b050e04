package supervise

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// Hierarchy is where CPU-limited cgroups can be made: the cgroup v2
// unified hierarchy when its cpu controller is available, else the
// cgroup v1 cpu controller's mount.
type Hierarchy struct {
	Root string // its mount point, e.g. /sys/fs/cgroup or /sys/fs/cgroup/cpu
	V2   bool
}

func (h Hierarchy) String() string {
	if h.V2 {
		return "v2 " + h.Root
	}
	return "v1 " + h.Root
}

// ErrNoCPUController is returned where no cgroup can hold a CPU quota.
var ErrNoCPUController = errors.New("the cgroup cpu controller is not available on this machine")

// CPUHierarchy finds the machine's CPU cgroup hierarchy: v2 if its root
// offers the cpu controller, else v1's cpu mount (from mountinfo).
func CPUHierarchy() (Hierarchy, error) {
	self, err := procfs.Self()
	if err != nil {
		return Hierarchy{}, err
	}
	mounts, err := self.MountInfo()
	if err != nil {
		return Hierarchy{}, err
	}
	var v1 string
	for _, m := range mounts {
		switch m.FSType {
		case "cgroup2":
			if b, err := os.ReadFile(filepath.Join(m.MountPoint, "cgroup.controllers")); err == nil &&
				hasWord(string(b), "cpu") && m.Root == "/" {
				return Hierarchy{Root: m.MountPoint, V2: true}, nil
			}
		case "cgroup":
			if _, ok := m.SuperOptions["cpu"]; ok && v1 == "" && m.Root == "/" {
				v1 = m.MountPoint
			}
		}
	}
	if v1 != "" {
		return Hierarchy{Root: v1}, nil
	}
	return Hierarchy{}, ErrNoCPUController
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// Limit is what a cgroup holds its processes to.
type Limit struct {
	// Cores is the CPU quota in cores; 0 is no quota.
	Cores float64
	// Period is the quota's enforcement period; 0 is the kernel's usual
	// 100 ms, lengthened where needed so the quota is at least the
	// kernel's 1 ms minimum.
	Period time.Duration
	// Weight is the group's CPU weight against its siblings, 1 to 10000
	// (v2's cpu.weight; v1 gets cpu.shares of weight*1024/100); 0 leaves
	// the default (100).
	Weight int
}

// QuotaMicros is the quota and period in microseconds as the kernel takes
// them; quota is -1 without one.
func (l Limit) QuotaMicros() (quota, period int64) {
	period = 100000
	if l.Period > 0 {
		period = l.Period.Microseconds()
	}
	if l.Cores <= 0 {
		return -1, period
	}
	period = max(period, int64(math.Ceil(1000/l.Cores)))
	return int64(math.Round(l.Cores * float64(period))), period
}

// Cgroup is one cgroup directory.
type Cgroup struct {
	Dir string
	V2  bool
}

// Open names an existing cgroup directory (v2 if it has cpu.max).
func Open(dir string) Cgroup {
	_, err := os.Stat(filepath.Join(dir, "cpu.max"))
	return Cgroup{Dir: dir, V2: err == nil}
}

// Create makes the cgroup rel (a path below the hierarchy's root; its
// parents are made too) and sets its limit. On v2 the cpu controller is
// enabled for the children of every level on the way.
func (h Hierarchy) Create(rel string, l Limit) (Cgroup, error) {
	dir := filepath.Join(h.Root, rel)
	if h.V2 {
		// Each level below the root must hand the cpu controller down.
		parts := strings.Split(filepath.Clean(rel), string(filepath.Separator))
		parent := h.Root
		for _, p := range parts {
			if err := enableCPU(parent); err != nil {
				return Cgroup{}, err
			}
			parent = filepath.Join(parent, p)
			if err := mkdir(parent); err != nil {
				return Cgroup{}, err
			}
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return Cgroup{}, fmt.Errorf("cannot create cgroup %s (root needed): %w", dir, err)
	}
	c := Cgroup{Dir: dir, V2: h.V2}
	return c, c.Set(l)
}

func mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cannot create cgroup %s (root needed): %w", dir, err)
	}
	return nil
}

func enableCPU(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err == nil && hasWord(string(b), "cpu") {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpu"), 0o644); err != nil {
		return fmt.Errorf("cannot enable the cpu controller in %s: %w", dir, err)
	}
	return nil
}

// Set writes the limit.
func (c Cgroup) Set(l Limit) error {
	quota, period := l.QuotaMicros()
	var files [][2]string
	if c.V2 {
		max := "max"
		if quota > 0 {
			max = strconv.FormatInt(quota, 10)
		}
		files = append(files, [2]string{"cpu.max", max + " " + strconv.FormatInt(period, 10)})
		if l.Weight > 0 {
			files = append(files, [2]string{"cpu.weight", strconv.Itoa(l.Weight)})
		}
	} else {
		// The period first: the kernel checks the quota against it.
		files = append(files, [2]string{"cpu.cfs_period_us", strconv.FormatInt(period, 10)},
			[2]string{"cpu.cfs_quota_us", strconv.FormatInt(quota, 10)})
		if l.Weight > 0 {
			files = append(files, [2]string{"cpu.shares", strconv.Itoa(l.Weight * 1024 / 100)})
		}
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(c.Dir, f[0]), []byte(f[1]), 0o644); err != nil {
			return fmt.Errorf("cgroup %s: %s: %w", c.Dir, f[0], err)
		}
	}
	return nil
}

// Quota reads the CPU quota as the kernel holds it; limited is false
// without one.
func (c Cgroup) Quota() (cores float64, limited bool, err error) {
	var quota, period float64
	if c.V2 {
		b, err := os.ReadFile(filepath.Join(c.Dir, "cpu.max"))
		if err != nil {
			return 0, false, err
		}
		f := strings.Fields(string(b))
		if len(f) != 2 {
			return 0, false, fmt.Errorf("cgroup %s: cpu.max %q", c.Dir, b)
		}
		if f[0] == "max" {
			return 0, false, nil
		}
		quota, _ = strconv.ParseFloat(f[0], 64)
		period, _ = strconv.ParseFloat(f[1], 64)
	} else {
		q, err := readNumber(filepath.Join(c.Dir, "cpu.cfs_quota_us"))
		if err != nil {
			return 0, false, err
		}
		p, err := readNumber(filepath.Join(c.Dir, "cpu.cfs_period_us"))
		if err != nil {
			return 0, false, err
		}
		quota, period = q, p
	}
	if quota <= 0 || period <= 0 {
		return 0, false, nil
	}
	return quota / period, true, nil
}

func readNumber(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
}

// Add moves a running process into the cgroup. A process started by
// Start is in its cgroup from the beginning; Add is for one started
// otherwise.
func (c Cgroup) Add(pid int) error {
	if err := os.WriteFile(filepath.Join(c.Dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("cgroup %s: add pid %d: %w", c.Dir, pid, err)
	}
	return nil
}

// Procs lists the pids in the cgroup.
func (c Cgroup) Procs() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Remove removes the cgroup and any below it. A killed process stays in
// its cgroup until it is reaped (by whoever adopted it), so a directory
// may be busy for a moment: Remove tries again until ctx ends. A cgroup
// that does not exist is removed already.
func (c Cgroup) Remove(ctx context.Context) error {
	entries, err := os.ReadDir(c.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := (Cgroup{Dir: filepath.Join(c.Dir, e.Name()), V2: c.V2}).Remove(ctx); err != nil {
				return err
			}
		}
	}
	for {
		err := os.Remove(c.Dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("could not remove cgroup %s: %w", c.Dir, err)
		case <-time.After(poll):
		}
	}
}

// GoMaxProcs is the GOMAXPROCS for a Go process held to cores: the quota
// rounded up, at least 1. Go's own default under a quota is at least 2,
// which lets a 0.25-core process run two threads into its quota and be
// throttled (docs/cluster.md has the measurement).
func GoMaxProcs(cores float64) int {
	return max(1, int(math.Ceil(cores-1e-9)))
}
