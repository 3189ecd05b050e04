package scaleout_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/scaleout"
)

// backgroundQueue queues a job per request for afterwards (as the shop
// queues a confirmation mail per order), worked off one after another by
// a worker, and answers once three quarters of the jobs ahead of the
// request are done: the background work takes the time the answers need,
// and the last answers of an overload leave a quarter of the queue
// behind. The worker's pace does not matter: the queue is counted in
// jobs, so a busy machine only makes it longer.
type backgroundQueue struct {
	mu             sync.Mutex
	cond           *sync.Cond
	queued, done   int
	closed         bool
	workerFinished chan struct{}
}

func newBackgroundQueue() *backgroundQueue {
	q := &backgroundQueue{workerFinished: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	go q.work()
	return q
}

func (q *backgroundQueue) work() {
	defer close(q.workerFinished)
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for q.done == q.queued && !q.closed {
			q.cond.Wait()
		}
		if q.closed {
			return
		}
		q.mu.Unlock()
		time.Sleep(20 * time.Millisecond) // the job
		q.mu.Lock()
		q.done++
		q.cond.Broadcast()
	}
}

func (q *backgroundQueue) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	q.mu.Lock()
	ahead := q.queued - q.done
	q.queued++
	q.cond.Broadcast() // the worker, if idle
	for until := q.queued - 1 - ahead/4; q.done < until && !q.closed; {
		q.cond.Wait()
	}
	q.mu.Unlock()
	fmt.Fprintln(w, "ok")
}

// pending is how many jobs wait.
func (q *backgroundQueue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.queued - q.done
}

func (q *backgroundQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
	<-q.workerFinished
}

// queueRecorder sends the load and notes the queue each open-loop phase
// (the warm-up, the probes) started on and left behind; it ends the
// measurement after phases of them.
type queueRecorder struct {
	measure.LoadRunner
	q             *backgroundQueue
	phases        int
	started, left []int
}

var errEnough = errors.New("enough probes seen")

func (r *queueRecorder) Run(ctx context.Context, s measure.Spec) (measure.Step, error) {
	if s.Rate == 0 { // one user: a baseline or a drain check
		return r.LoadRunner.Run(ctx, s)
	}
	if len(r.started) == r.phases {
		return measure.Step{}, errEnough
	}
	r.started = append(r.started, r.q.pending())
	st, err := r.LoadRunner.Run(ctx, s)
	r.left = append(r.left, r.q.pending())
	return st, err
}

// A probe over the capacity leaves a queue behind it, and a probe started
// on it measures the queue, not its own rate: before each probe the
// search drains the target (an idle gap, then one user's latency back
// near the baseline). At 200 req/s against a worker of at most 50 jobs a
// second, each probe leaves tens of jobs; each probe must start on at
// most what one user leaves (its own job and one ahead). Without the
// drain, the probes after the first started on 20 to 30 jobs.
func TestProbesDoNotInheritABacklog(t *testing.T) {
	q := newBackgroundQueue()
	defer q.close()
	srv := httptest.NewServer(q)
	defer srv.Close()
	rec := &queueRecorder{q: q, phases: 4}
	cfg := scaleout.Config{
		ScaleCmd: "echo {n} >/dev/null; echo " + srv.URL + "/", DownCmd: "true", Replicas: []int{1},
		SLO: 80 * time.Millisecond, ProbeDuration: 500 * time.Millisecond, StartRate: 200, Cores: 2,
		DrainGap: 50 * time.Millisecond,
		Workload: func(u string) (scaleout.Workload, error) {
			rec.LoadRunner = measure.LoadRunner{Target: &load.Request{Method: "GET", URL: u}, Timeout: scaleout.ProbeTimeout}
			return scaleout.Workload{Source: rec, ReadyURL: u}, nil
		},
		Progress: func(line string) { t.Log(line) },
	}
	if _, err := scaleout.Run(context.Background(), cfg); !errors.Is(err, errEnough) {
		t.Fatalf("run: %v, want it stopped after %d phases", err, rec.phases)
	}
	t.Logf("jobs pending at each phase's start %v, at its end %v", rec.started, rec.left)
	// The warm-up (phase 0) starts on a fresh queue; the probes after it.
	for i, n := range rec.started[1:] {
		if n > 2 {
			t.Errorf("probe %d started on %d pending jobs (the phase before left %d), want at most 2: not drained", i+1, n, rec.left[i])
		}
	}
	if maxLeft := max(rec.left[1], rec.left[2]); maxLeft < 10 {
		t.Errorf("the probes left at most %d jobs behind: no backlog to drain, the test proves nothing", maxLeft)
	}
}
