package main

import (
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
)

// seconds of a series: p99 in ms and errors per 100 requests, one a second.
func series(p99ms []int, errors []int) []load.Second {
	out := make([]load.Second, len(p99ms))
	for i, p := range p99ms {
		out[i] = load.Second{At: i + 1, Requests: 100, P99: time.Duration(p) * time.Millisecond}
		if errors != nil {
			out[i].Errors = int64(errors[i])
		}
	}
	return out
}

func TestRecoveryIsReadFromTheSeriesAfterTheDrop(t *testing.T) {
	silent := func(n int) []int { return make([]int, n) } // before the drop: nothing sent
	empty := func(s []load.Second, n int) []load.Second {
		for i := range n {
			s[i].Requests, s[i].P99 = 0, 0
		}
		return s
	}
	tests := []struct {
		name      string
		series    []load.Second
		drop      time.Duration
		after     time.Duration
		recovered bool
		ok        bool
	}{
		{"normal from the first second", empty(series(append(silent(3), 10, 12, 9), nil), 3), 3 * time.Second, 0, true, true},
		{"slow for two seconds", empty(series(append(silent(3), 900, 60, 20, 10), nil), 3), 3 * time.Second, 2 * time.Second, true, true},
		// A slow second after a normal one: back for good only after it.
		{"slow again later", empty(series(append(silent(2), 300, 10, 80, 10, 10), nil), 2), 2 * time.Second, 3 * time.Second, true, true},
		{"never back", empty(series(append(silent(2), 300, 200, 100), nil), 2), 2 * time.Second, 3 * time.Second, false, true},
		// Errors above 1 % of a second's requests are not normal; 1 % is.
		{"errors", empty(series(append(silent(1), 5, 5, 5, 5), []int{0, 40, 2, 1, 0}), 1), time.Second, 2 * time.Second, true, true},
		// Seconds before the drop do not count, slow or not (the overload's
		// own seconds, in a run that sent from the start).
		{"seconds before the drop", series([]int{900, 900, 10, 10}, nil), 2 * time.Second, 0, true, true},
		// A second without requests counts neither way.
		{"a second without requests", func() []load.Second {
			s := empty(series(append(silent(1), 300, 0, 10), nil), 1)
			s[2].Requests = 0
			return s
		}(), time.Second, time.Second, true, true},
		{"nothing after the drop", empty(series(silent(3), nil), 3), 3 * time.Second, 0, false, false},
		// A drop that falls within a second: that second holds the first
		// requests sent after it.
		{"drop within a second", empty(series([]int{0, 900, 10}, nil), 1), 1500 * time.Millisecond, 500 * time.Millisecond, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after, recovered, ok := recovery(tt.series, tt.drop)
			if after != tt.after || recovered != tt.recovered || ok != tt.ok {
				t.Errorf("recovery = %v, %v, %v; want %v, %v, %v", after, recovered, ok, tt.after, tt.recovered, tt.ok)
			}
		})
	}
}

func TestSilentForIsTheLeadingStagesWithoutLoad(t *testing.T) {
	stages := []load.StageResult{
		{Stage: load.Stage{Duration: 20 * time.Second, Target: 0}},
		{Stage: load.Stage{Duration: time.Millisecond, Target: 500}},
		{Stage: load.Stage{Duration: 10 * time.Second, Target: 500}, From: 500},
	}
	if got := silentFor(stages); got != 20*time.Second {
		t.Errorf("silentFor = %v, want 20s", got)
	}
	if got := silentFor(stages[1:]); got != 0 {
		t.Errorf("silentFor without a silent stage = %v, want 0", got)
	}
	if got := silentFor(nil); got != 0 {
		t.Errorf("silentFor of an unstaged run = %v, want 0", got)
	}
}

func TestMemoryIsBoundedWhenTheSecondHalfDoesNotClimb(t *testing.T) {
	at := func(s float64, kb int) rssSample { return rssSample{at: 1000 + s, kb: kb} }
	tests := []struct {
		name    string
		samples []rssSample
		peak    int
		halves  bool
		bounded bool
	}{
		{"settled", []rssSample{at(0, 1000), at(2, 5000), at(4, 5100), at(6, 5200), at(8, 5100)}, 5200, true, true},
		{"climbing", []rssSample{at(0, 1000), at(2, 3000), at(4, 5000), at(6, 7000), at(8, 9000)}, 9000, true, false},
		// Samples after the load (the drop) count in the peak, not the halves.
		{"after the load", []rssSample{at(1, 4000), at(6, 4000), at(12, 9000)}, 9000, true, true},
		{"no second half", []rssSample{at(1, 4000), at(2, 4000)}, 4000, false, false},
		// A file from before the script wrote the moments: no halves.
		{"no moments", parseRSS("4000\n5000\n"), 5000, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := memoryOf(tt.samples, 1000, 1010)
			if m.peak != tt.peak || m.halves != tt.halves || m.bounded() != tt.bounded {
				t.Errorf("memoryOf = %+v (bounded %v); want peak %d, halves %v, bounded %v", m, m.bounded(), tt.peak, tt.halves, tt.bounded)
			}
		})
	}
}

func TestParseRSSReadsTheSamplersLines(t *testing.T) {
	got := parseRSS("1733550000.25 81234\n1733550000.75 82000\n\nnot a line\n90000\n")
	want := []rssSample{{1733550000.25, 81234}, {1733550000.75, 82000}, {0, 90000}}
	if len(got) != len(want) {
		t.Fatalf("parseRSS = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sample %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestGoalsAt3x(t *testing.T) {
	ok := summary{mode: "on", mult: "3", ofCapacity: 0.93, checkoutOK: 0.97, checkoutP99: 30 * time.Millisecond, overloadOK: true, dropOK: true}
	tests := []struct {
		name     string
		s        summary
		unloaded time.Duration
		want     []string
		notWant  []string
	}{
		{"all met", ok, 20 * time.Millisecond,
			[]string{"goodput 0.93 of capacity (≥ 0.9): met", "checkouts succeeded 97.0 % (≥ 95 %): met", "p99 30.0 ms against 2 × 20.0 ms for one user: met"}, []string{"not met"}},
		{"p99 over twice one user's", ok, 14 * time.Millisecond, []string{"against 2 × 14.0 ms for one user: not met"}, nil},
		{"goodput short", func() summary { s := ok; s.ofCapacity = 0.54; return s }(), 20 * time.Millisecond, []string{"goodput 0.54 of capacity (≥ 0.9): not met"}, nil},
		{"checkouts short", func() summary { s := ok; s.checkoutOK = 0.9; return s }(), 20 * time.Millisecond, []string{"checkouts succeeded 90.0 % (≥ 95 %): not met"}, nil},
		{"no one-user run", ok, 0, []string{"no one-user run to compare with (not shown)"}, nil},
		// A run loadlab flagged shows nothing, however good it looks.
		{"generator flagged", func() summary { s := ok; s.overloadOK = false; return s }(), 20 * time.Millisecond,
			[]string{"not shown (loadlab's generator flagged the run"}, []string{": met"}},
		// A run on a machine whose other work held the CPU is judged, and
		// said to be an indication only.
		{"busy machine", func() summary { s := ok; s.busyMachine = true; return s }(), 20 * time.Millisecond,
			[]string{"goodput 0.93 of capacity (≥ 0.9): met", busyNote}, nil},
		{"quiet machine", ok, 20 * time.Millisecond, nil, []string{"an indication only"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := judge3x(tt.s, tt.unloaded)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("judge3x = %q, want it to say %q", got, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("judge3x = %q, must not say %q", got, w)
				}
			}
		})
	}
}

func TestGoalsAt10x(t *testing.T) {
	ok := summary{mode: "on", mult: "10", overloadOK: true, dropOK: true, alive: true,
		mem:  memory{peak: 90 << 10, firstHalf: 80 << 10, secondHalf: 82 << 10, halves: true},
		back: 2 * time.Second, recovered: true, backKnown: true}
	tests := []struct {
		name    string
		s       summary
		want    []string
		notWant []string
	}{
		{"all met", ok, []string{"alive: met", "memory 80 → 82 MiB", "bounded if ≤ 10 % more): met", "back to normal 2 s after the drop (≤ 5 s): met"}, []string{"not met", "not shown"}},
		{"crashed", func() summary { s := ok; s.alive = false; return s }(), []string{"alive: not met"}, nil},
		{"memory climbing", func() summary { s := ok; s.mem.secondHalf = 120 << 10; return s }(), []string{"memory 80 → 120 MiB", "more): not met"}, nil},
		{"slow to recover", func() summary { s := ok; s.back = 7 * time.Second; return s }(), []string{"back to normal 7 s after the drop (≤ 5 s): not met"}, nil},
		{"never recovered", func() summary { s := ok; s.back, s.recovered = 10*time.Second, false; return s }(), []string{"not within the 10 s measured after the drop (not met)"}, nil},
		{"drop's generator flagged", func() summary { s := ok; s.dropOK = false; return s }(), []string{"back to normal: not shown"}, []string{"after the drop (≤"}},
		{"overload's generator flagged", func() summary { s := ok; s.overloadOK = false; return s }(), []string{"on: not shown (loadlab's generator flagged the run: less than 10× was offered)"}, nil},
		{"busy machine", func() summary { s := ok; s.busyMachine = true; return s }(), []string{"alive: met", busyNote}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := judge10x(tt.s)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("judge10x = %q, want it to say %q", got, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("judge10x = %q, must not say %q", got, w)
				}
			}
		})
	}
}

func TestTheLoadPhaseIsTheLastStageAfterTheWarmUp(t *testing.T) {
	res := load.Result{Rate: 0, ThroughputRPS: 999, GoodputRPS: 999, Elapsed: 24 * time.Second, Stages: []load.StageResult{
		{Stage: load.Stage{Duration: 3 * time.Second, Target: 500}, Requests: 750},
		{Stage: load.Stage{Duration: time.Millisecond, Target: 3000}, From: 500, Requests: 2},
		{Stage: load.Stage{Duration: 20 * time.Second, Target: 3000}, From: 3000, Requests: 60000, ThroughputRPS: 3000,
			Errors: load.ErrorCounts{Status5xx: 14000, Timeout: 6000}},
	}}
	got := loadPhase(res)
	want := phase{offered: 3000, answered: 3000, succeeded: 2000, begin: 3*time.Second + time.Millisecond, length: 20 * time.Second}
	if got != want {
		t.Errorf("loadPhase = %+v, want %+v", got, want)
	}
	// A run without stages (written before the warm-up) is all load.
	plain := load.Result{Rate: 3000, ThroughputRPS: 2900, GoodputRPS: 2000, Elapsed: 20 * time.Second}
	if got, want := loadPhase(plain), (phase{offered: 3000, answered: 2900, succeeded: 2000, length: 20 * time.Second}); got != want {
		t.Errorf("loadPhase without stages = %+v, want %+v", got, want)
	}
}

func TestARecoveryAMillisecondPastAWholeSecondReadsWhole(t *testing.T) {
	s := make([]load.Second, 30)
	for i := range s {
		s[i] = load.Second{At: i + 1}
	}
	for i := 23; i < 30; i++ {
		s[i].Requests, s[i].P99 = 100, 10*time.Millisecond
	}
	s[23].P99, s[24].P99 = time.Second, 200*time.Millisecond // the seconds ending at 24 and 25 s
	after, recovered, ok := recovery(s, 23*time.Second+time.Millisecond)
	if !ok || !recovered || seconds(after) != "2 s" {
		t.Errorf("recovery = %v (%s), %v, %v; want 2 s, recovered", after, seconds(after), recovered, ok)
	}
}
