// Command cpuquota runs a program held to a CPU quota in a cgroup of its
// own, for scripts that measure one process on a machine it shares with
// its load generator (scripts/overload.sh holds the embedded shop to a
// tenth of a core, so that loadlab, on the rest of the machine, can offer
// it ten times what it serves):
//
//	cpuquota run [--period D] CORES CGROUP PROGRAM [ARGS...]
//	cpuquota remove CGROUP
//
// --period is the quota's enforcement period (default the kernel's usual
// 100 ms; at least 1 ms, at most 1 s): a quota is spent in bursts, and
// once a period's share is gone the program waits for the next period, so
// 0.1 core over 100 ms can stall a request 90 ms however light the load,
// and over 10 ms at most 9 ms (scripts/overload.sh uses 10 ms).
//
// run makes the cgroup CGROUP (a path below the machine's CPU hierarchy,
// made with internal/supervise as the cluster's replicas' are), joins it
// and then becomes PROGRAM (same pid), so nothing of the program runs
// outside the quota. A Go program gets the GOMAXPROCS the cluster gives
// its replicas under a quota (supervise.GoMaxProcs) unless the
// environment sets one. remove removes the cgroup once its processes are
// gone. Root is needed, as for the cluster's --cpu.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/perfscale/perfscale/internal/supervise"
)

const usage = "usage: cpuquota run [--period D] CORES CGROUP PROGRAM [ARGS...] | cpuquota remove CGROUP"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cpuquota:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return errors.New(usage)
	}
	switch args[0] {
	case "run":
		var period time.Duration
		if len(args) > 1 && args[1] == "--period" {
			if len(args) < 3 {
				return errors.New(usage)
			}
			var err error
			if period, err = parsePeriod(args[2]); err != nil {
				return err
			}
			args = append(args[:1:1], args[3:]...)
		}
		if len(args) < 4 {
			return errors.New(usage)
		}
		cores, err := parseCores(args[1])
		if err != nil {
			return err
		}
		return runIn(supervise.Limit{Cores: cores, Period: period}, args[2], args[3], args[4:])
	case "remove":
		if len(args) != 2 {
			return errors.New(usage)
		}
		return remove(args[1])
	}
	return errors.New(usage)
}

// parseCores reads a quota in cores: more than 0, at most the machine's.
func parseCores(s string) (float64, error) {
	cores, err := strconv.ParseFloat(s, 64)
	if err != nil || !(cores > 0) || cores > 1024 {
		return 0, fmt.Errorf("CORES %q: want a number of cores above 0, such as 0.5", s)
	}
	return cores, nil
}

// parsePeriod reads a quota's period: from 1 ms to 1 s, the kernel's
// bounds for cpu.cfs_period_us.
func parsePeriod(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Millisecond || d > time.Second {
		return 0, fmt.Errorf("--period %q: want a duration from 1ms to 1s, such as 10ms", s)
	}
	return d, nil
}

// cgroupRel checks a cgroup name: a relative path that stays below the
// hierarchy's root.
func cgroupRel(name string) (string, error) {
	rel := filepath.Clean(name)
	if name == "" || filepath.IsAbs(name) || rel == "." || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("CGROUP %q: want a relative path below the cgroup hierarchy, such as perfscale-overload-1/shop", name)
	}
	return rel, nil
}

// runIn makes the cgroup, joins it and becomes the program.
func runIn(limit supervise.Limit, name, program string, args []string) error {
	rel, err := cgroupRel(name)
	if err != nil {
		return err
	}
	path, err := exec.LookPath(program)
	if err != nil {
		return err
	}
	h, err := supervise.CPUHierarchy()
	if err != nil {
		return err
	}
	cg, err := h.Create(rel, limit)
	if err != nil {
		return err
	}
	if err := cg.Add(os.Getpid()); err != nil {
		return err
	}
	env := os.Environ()
	if os.Getenv("GOMAXPROCS") == "" {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(supervise.GoMaxProcs(limit.Cores)))
	}
	return syscall.Exec(path, append([]string{program}, args...), env)
}

// remove removes the cgroup, waiting a little for a killed process to be
// reaped out of it.
func remove(name string) error {
	rel, err := cgroupRel(name)
	if err != nil {
		return err
	}
	h, err := supervise.CPUHierarchy()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return supervise.Open(filepath.Join(h.Root, rel)).Remove(ctx)
}
