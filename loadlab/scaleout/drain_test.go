package scaleout_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/scaleout"
)

// backgroundQueue queues 20 ms of work per request for afterwards (as the
// shop queues a confirmation mail per order), worked off at 50 a second
// on a virtual clock, and answers after 5 ms plus three quarters of the
// work pending: the background work takes the time the answers need. The
// last answers of an overload leave a quarter of the queue behind, and
// the next load waits behind it.
func backgroundQueue() *httptest.Server {
	const work = 20 * time.Millisecond
	var mu sync.Mutex
	var queueEnds time.Time
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		now := time.Now()
		pending := max(queueEnds.Sub(now), 0)
		queueEnds = now.Add(pending + work)
		mu.Unlock()
		time.Sleep(5*time.Millisecond + pending*3/4)
		fmt.Fprintln(w, "ok")
	}))
}

// The search's second probe runs right after an overload: at 80 req/s
// against 50, a 1.5 s probe leaves about 0.2 s of work queued after its
// last answer. Without draining, the probe after it measured that queue
// and the capacity came out far below 50; with an idle gap and a
// one-user check before each probe, the capacity is the server's.
func TestProbesDoNotInheritABacklog(t *testing.T) {
	// The server and the generator are this process, at the lab's weight
	// (TestMain; at the default weight, at a load average of 31, one
	// user's median was 20 ms against the 5 ms answer, and the capacity
	// came out at 20). It runs before the parallel measurements start.
	srv := backgroundQueue()
	defer srv.Close()
	var lines []string
	cfg := scaleout.Config{
		ScaleCmd: "echo {n} >/dev/null; echo " + srv.URL + "/", DownCmd: "true", Replicas: []int{1},
		// A 1.5 s probe 7% over the capacity queues 100 ms, and its last
		// answers wait 80 ms: the SLO.
		SLO: 80 * time.Millisecond, ProbeDuration: 1500 * time.Millisecond, StartRate: 80, Cores: 2,
		DrainGap: 200 * time.Millisecond,
		Workload: func(u string) (scaleout.Workload, error) {
			return scaleout.Workload{Target: &load.Request{Method: "GET", URL: u}, ReadyURL: u}, nil
		},
		Progress: func(line string) { lines = append(lines, line); t.Log(line) },
	}
	res, err := scaleout.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := res.Steps[0]
	// ± 15%: a busy machine's noise moves the search a little; the queue
	// left behind moved it to 39.
	if math.Abs(s.CapacityRPS-50) > 7.5 {
		t.Fatalf("capacity %.1f req/s, want 50 ± 15%% (baseline %v)", s.CapacityRPS, s.Baseline)
	}
	if s.Baseline < 5*time.Millisecond || s.Baseline > 50*time.Millisecond {
		t.Errorf("one user's baseline %v, want about the 5 ms answer", s.Baseline)
	}
}
