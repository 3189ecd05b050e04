package scaleout

import (
	"context"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
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

// A rate limit that lets in fewer requests an idle gap than a check sends
// answers the rest with 429 Too Many Requests: the target limiting this
// client, not one still working off an overload. Such a check is drained
// when the answers it let in are fast; the same check with 503s is not.
// Counting the 429s, every check failed and every probe waited the whole
// drain timeout.
func TestA429IsALimitNotATargetStillRefusing(t *testing.T) {
	limited := func(status string, n int64) measure.Step {
		s := measure.Step{Requests: drainRequests, Errors: n, P50: time.Millisecond,
			Load: &load.Result{Endpoints: []load.Endpoint{{Errors: load.EndpointErrors{Total: n, ByStatus: map[string]int64{status: n}}}}}}
		if status[0] == '4' {
			s.ErrorKinds.Status4xx = n
		} else {
			s.ErrorKinds.Status5xx = n
		}
		return s
	}
	fresh := measure.Step{Requests: baselineRequests, P50: time.Millisecond}
	for _, tt := range []struct {
		status      string
		wantDrained bool
	}{{"429", true}, {"503", false}} {
		t.Run(tt.status, func(t *testing.T) {
			d := drainer{
				check:    func(context.Context, int64) (measure.Step, error) { return limited(tt.status, 3), nil },
				baseline: fresh.P50, timeout: time.Nanosecond,
				sleep: func(context.Context, time.Duration) error { return nil },
			}
			d.allowErrors(fresh, fresh)
			got, err := d.wait(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got.OK != tt.wantDrained || got.Checks != 1 {
				t.Fatalf("drained %v after %d checks, want %v after 1", got.OK, got.Checks, tt.wantDrained)
			}
		})
	}
}
