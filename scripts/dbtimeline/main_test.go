package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/supervise"
)

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func cpuStat(periods, throttled int) string {
	return fmt.Sprintf("nr_periods %d\nnr_throttled %d\nthrottled_time 123\n", periods, throttled)
}

const (
	analyzeLine = "2026-12-07 16:17:04.418 UTC [24280] LOG:  automatic analyze of table \"shop_s1.public.river_job\"\n" +
		"\tsystem usage: CPU: user: 0.04 s, system: 0.00 s, elapsed: 0.19 s\n"
	vacuumLine = "2026-12-07 16:17:04.425 UTC [24280] LOG:  automatic vacuum of table \"shop_s1.public.cart_items\": index scans: 1\n"
	checkpoint = "2026-12-07 16:17:05.000 UTC [23850] LOG:  checkpoint starting: time\n"
)

// Each second says, per process, its throttled periods of the second's
// periods, and per database server the autovacuum runs and checkpoints
// its log gained: nothing the first time a process is seen (what its
// log held before is skipped), a line half-written read once whole, a
// server started later (a new pid) read from its log's start.
func TestSamplesSayWhatEachSecondDid(t *testing.T) {
	dir := t.TempDir()
	dbCgroup, replicaCgroup := filepath.Join(dir, "db-1"), filepath.Join(dir, "replica-1")
	for _, d := range []string{dbCgroup, replicaCgroup} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	log := filepath.Join(dir, "db-1.log")
	writeFile(t, log, analyzeLine)
	writeFile(t, filepath.Join(dbCgroup, "cpu.stat"), cpuStat(100, 10))
	writeFile(t, filepath.Join(replicaCgroup, "cpu.stat"), cpuStat(50, 0))
	records := []supervise.Record{
		{Name: "db-1", PID: 1, Cgroup: dbCgroup, Log: log, Meta: map[string]string{"role": "database"}},
		{Name: "replica-1", PID: 2, Cgroup: replicaCgroup, Meta: map[string]string{"role": "api"}},
	}
	s := newSampler()
	steps := []struct {
		name        string
		db, replica string // cpu.stat now
		log         string // appended to the server's log first
		replaceLog  string // the log made anew, shorter
		pid         int    // the server's pid (0: 1)
		want        string
	}{
		{name: "first sight: no counters yet, the log's past skipped", want: ""},
		{name: "what the log gained", db: cpuStat(100, 10), replica: cpuStat(50, 0), log: analyzeLine,
			want: "db-1 throttled 0/0 analyze 1 (river_job) | replica-1 throttled 0/0"},
		{name: "a throttled second", db: cpuStat(110, 17), replica: cpuStat(60, 1),
			want: "db-1 throttled 7/10 | replica-1 throttled 1/10"},
		{name: "a line half-written waits", db: cpuStat(120, 17), replica: cpuStat(70, 1), log: vacuumLine[:40],
			want: "db-1 throttled 0/10 | replica-1 throttled 0/10"},
		{name: "then read whole, with a checkpoint", db: cpuStat(130, 18), replica: cpuStat(80, 1), log: vacuumLine[40:] + checkpoint + analyzeLine,
			want: "db-1 throttled 1/10 vacuum 1 (cart_items) analyze 1 (river_job) checkpoint 1 | replica-1 throttled 0/10"},
		{name: "a new server: its counters start again, its log from the start", db: cpuStat(5, 1), replica: cpuStat(90, 1), replaceLog: vacuumLine, pid: 3,
			want: "db-1 vacuum 1 (cart_items) | replica-1 throttled 0/10"},
	}
	for _, st := range steps {
		if st.db != "" {
			writeFile(t, filepath.Join(dbCgroup, "cpu.stat"), st.db)
			writeFile(t, filepath.Join(replicaCgroup, "cpu.stat"), st.replica)
		}
		if st.log != "" {
			appendFile(t, log, st.log)
		}
		if st.replaceLog != "" {
			writeFile(t, log, st.replaceLog)
		}
		if st.pid != 0 {
			records[0].PID = st.pid
		}
		if got := s.sample(records); got != st.want {
			t.Errorf("%s:\n got %q\nwant %q", st.name, got, st.want)
		}
	}
}

// watch writes a stamped line a tick from the records of the state
// directory (none at the first, which only reads the counters), and
// stops when its context ends. A tick is sent only once the one before
// is handled, so both are in the file when watch returns.
func TestWatchWritesAStampedLineATick(t *testing.T) {
	dir := t.TempDir()
	cg := filepath.Join(dir, "cg")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cg, "cpu.stat"), cpuStat(10, 0))
	state := supervise.Dir(filepath.Join(dir, "run"))
	if err := os.MkdirAll(string(state), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := state.Save(supervise.Record{Name: "replica-1", PID: 7, Cgroup: cg}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "timeline")
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- watch(ctx, state, out, tick) }()
	at := time.Date(2026, 12, 7, 16, 40, 1, 0, time.UTC)
	tick <- at
	tick <- at.Add(time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "2026-12-07T16:40:02Z replica-1 throttled 0/0\n"
	if string(b) != want {
		t.Errorf("timeline:\n%s\nwant:\n%s", b, want)
	}
}

// failed prints the probes that did not meet the SLO, each with the
// timeline of its probe and the second before; probes that met it,
// warm-ups, lines that are not probes, and seconds outside the window are
// left out.
func TestFailedProbesShowTheirSeconds(t *testing.T) {
	timeline := strings.Join([]string{
		"2026-12-07T16:40:00Z db-1 throttled 0/10",
		"2026-12-07T16:40:01Z db-1 throttled 9/10 analyze 1 (river_job)",
		"2026-12-07T16:40:02Z db-1 throttled 3/10",
		"2026-12-07T16:40:03Z db-1 throttled 0/10",
		"2026-12-07T16:40:04Z db-1 throttled 0/10",
		"2026-12-07T16:40:09Z db-1 throttled 0/10",
	}, "\n")
	log := strings.Join([]string{
		"2026-12-07T16:39:59Z loadlab scaleout: replicas 1,2, SLO p99 100ms, probes of 2s",
		"2026-12-07T16:40:02Z   2 replicas: warm-up 50 req/s: p99 159 ms (not counted); one user's median 1.56 ms",
		"2026-12-07T16:40:03Z   2 replicas: bracket 400 req/s: p99 700 ms, 227 errors (503): admission",
		"2026-12-07T16:40:09Z   2 replicas: bracket 300 req/s: p99 11.5 ms, meets the SLO",
	}, "\n")
	var out strings.Builder
	if err := failed(strings.NewReader(log), timeline, 2*time.Second, &out); err != nil {
		t.Fatal(err)
	}
	want := "16:40:03 2 replicas: bracket 400 req/s: p99 700 ms, 227 errors (503): admission\n" +
		"    16:40:00 db-1 throttled 0/10\n" +
		"    16:40:01 db-1 throttled 9/10 analyze 1 (river_job)\n" +
		"    16:40:02 db-1 throttled 3/10\n" +
		"    16:40:03 db-1 throttled 0/10\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestBadArgumentsSayTheUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"watch"}, {"failed", "2s"}, {"other", "a", "b"}} {
		if err := run(args, strings.NewReader(""), &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "usage") {
			t.Errorf("run(%q) = %v, want the usage", args, err)
		}
	}
	if err := run([]string{"failed", "soon", "x"}, strings.NewReader(""), &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "PROBE") {
		t.Errorf("a bad PROBE: %v", err)
	}
}
