package load_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
)

// An open-loop run in stages sends what each stage's ramp calls for, and
// reports each stage apart. A request counts in the stage it was due in,
// so the first stage's count does not depend on the machine's speed.
func TestOpenLoopStages(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	stages := []load.Stage{{Duration: time.Second, Target: 100}, {Duration: 500 * time.Millisecond, Target: 100}}
	res := run(t, load.Config{Target: &load.Request{Method: "GET", URL: srv.URL}, Stages: stages})
	if len(res.Stages) != 2 || res.Model != "open" {
		t.Fatalf("model %s, stages %+v", res.Model, res.Stages)
	}
	// 0 to 100 req/s over 1 s: 50 requests; then 100 req/s for 0.5 s: 50.
	if got := res.Stages[0].Requests; got != 50 {
		t.Errorf("first stage: %d requests, want 50", got)
	}
	// The last stage may lose its last requests to the end of the run.
	if got := res.Stages[1].Requests; got < 45 || got > 50 {
		t.Errorf("second stage: %d requests, want 50", got)
	}
	if res.Stages[0].From != 0 || res.Stages[1].From != 100 || res.Stages[0].Latency.P99 <= 0 {
		t.Errorf("stages %+v", res.Stages)
	}
	if res.Stages[0].Requests+res.Stages[1].Requests != res.Requests {
		t.Errorf("stages add up to %d of %d requests", res.Stages[0].Requests+res.Stages[1].Requests, res.Requests)
	}
}

// A closed-loop run in stages never has more users in flight than the
// stages call for, and its users wait while the target is below them.
func TestClosedLoopStagesBoundTheUsers(t *testing.T) {
	var inFlight, most atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		n := inFlight.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		inFlight.Add(-1)
	}))
	defer srv.Close()
	stages := []load.Stage{{Duration: 300 * time.Millisecond, Target: 3}, {Duration: 300 * time.Millisecond, Target: 3}}
	res := run(t, load.Config{Target: &load.Request{Method: "GET", URL: srv.URL}, Stages: stages, StagedUsers: true})
	if res.Model != "closed" || len(res.Stages) != 2 || res.Stages[1].Requests == 0 {
		t.Fatalf("model %s, stages %+v", res.Model, res.Stages)
	}
	if most.Load() > 3 {
		t.Errorf("%d requests in flight at once, the stages allow 3 users", most.Load())
	}
	if res.Stages[0].Requests+res.Stages[1].Requests != res.Requests {
		t.Errorf("stages add up to %d of %d requests", res.Stages[0].Requests+res.Stages[1].Requests, res.Requests)
	}
}

// Users wait, parked, while the stages call for none: a stage that stays
// at 0 users sends nothing, and the next one does.
func TestClosedLoopStagesParkUsers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	stages := []load.Stage{{Duration: 300 * time.Millisecond, Target: 0}, {Duration: 300 * time.Millisecond, Target: 2}}
	res := run(t, load.Config{Target: &load.Request{Method: "GET", URL: srv.URL}, Stages: stages, StagedUsers: true})
	if res.Stages[0].Requests != 0 || res.Stages[1].Requests == 0 {
		t.Fatalf("stage requests %d and %d; want none while the target is 0 users, some after", res.Stages[0].Requests, res.Stages[1].Requests)
	}
}
