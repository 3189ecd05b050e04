package scaleout

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestContradictionsAreFound(t *testing.T) {
	tests := []struct {
		name       string
		capacities []float64 // at 1, 2, 4 replicas (as many as given)
		want       []string  // in the reasons, in order; none for a table to trust
		counts     []int
	}{
		{"linear", []float64{100, 200, 400}, nil, nil},
		{"sublinear and smooth", []float64{100, 180, 300}, nil, nil},
		{"two counts at 1078%", []float64{24, 527}, []string{"2 replicas measured 1098% efficiency"}, []int{0, 1}},
		// The known-linear system as the issue saw it measured.
		{"98, 114, 605", []float64{98, 114, 605}, []string{"4 replicas measured 154% efficiency", "USL fitted over the counts misses"}, []int{0, 1, 2}},
		{"a count below the one before", []float64{100, 190, 150}, []string{"4 replicas measured 150 req/s, 21% below 2 replicas", "misses 1 replica by"}, []int{0, 1, 2}},
		{"within the noise below", []float64{100, 190, 180}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := scored(tt.capacities)
			found := r.contradictions()
			var whys []string
			for _, c := range found {
				whys = append(whys, c.why)
			}
			if len(whys) != len(tt.want) {
				t.Fatalf("reasons %q, want %d like %q", whys, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(whys[i], w) {
					t.Errorf("reason %q, want %q in it", whys[i], w)
				}
			}
			if got := involved(found); len(got) != len(tt.counts) || (len(got) > 0 && got[len(got)-1] != tt.counts[len(tt.counts)-1]) {
				t.Errorf("re-measure %v, want %v", got, tt.counts)
			}
		})
	}
}

// Capacity that falls as replicas are added, measured twice, on counts a
// USL curve passes through, is the system's retrograde scaling: a
// finding, not a reason to distrust the table. A fall no smooth curve
// passes through stays a warning.
func TestAFallThatStaysOnAUSLCurveIsRetrogradeNotUntrusted(t *testing.T) {
	tests := []struct {
		name           string
		capacities     []float64
		wantRetrograde bool
		wantWarnings   int
	}{
		// The replicas-only cluster on one 0.15-core database (2026-12-07).
		{"392, 505, 347", []float64{392, 505, 347}, true, 0},
		{"100, 190, 150: no curve passes", []float64{100, 190, 150}, false, 2},
		{"no fall", []float64{100, 190, 300}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := scored(tt.capacities)
			// What remeasure decides once the counts were measured again
			// and came out the same.
			r.judgeRemeasured()
			if got := len(r.Retrograde) > 0; got != tt.wantRetrograde {
				t.Errorf("retrograde %q, want it %v", r.Retrograde, tt.wantRetrograde)
			}
			if len(r.Warnings) != tt.wantWarnings {
				t.Errorf("warnings %q, want %d", r.Warnings, tt.wantWarnings)
			}
		})
	}
}

// Three counts and three parameters: the USL misses them only when their
// shape is none of its curves, as when another component or errors bound
// some counts and not others. Counts it misses that came out the same
// when measured again are repeatable figures the model does not
// describe: a finding (OffCurve), not a reason to distrust the table. A
// miss on a count measured once, or one whose measurements swung, stays
// a warning.
func TestAMisfitMeasuredTwiceAndTheSameIsTheSystemsShape(t *testing.T) {
	// Flat from 1 to 2 replicas, rising to 4: no USL curve (σ, κ ≥ 0)
	// passes within 15% of all three.
	capacities := []float64{437, 480, 944}
	tests := []struct {
		name         string
		remeasured   bool
		swung        string
		wantOffCurve bool
		wantWarnings int
	}{
		{"measured again, the same", true, "", true, 0},
		{"measured once", false, "", false, 1},
		{"measured again, swung", true, "measured 437 req/s, then 300 when measured again (31% apart)", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := scored(capacities)
			c, ok := r.misfit()
			if !ok {
				t.Fatalf("the counts %v are on a USL curve (%+v); the test needs a misfit", capacities, r.Fit)
			}
			for _, i := range c.counts {
				r.Steps[i].Remeasured, r.Steps[i].Swung = tt.remeasured, tt.swung
			}
			r.judgeRemeasured()
			if got := len(r.OffCurve) > 0; got != tt.wantOffCurve {
				t.Errorf("off the curve %q, want it %v", r.OffCurve, tt.wantOffCurve)
			}
			if len(r.Warnings) != tt.wantWarnings {
				t.Errorf("warnings %q, want %d", r.Warnings, tt.wantWarnings)
			}
		})
	}
}

// scored is a scored result of capacities at 1, 2, 4, ... replicas.
func scored(capacities []float64) *Result {
	r := &Result{SLO: 50 * time.Millisecond}
	for i, c := range capacities {
		r.Steps = append(r.Steps, Step{Replicas: 1 << i, CapacityRPS: c})
	}
	r.score()
	return r
}

// A count measured again further from its first than the search's
// noise says so, and the result warns that the table is not to be
// trusted; within the noise it does not.
func TestACountWhoseMeasurementsSwingIsFlagged(t *testing.T) {
	tests := []struct {
		name         string
		first, again float64
		want         string // in Swung; "" for none
	}{
		{"within the noise", 1000, 950, ""},
		{"within the noise, higher", 950, 1000, ""},
		{"391, then 3,134", 391, 3134, "measured 391 req/s, then 3134 when measured again (88% apart)"},
		{"3,134, then 391", 3134, 391, "measured 3134 req/s, then 391 when measured again (88% apart)"},
		{"nothing met the SLO, then 200", 0, 200, "then 200 when measured again (100% apart)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := remeasureSwing(tt.first, tt.again)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Fatalf("swung %q, want %q", got, tt.want)
			}
			r := &Result{Steps: []Step{{Replicas: 2, CPU: math.NaN(), Swung: got}}}
			r.warnSwung()
			if want := tt.want != ""; want != (len(r.Warnings) == 1 && strings.HasPrefix(r.Warnings[0], "not to be trusted: 2 replicas: ")) {
				t.Errorf("warnings %q, want one that the table is not to be trusted: %v", r.Warnings, want)
			}
		})
	}
}

// One replica given more CPU cannot serve much more than linear in it,
// as replicas added cannot: a scaling-up count above 115% of linear from
// the first size is a contradiction, and when it stays after both were
// measured again the table is not to be trusted.
func TestScalingUpAboveLinearInCPUIsAContradiction(t *testing.T) {
	tests := []struct {
		name       string
		capacities []float64 // at 0.25, 0.5, ... cores
		want       []int
	}{
		// vertical-vs-horizontal at b906175: 1,324 then 3,480 (131%).
		{"1,324, then 3,480", []float64{1324, 3480}, []int{1}},
		// The run at 672827d: 1,826, then 3,284 (90%).
		{"1,826, then 3,284", []float64{1826, 3284}, nil},
		{"linear", []float64{1000, 2000}, nil},
		{"the third size above", []float64{1000, 1900, 5000}, []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Result{Steps: []Step{{Replicas: 1, CPU: 0.25, CapacityRPS: tt.capacities[0]}}}
			for i, c := range tt.capacities {
				r.Vertical = append(r.Vertical, Step{Replicas: 1, CPU: 0.25 * float64(int(1)<<i), CapacityRPS: c})
			}
			r.score()
			got := r.aboveLinearInCPU()
			if len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) {
				t.Fatalf("above linear %v, want %v (vertical %+v)", got, tt.want, r.Vertical)
			}
			r.warnAboveLinear()
			if len(r.Warnings) != len(tt.want) {
				t.Fatalf("warnings %q, want %d", r.Warnings, len(tt.want))
			}
			for _, w := range r.Warnings {
				if !strings.HasPrefix(w, "not to be trusted: 1 replica of ") || !strings.Contains(w, "of linear in CPU from 1 replica of 0.25 cores") {
					t.Errorf("warning %q", w)
				}
			}
		})
	}
}
