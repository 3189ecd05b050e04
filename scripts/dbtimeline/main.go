// Command dbtimeline records, second by second, what a cluster's CPU
// quotas and database servers did, and prints it beside the probes of a
// capacity search that failed, so a failed probe shows whether the
// database was throttled or maintaining its tables then
// (scripts/bench-shards.sh runs it beside each loadlab scaleout):
//
//	dbtimeline watch STATE OUT
//	dbtimeline failed PROBE TIMELINE < STAMPED-LOG
//
// watch reads the process records of the cluster in the state directory
// STATE (scripts/cluster.sh --state-dir) once a second until it is
// stopped (SIGINT, SIGTERM) and appends a line a second to OUT: for each
// process in a cgroup, its throttled periods of the second's periods
// (cpu.stat), and for each database server the autovacuum runs
// (vacuum, analyze, with their tables) and checkpoints its log gained
// (what the logs held when watch started is skipped). A cluster
// restarted in the same directory is followed: counters and logs start
// again with the new processes.
//
// failed reads a log whose lines start with an RFC 3339 time (the
// search's progress lines, stamped as they were written) and prints each
// probe line that did not meet the SLO (warm-ups, not counted, left out)
// followed by the timeline's lines of its PROBE (a duration: the probe's
// length) and the second before.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/perfscale/perfscale/internal/supervise"
)

const usage = "usage: dbtimeline watch STATE OUT | dbtimeline failed PROBE TIMELINE < STAMPED-LOG"

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dbtimeline:", err)
		os.Exit(2)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	switch {
	case len(args) == 3 && args[0] == "watch":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return watch(ctx, supervise.Dir(args[1]), args[2], time.Tick(time.Second))
	case len(args) == 3 && args[0] == "failed":
		probe, err := time.ParseDuration(args[1])
		if err != nil {
			return fmt.Errorf("PROBE: %w", err)
		}
		timeline, err := os.ReadFile(args[2])
		if err != nil {
			return err
		}
		return failed(stdin, string(timeline), probe, stdout)
	}
	return fmt.Errorf("%s", usage)
}

// watch appends a line to out at each tick until ctx ends.
func watch(ctx context.Context, state supervise.Dir, out string, tick <-chan time.Time) error {
	f, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	s := newSampler()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick:
			records, err := state.List()
			if err != nil {
				return fmt.Errorf("read the cluster's records in %s: %w", state, err)
			}
			if line := s.sample(records); line != "" {
				if _, err := fmt.Fprintf(f, "%s %s\n", now.UTC().Format(time.RFC3339), line); err != nil {
					return err
				}
			}
		}
	}
}

// sampler keeps what the last sample read: each process's cpu.stat
// counters (by name and pid) and how far each server's log was read.
type sampler struct {
	counters map[string]throttling
	logRead  map[string]int64
	// primed is set after the first sample: the logs of the processes
	// running when watch started are read from their end then (their past
	// is not this run's), those of later processes from their start (a
	// process's log is made anew when it starts).
	primed bool
}

type throttling struct{ periods, throttled int64 }

func newSampler() *sampler {
	return &sampler{counters: map[string]throttling{}, logRead: map[string]int64{}}
}

// sample describes the second since the last sample, one part a process
// in the order of records (supervise lists them by name); a process
// first seen says nothing until the next sample.
func (s *sampler) sample(records []supervise.Record) string {
	var parts []string
	for _, r := range records {
		var part []string
		key := r.Name + "/" + strconv.Itoa(r.PID)
		if r.Cgroup != "" {
			if now, ok := readThrottling(r.Cgroup); ok {
				if last, seen := s.counters[key]; seen {
					part = append(part, fmt.Sprintf("throttled %d/%d", now.throttled-last.throttled, now.periods-last.periods))
				}
				s.counters[key] = now
			}
		}
		if r.Meta["role"] == "database" || r.Meta["role"] == "standby" {
			if m := s.maintenance(key, r.Log); m != "" {
				part = append(part, m)
			}
		}
		if len(part) > 0 {
			parts = append(parts, r.Name+" "+strings.Join(part, " "))
		}
	}
	s.primed = true
	return strings.Join(parts, " | ")
}

// readThrottling reads a cgroup's cumulative periods and throttled
// periods (cpu.stat, the same keys on cgroup v1 and v2).
func readThrottling(dir string) (throttling, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return throttling{}, false
	}
	var t throttling
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, " ")
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "nr_periods":
			t.periods, found = n, found+1
		case "nr_throttled":
			t.throttled, found = n, found+1
		}
	}
	return t, found == 2
}

var maintenanceLine = regexp.MustCompile(`automatic (vacuum|analyze) of table "(?:[^".]*\.)*([^".]*)"|(checkpoint starting)`)

// maintenance counts the autovacuum runs and checkpoints the log of
// process key gained since the last read: "vacuum 1 (river_job) analyze
// 2 (items cart_items) checkpoint 1". A log shorter than what was read
// is a new one and is read from its start.
func (s *sampler) maintenance(key, log string) string {
	f, err := os.Open(log)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	from, seen := s.logRead[key]
	switch {
	case !seen && !s.primed:
		s.logRead[key] = fi.Size()
		return ""
	case fi.Size() < from:
		from = 0
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return ""
	}
	b, err := io.ReadAll(io.LimitReader(f, fi.Size()-from))
	if err != nil {
		return ""
	}
	// A line still being written is read next time.
	end := strings.LastIndexByte(string(b), '\n') + 1
	s.logRead[key] = from + int64(end)
	tables := map[string][]string{}
	for _, m := range maintenanceLine.FindAllStringSubmatch(string(b[:end]), -1) {
		if m[3] != "" {
			tables["checkpoint"] = append(tables["checkpoint"], "")
			continue
		}
		tables[m[1]] = append(tables[m[1]], m[2])
	}
	var out []string
	for _, kind := range []string{"vacuum", "analyze", "checkpoint"} {
		if n := len(tables[kind]); n > 0 {
			if kind == "checkpoint" {
				out = append(out, fmt.Sprintf("checkpoint %d", n))
				continue
			}
			out = append(out, fmt.Sprintf("%s %d (%s)", kind, n, strings.Join(tables[kind], " ")))
		}
	}
	return strings.Join(out, " ")
}

// failed prints each stamped probe line of log that did not meet the SLO,
// then the timeline's lines from probe and a second before it up to it.
func failed(log io.Reader, timeline string, probe time.Duration, out io.Writer) error {
	type second struct {
		at   time.Time
		line string
	}
	var seconds []second
	for _, line := range strings.Split(timeline, "\n") {
		stamp, rest, ok := strings.Cut(line, " ")
		if at, err := time.Parse(time.RFC3339, stamp); ok && err == nil {
			seconds = append(seconds, second{at, rest})
		}
	}
	sc := bufio.NewScanner(log)
	for sc.Scan() {
		stamp, rest, _ := strings.Cut(sc.Text(), " ")
		at, err := time.Parse(time.RFC3339, stamp)
		if err != nil || !strings.Contains(rest, " req/s: p99 ") || strings.Contains(rest, "meets the SLO") ||
			strings.Contains(rest, "(not counted)") {
			continue
		}
		fmt.Fprintf(out, "%s %s\n", at.UTC().Format(time.TimeOnly), strings.TrimSpace(rest))
		for _, s := range seconds {
			if !s.at.Before(at.Add(-probe-time.Second)) && !s.at.After(at) {
				fmt.Fprintf(out, "    %s %s\n", s.at.UTC().Format(time.TimeOnly), s.line)
			}
		}
	}
	return sc.Err()
}
