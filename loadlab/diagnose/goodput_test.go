package diagnose_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
)

// A service that answers 503 at once to every request past a few in
// flight looks fast and ever busier as users are added, if its refusals
// count as throughput. Its capacity is what it served: at most limit
// requests in flight, each held for work, so never more than
// limit / work answers a second, whatever the machine does.
func TestRefusalsAreNotThroughput(t *testing.T) {
	const limit, work = 2, 5 * time.Millisecond
	var inFlight, served, refused atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer inFlight.Add(-1)
		if inFlight.Add(1) > limit {
			refused.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		time.Sleep(work)
		served.Add(1)
	}))
	defer srv.Close()

	rep, err := diagnose.Run(context.Background(), diagnose.Config{
		Target: srv.URL, SLO: 200 * time.Millisecond, MaxConcurrency: 16, StepDuration: 500 * time.Millisecond,
		BaselineRequests: 50, BaselineDuration: 5 * time.Second,
	}, measure.LoadRunner{Target: &load.Request{Method: "GET", URL: srv.URL}, Timeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var trace strings.Builder
	for _, s := range rep.Steps {
		fmt.Fprintf(&trace, "  N=%-3d goodput %7.1f answered %8.1f errors %d of %d (%v) p99 %v\n",
			s.Concurrency, s.ThroughputRPS, s.AnsweredRPS, s.Errors, s.Requests, s.ErrorKinds, s.P99)
	}
	if refused.Load() == 0 {
		t.Fatalf("setup: the server never refused a request\n%s", trace.String())
	}
	// The bound allows for a step's last requests finishing after it
	// ends (they count in it).
	ceiling := 1.1 * limit / work.Seconds()
	for _, s := range rep.Steps {
		if s.ThroughputRPS > ceiling {
			t.Errorf("with %d users the throughput is %.0f req/s; the server can serve at most %.0f: refusals were counted\n%s",
				s.Concurrency, s.ThroughputRPS, limit/work.Seconds(), trace.String())
		}
		if s.ErrorKinds.Status5xx != s.Errors {
			t.Errorf("with %d users %d errors, of them 5xx %d: the refusals are not reported beside the goodput", s.Concurrency, s.Errors, s.ErrorKinds.Status5xx)
		}
	}
	if rep.CapacityRPS <= 0 || rep.CapacityRPS > ceiling {
		t.Errorf("capacity %.0f req/s; the server can serve at most %.0f", rep.CapacityRPS, limit/work.Seconds())
	}
	// Almost every request past two users is refused: the kind is errors
	// even when a busy machine also slows the successful answers.
	if !rep.Scalability || rep.Kind != diagnose.KindErrors {
		t.Fatalf("scalability problem=%v kind=%q, want a problem of kind %q\n%s%s", rep.Scalability, rep.Kind, diagnose.KindErrors,
			trace.String(), strings.Join(rep.Evidence, "\n"))
	}
	if all := strings.Join(rep.Evidence, "\n"); !strings.Contains(all, "errors rise with users") || !strings.Contains(all, "5xx") {
		t.Errorf("the evidence does not name the rising errors:\n%s", all)
	}
	t.Logf("capacity %.0f req/s with %d users\n%s%s", rep.CapacityRPS, rep.CapacityAt, trace.String(), strings.Join(rep.Evidence, "\n"))
}
