package scaleout

import (
	"context"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/measure"
)

// A target that still refuses after an overload (a circuit breaker open
// on its one database for its 2 s, the admission control) answers its
// edge cache's reads fast: one user's median looks drained while a third
// of its requests fail. Such a check is not drained when the fresh count
// answered without errors; a probe started on it measured the refusals,
// and a search that began above the capacity (2 replicas on one
// database, started at twice 1 replica's) walked down from probe to
// probe. A target that failed as often on the fresh count keeps its
// share.
func TestADrainCheckWithErrorsTheFreshCountHadNotIsNotDrained(t *testing.T) {
	refusing := measure.Step{Requests: drainRequests, Errors: 2, P50: time.Millisecond}
	answering := measure.Step{Requests: drainRequests, P50: time.Millisecond}
	tests := []struct {
		name       string
		fresh      measure.Step // the count's one-user baseline
		checks     []measure.Step
		wantChecks int
	}{
		{"no errors on the fresh count", measure.Step{Requests: baselineRequests, P50: time.Millisecond},
			[]measure.Step{refusing, refusing, answering}, 3},
		{"as many errors on the fresh count", measure.Step{Requests: baselineRequests, Errors: 8, P50: time.Millisecond},
			[]measure.Step{refusing, answering}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checks := 0
			d := drainer{
				check: func(context.Context, int64) (measure.Step, error) {
					s := tt.checks[checks]
					checks++
					return s, nil
				},
				baseline: tt.fresh.P50, timeout: time.Hour,
				sleep: func(context.Context, time.Duration) error { return nil },
			}
			d.allowErrors(tt.fresh, tt.fresh)
			got, err := d.wait(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !got.OK || got.Checks != tt.wantChecks {
				t.Fatalf("drained %v after %d checks, want drained after %d", got.OK, got.Checks, tt.wantChecks)
			}
		})
	}
}
