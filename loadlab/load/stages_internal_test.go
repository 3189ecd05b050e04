package load

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseStages(t *testing.T) {
	got, err := ParseStages("30s:100, 1m:400,30s:0")
	if err != nil {
		t.Fatal(err)
	}
	want := []Stage{{30 * time.Second, 100}, {time.Minute, 400}, {30 * time.Second, 0}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("stage %d: %v, want %v", i+1, got[i], want[i])
		}
	}
	for _, bad := range []struct{ in, want string }{
		{"30s", "want DURATION:TARGET"},
		{"0s:10", "not a positive duration"},
		{"-1s:10", "not a positive duration"},
		{"10:10", "not a positive duration"},
		{"1s:-5", "not a target of zero or more"},
		{"1s:NaN", "not a target of zero or more"},
		{"1s:10,", "stage 2"},
	} {
		if _, err := ParseStages(bad.in); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: err %v, want %q", bad.in, err, bad.want)
		}
	}
}

func TestValidateStages(t *testing.T) {
	target := &Request{Method: "GET", URL: "http://127.0.0.1:1/"}
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Target: target, Stages: []Stage{{time.Second, 0}}}, "every stage's target is 0"},
		{Config{Target: target, Stages: []Stage{{time.Second, 5}}, Rate: 5}, "give no rate or concurrency"},
		{Config{Target: target, Stages: []Stage{{time.Second, 5}}, Duration: time.Second}, "give no duration"},
		{Config{Target: target, Stages: []Stage{{time.Second, 2.5}}, StagedUsers: true}, "not a whole number"},
		{Config{Target: target, Stages: []Stage{{time.Second, 2e9}}}, "above the 1000000 req/s"},
		{Config{Target: target, StagedUsers: true}, "staged users need stages"},
	} {
		if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err %v, want %q", tt.cfg, err, tt.want)
		}
	}
	ok := Config{Target: target, Stages: []Stage{{time.Second, 10}, {time.Second, 0}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid stages refused: %v", err)
	}
}

// The schedule's requests, counted up to any moment, match the integral
// of the ramped rate; the ramp is linear as in k6.
func TestRampScheduleFollowsTheRamp(t *testing.T) {
	stages := []Stage{{10 * time.Second, 100}, {20 * time.Second, 100}, {5 * time.Second, 0}}
	r := &rampSchedule{stages: stages}
	var offsets []time.Duration
	for k := int64(0); ; k++ {
		off, ok := r.offset(k)
		if !ok {
			break
		}
		if len(offsets) > 0 && off < offsets[len(offsets)-1] {
			t.Fatalf("request %d due at %v, before request %d at %v", k, off, k-1, offsets[len(offsets)-1])
		}
		offsets = append(offsets, off)
	}
	total := stagesDue(stages, stagesDuration(stages))
	if math.Abs(float64(len(offsets))-total) > 1 {
		t.Fatalf("%d requests scheduled, the stages call for %.0f", len(offsets), total)
	}
	for _, at := range []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 17 * time.Second, 32 * time.Second} {
		n := 0
		for _, o := range offsets {
			if o < at {
				n++
			}
		}
		if want := stagesDue(stages, at); math.Abs(float64(n)-want) > 1 {
			t.Errorf("by %v: %d requests due, want %.1f", at, n, want)
		}
	}
	// Halfway up the first ramp the rate is half the target: a quarter of
	// the stage's requests are due by then.
	if got := stagesDue(stages, 5*time.Second); got != 125 {
		t.Errorf("due by 5s: %v, want 125", got)
	}
	if got := targetAt(stages, 5*time.Second); got != 50 {
		t.Errorf("target at 5s: %v, want 50", got)
	}
	if got := targetAt(stages, 32500*time.Millisecond); got != 50 {
		t.Errorf("target at 32.5s: %v, want 50", got)
	}
}
