package scaleout

import (
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
			r := &Result{SLO: 50 * time.Millisecond}
			for i, c := range tt.capacities {
				r.Steps = append(r.Steps, Step{Replicas: 1 << i, CapacityRPS: c})
			}
			r.score()
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
