package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/procwatch"
)

// watchFlags collects --watch NAME=PID and --watch NAME=METRICS_URL.
type watchFlags []string

func (w *watchFlags) String() string { return strings.Join(*w, ", ") }
func (w *watchFlags) Set(v string) error {
	name, target, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(name) == "" || strings.TrimSpace(target) == "" {
		return fmt.Errorf("%q must look like NAME=PID or NAME=METRICS_URL", v)
	}
	*w = append(*w, v)
	return nil
}

// watchSet builds what to watch: the processes and endpoints given (the
// same NAME given twice is one group of replicas), or, with none given and
// a local target, the processes discovered from the target's port.
func watchSet(ctx context.Context, target string, given watchFlags) (*procwatch.Set, []string, error) {
	if len(given) > 0 {
		var groups []procwatch.Group
		pids := map[string][]int{}
		var order []string
		for _, w := range given {
			name, value, _ := strings.Cut(w, "=")
			name, value = strings.TrimSpace(name), strings.TrimSpace(value)
			if pid, err := strconv.Atoi(value); err == nil {
				if pid <= 0 {
					return nil, nil, fmt.Errorf("--watch %s: %d is not a process id", w, pid)
				}
				if _, seen := pids[name]; !seen {
					order = append(order, name)
				}
				pids[name] = append(pids[name], pid)
				continue
			}
			if err := load.CheckURL(value); err != nil {
				return nil, nil, fmt.Errorf("--watch %s: give a process id or a metrics URL: %v", w, err)
			}
			groups = append(groups, procwatch.ByMetrics(name, value))
		}
		for _, name := range order {
			g, err := procwatch.ByPID(name, pids[name]...)
			if err != nil {
				return nil, nil, err
			}
			groups = append(groups, g)
		}
		set := procwatch.NewSet(groups...)
		if _, err := set.Sample(ctx); err != nil {
			return nil, nil, err
		}
		return set, watching(set), nil
	}
	set, note := measure.Discover(target, true)
	if note != "" {
		return set, []string{note + ": verdict from throughput and latency alone"}, nil
	}
	return set, watching(set), nil
}

// watching is the set's groups as lines to print.
func watching(set *procwatch.Set) []string {
	var out []string
	for _, d := range set.Describe() {
		out = append(out, "watching "+d)
	}
	return out
}
