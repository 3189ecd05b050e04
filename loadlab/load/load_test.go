package load_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/scaleout/testsystem"
)

// truthServer answers after a fixed delay and records, as the truth, how
// long each request took on the server side. stallAt > 0 makes it hold
// every request arriving from the stallAt-th one on until stallFor has
// passed since the stall began, like a GC pause or a lock convoy.
type truthServer struct {
	*httptest.Server
	delay    time.Duration
	stallAt  int64
	stallFor time.Duration

	count     atomic.Int64
	mu        sync.Mutex
	durations []time.Duration
	arrivals  []time.Time
	stallEnd  time.Time
}

func newTruthServer(t *testing.T, delay time.Duration) *truthServer {
	s := &truthServer{delay: delay}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *truthServer) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	n := s.count.Add(1)
	s.mu.Lock()
	s.arrivals = append(s.arrivals, start)
	s.mu.Unlock()
	if s.stallAt > 0 {
		s.mu.Lock()
		if n == s.stallAt {
			s.stallEnd = start.Add(s.stallFor)
		}
		end := s.stallEnd
		s.mu.Unlock()
		if start.Before(end) {
			time.Sleep(time.Until(end))
		}
	}
	time.Sleep(s.delay)
	w.Write([]byte("ok"))
	d := time.Since(start)
	s.mu.Lock()
	s.durations = append(s.durations, d)
	s.mu.Unlock()
}

// quantile of the server-side durations (nearest rank).
func (s *truthServer) quantile(q float64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := slices.Clone(s.durations)
	slices.Sort(d)
	i := int(q*float64(len(d))+0.5) - 1
	return d[max(0, min(i, len(d)-1))]
}

// slowerThan counts the requests that took longer than d on the server.
func (s *truthServer) slowerThan(d time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, took := range s.durations {
		if took > d {
			n++
		}
	}
	return n
}

func near(got, want time.Duration) bool {
	tol := max(want/20, time.Millisecond) // 5% or 1 ms
	return got >= want-tol && got <= want+tol
}

func run(t *testing.T, cfg load.Config) *load.Result {
	t.Helper()
	res, err := load.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

var clients = []load.Client{load.ClientFastHTTP, load.ClientNetHTTP}

// The generator and the truth server (this process) run at a real-time
// priority (testsystem.RealTimeTest): beside two CPU hogs, nethttp's open
// loop missed the 1 ms tolerance at a load average of 6 to 16, its
// requests late by the machine's run queue, and at the test system's CPU
// weight the server's own 20 ms sleeps still overslept by 5 to 15 ms at a
// load average of 30 (the generator then flagged every attempt).
//
// Not under -race: the detector's instrumentation adds about 2 ms to every
// fasthttp request (p99 23.0 ms against the server's 21.2 ms in all five
// attempts of a CI run), which measures the detector, not the generator;
// the same test runs without it in the suite's first pass.
func TestLatencyMatchesAKnownDelay(t *testing.T) {
	if raceDetector {
		t.Skip("timing accuracy is not measurable under the race detector; checked by the run without -race")
	}
	testsystem.RealTimeTest(t)
	for _, client := range clients {
		for _, model := range []string{"closed", "open"} {
			t.Run(string(client)+"/"+model, func(t *testing.T) {
				// On a shared 2-core machine another test package can take
				// the CPU for a moment and delay the client, not the server.
				// A generator that mismeasures does so every time, so one
				// clean attempt out of five settles it (three were not
				// enough beside the other packages in a fresh CI run: one
				// unflagged attempt was 0.2 ms past the tolerance).
				// A run the generator itself flagged (its CPU, its schedule)
				// or noted (the machine's CPU) did not lie either: it said its figures
				// may be off. It only fails when it is off and claims it
				// kept up.
				var problems []string
				flagged := 0
				const attempts = 5
				for attempt := 1; attempt <= attempts; attempt++ {
					var reasons []string
					problems, reasons = knownDelayRun(t, client, model)
					if len(problems) == 0 {
						return
					}
					t.Logf("attempt %d: %s", attempt, strings.Join(problems, "; "))
					if len(reasons) > 0 {
						flagged++
						t.Logf("attempt %d: the generator warned: %s", attempt, strings.Join(reasons, "; "))
					}
				}
				if flagged == attempts {
					t.Logf("the machine was too busy to judge accuracy, and loadlab said so every time")
					return
				}
				t.Fatalf("%d attempts off the truth, the last: %s", attempts, strings.Join(problems, "; "))
			})
		}
	}
}

func knownDelayRun(t *testing.T, client load.Client, model string) (problems, warnings []string) {
	srv := newTruthServer(t, 20*time.Millisecond)
	cfg := load.Config{Target: &load.Request{Method: "GET", URL: srv.URL}, Duration: 1500 * time.Millisecond, Client: client}
	if model == "open" {
		// 200/s at 20 ms keeps about four requests in flight: the
		// generator must grow its workers as fast as the schedule needs
		// them, or the first requests wait in it and inflate the tail.
		cfg.Rate = 200
	} else {
		cfg.Concurrency = 4
	}
	res := run(t, cfg)
	if res.Requests != srv.count.Load() {
		t.Fatalf("reported %d requests, the server answered %d", res.Requests, srv.count.Load())
	}
	for _, c := range []struct {
		name string
		got  time.Duration
		q    float64
	}{{"p50", res.Latency.P50, .50}, {"p90", res.Latency.P90, .90}, {"p99", res.Latency.P99, .99}} {
		if want := srv.quantile(c.q); !near(c.got, want) {
			problems = append(problems, fmt.Sprintf("%s = %v, the server measured %v", c.name, c.got, want))
		}
	}
	if res.Latency.Min < 20*time.Millisecond {
		t.Fatalf("min %v is below the server's fixed delay", res.Latency.Min)
	}
	return problems, append(res.SaturationReasons, res.Notes...)
}

func TestOpenLoopShowsAStallThatClosedLoopHides(t *testing.T) {
	// The lab at the test system's CPU weight: beside two CPU hogs at the
	// default weight the generator's own wake-ups added up to 65 ms to
	// the one-connection p99 (543 ms for 480).
	testsystem.WeighTest(t)
	const rate, runFor, stall = 200, 2 * time.Second, 500 * time.Millisecond
	open := func(t *testing.T, rate, maxInFlight int) (*load.Result, *truthServer) {
		srv := newTruthServer(t, time.Millisecond)
		srv.stallAt, srv.stallFor = int64(rate/2), stall // half a second in
		res := run(t, load.Config{Target: &load.Request{Method: "GET", URL: srv.URL}, Rate: float64(rate), Duration: runFor, MaxInFlight: maxInFlight})
		return res, srv
	}
	// Requests due during the stall wait until its end: the slowest 1% are
	// the first ones, which waited about stall - (1% of N)/rate.
	p99After := func(rate int) time.Duration {
		n := float64(rate) * runFor.Seconds()
		return stall - time.Duration(0.01*n/float64(rate)*float64(time.Second))
	}
	wantP99 := p99After(rate)

	t.Run("open loop", func(t *testing.T) {
		// Agreement with the server's own p99 is the known-delay test's
		// property, and, as there, another process taking the CPU for a
		// moment delays the client, not the server (seen in a fresh clone
		// beside five busy builds: 651 ms against 614 ms). A generator that
		// mismeasures does so every time, so one agreeing run of three
		// settles it; the stall must show in every run.
		var res *load.Result
		var srv *truthServer
		const attempts = 3
		for attempt := 1; ; attempt++ {
			res, srv = open(t, rate, 0)
			if near(res.Latency.P99, srv.quantile(.99)) {
				break
			}
			if attempt == attempts {
				t.Fatalf("%d runs off the truth, the last: p99 = %v, the server measured %v", attempts, res.Latency.P99, srv.quantile(.99))
			}
			t.Logf("attempt %d: p99 = %v, the server measured %v", attempt, res.Latency.P99, srv.quantile(.99))
		}
		if res.Latency.P99 < wantP99*9/10 || res.Latency.Max < stall*9/10 {
			t.Errorf("p99 %v, max %v: the %v stall does not show (want p99 near %v)", res.Latency.P99, res.Latency.Max, stall, wantP99)
		}
		// The stall is the target's: no in-flight cap was hit and the
		// schedule was kept. (Lateness from other processes sharing the
		// CPU is reported too, rightly, so it is not held against this.)
		for _, r := range res.SaturationReasons {
			if strings.Contains(r, "in-flight") || strings.Contains(r, "the rate called for") {
				t.Errorf("the target's stall was blamed on the generator: %s", r)
			}
		}
	})
	t.Run("open loop with one connection", func(t *testing.T) {
		// Only one request at a time reaches the server, so the server sees
		// a single slow request; the others wait in the generator, and
		// that wait must count, measured from each request's intended time.
		// The rate is low enough that the one connection drains the queue
		// the stall left soon after it: at 200 req/s a request's round
		// trip (a 1 ms sleep and two goroutine wake-ups) beside two CPU
		// hogs came near the 5 ms between sends, the queue hardly shrank,
		// and the requests after the first waited longer than it did. At
		// 50 req/s a round trip may take four times as long.
		const rate = 50
		wantP99 := p99After(rate)
		res, srv := open(t, rate, 1)
		// Counted, not the server's p99: of the 100 requests, the p99 is
		// the second slowest, and a run that sent a few fewer made it the
		// stalled one.
		if got := srv.slowerThan(stall / 2); got != 1 {
			t.Fatalf("setup: %d of the server's %d requests took over %v; expected the stall to hit one request only", got, srv.count.Load(), stall/2)
		}
		// At least 90% of it: a wait counted from the actual send (the
		// coordinated omission this test is about) puts the p99 near the
		// 1 ms answer. Below 900 ms: a wait counted from before the
		// intended time (the run's start) puts it past a second. The
		// queue the stall leaves drains more slowly on a busy machine,
		// which lengthens the waits after the first (674 ms at a load
		// average of 25, in a fresh-clone CI run), so 10% above was the
		// scheduler's bound, not the generator's.
		if res.Latency.P99 < wantP99*9/10 || res.Latency.P99 > 900*time.Millisecond {
			t.Errorf("p99 = %v, want about %v: latency is not measured from the intended send time", res.Latency.P99, wantP99)
		}
		if !res.GeneratorSaturated || !strings.Contains(strings.Join(res.SaturationReasons, ";"), "in-flight") {
			t.Errorf("requests waited for the only connection, yet no warning: %v", res.SaturationReasons)
		}
	})
	t.Run("closed loop hides it", func(t *testing.T) {
		srv := newTruthServer(t, time.Millisecond)
		srv.stallAt, srv.stallFor = 200, stall
		res := run(t, load.Config{Target: &load.Request{Method: "GET", URL: srv.URL}, Concurrency: 1, Duration: runFor})
		if res.Latency.Max < stall*9/10 {
			t.Fatalf("closed loop max %v: the stall request itself is missing", res.Latency.Max)
		}
		// One user waits for the stalled request before sending the next:
		// that request is the only one to see the stall, and the p99 hides
		// it. Not a fixed bound on the p99 (it was 50 ms): beside two CPU
		// hogs the p99 of these 1 ms requests alone reached 130 ms.
		var stalled int64
		for _, bar := range res.Histogram.Distribution() {
			if time.Duration(bar.From)*time.Microsecond >= stall*9/10 {
				stalled += bar.Count
			}
		}
		if stalled != 1 || res.Latency.P99 >= stall*9/10 {
			t.Errorf("closed loop: %d of %d requests saw the %v stall, p99 %v: expected one, and the stall hidden from the p99 (coordinated omission)",
				stalled, res.Requests, stall, res.Latency.P99)
		}
	})
}

func TestOpenLoopKeepsItsRate(t *testing.T) {
	// A request bound, not a duration, so that the count is the
	// generator's to keep, not the scheduler's (a duration's end came late
	// beside two CPU hogs, and 610 requests went out for 600). The
	// schedule puts request n at n/rate: the run cannot end before the
	// last one's time.
	//
	// The rate kept is judged on each request's intended send time (the
	// instant its latency counts from), recovered through the Sample hook
	// as the time of its sample less its latency: those are the
	// generator's to keep, and a pacer held up by other processes sends
	// late without moving them. The gaps between the arrivals at the
	// server, judged before, were the machine's too: at a load average of
	// 28 their median left the ±20% window.
	const rate, requests = 300, 600
	srv := newTruthServer(t, 0)
	var mu sync.Mutex
	var intended []time.Time
	sample := func(_ int, latency time.Duration, _ bool) {
		at := time.Now()
		mu.Lock()
		intended = append(intended, at.Add(-latency))
		mu.Unlock()
	}
	res := run(t, load.Config{Target: &load.Request{Method: "GET", URL: srv.URL}, Rate: rate, Requests: requests, Sample: sample})
	if got := srv.count.Load(); got != requests || res.Requests != requests || len(intended) != requests {
		t.Fatalf("the server got %d requests, the generator reported %d (errors: %v, %+v) and sampled %d; want %d",
			got, res.Requests, res.Errors, res.Endpoints[0].Errors.Causes, len(intended), requests)
	}
	interval := time.Second / rate
	if last := (requests - 1) * interval; res.Elapsed < last-time.Millisecond {
		t.Fatalf("%d requests at %d/s took %v: faster than the rate (the last is due at %v)", requests, rate, res.Elapsed, last)
	}
	slices.SortFunc(intended, time.Time.Compare)
	// One interval apart: a sent-early request counts from when it went
	// out (at most 50 µs early), and a sample delayed by a preemption
	// moves one time; the median holds either way.
	gaps := make([]time.Duration, 0, len(intended))
	for i := 1; i < len(intended); i++ {
		gaps = append(gaps, intended[i].Sub(intended[i-1]))
	}
	slices.Sort(gaps)
	if gap := gaps[len(gaps)/2]; gap < interval*98/100 || gap > interval*102/100 {
		t.Fatalf("requests were meant to go out %v apart (median), want %v at %d/s", gap, interval, rate)
	}
	if span, want := intended[len(intended)*9/10].Sub(intended[len(intended)/10]), time.Duration(len(intended)*9/10-len(intended)/10)*interval; span < want*99/100 || span > want*101/100 {
		t.Fatalf("the middle 80%% of the requests were meant to go out over %v, want %v at %d/s", span, want, rate)
	}
	// Never ahead of the schedule: the k-th arrival at the server is not
	// before the k-th intended send time (less one interval for a
	// sample a preemption delayed). Late is the machine's; early would be
	// the generator's.
	srv.mu.Lock()
	arrivals := slices.Clone(srv.arrivals)
	srv.mu.Unlock()
	slices.SortFunc(arrivals, time.Time.Compare)
	for k, a := range arrivals {
		if a.Before(intended[k].Add(-interval)) {
			t.Fatalf("request %d reached the server %v before its intended send time", k, intended[k].Sub(a))
		}
	}
	for _, r := range res.SaturationReasons {
		if strings.Contains(r, "in-flight") {
			t.Fatalf("an easy run was reported as saturated: %v", r)
		}
		t.Logf("reported: %s", r)
	}
	if len(res.Series) < 2 {
		t.Fatalf("series has %d seconds", len(res.Series))
	}
	var sum int64
	for _, s := range res.Series {
		sum += s.Requests
	}
	if sum != res.Requests {
		t.Fatalf("series adds up to %d, total %d", sum, res.Requests)
	}
}

func TestRequestsBoundIsExact(t *testing.T) {
	for _, cfg := range []load.Config{{Concurrency: 7, Requests: 137}, {Rate: 2000, Requests: 137}} {
		t.Run(fmt.Sprintf("rate=%v,concurrency=%d", cfg.Rate, cfg.Concurrency), func(t *testing.T) {
			srv := newTruthServer(t, 0)
			cfg.Target = &load.Request{Method: "GET", URL: srv.URL}
			res := run(t, cfg)
			if res.Requests != 137 || srv.count.Load() != 137 {
				t.Fatalf("reported %d, server got %d; want 137", res.Requests, srv.count.Load())
			}
		})
	}
}

func TestErrorsAreClassified(t *testing.T) {
	// /slow never answers: it holds each request until the client gives
	// up, so every request times out however the machine schedules the
	// two sides (release frees any the client left open when the test ends).
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/404":
			http.NotFound(w, r)
		case "/503":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String()
	ln.Close()
	// Only /slow has a short timeout: on a busy machine 50 ms can pass
	// before a quick answer or a refused connection is read.
	tests := []struct {
		url     string
		timeout time.Duration
		want    func(load.ErrorCounts) int64
	}{
		{srv.URL + "/404", 0, func(e load.ErrorCounts) int64 { return e.Status4xx }},
		{srv.URL + "/503", 0, func(e load.ErrorCounts) int64 { return e.Status5xx }},
		{srv.URL + "/slow", 50 * time.Millisecond, func(e load.ErrorCounts) int64 { return e.Timeout }},
		{closed, 0, func(e load.ErrorCounts) int64 { return e.Connection }},
	}
	for _, client := range clients {
		for _, tt := range tests {
			t.Run(string(client)+" "+tt.url, func(t *testing.T) {
				res := run(t, load.Config{Target: &load.Request{Method: "GET", URL: tt.url}, Concurrency: 2, Requests: 6,
					Timeout: tt.timeout, Client: client})
				if got := tt.want(res.Errors); got != 6 || res.Errors.Total() != 6 {
					t.Fatalf("errors = %+v, want all 6 of the expected kind", res.Errors)
				}
			})
		}
	}
}

func TestCancelReturnsThePartialResult(t *testing.T) {
	// One user sends its next request only after recording the previous
	// answer, so once the server sees the third request two are counted:
	// the run is cancelled then, not after a wall-clock while.
	var seen atomic.Int64
	third := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) == 3 {
			close(third)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-third
		cancel()
	}()
	const runFor = time.Minute
	start := time.Now()
	res, err := load.Run(ctx, load.Config{Target: &load.Request{Method: "GET", URL: srv.URL}, Concurrency: 1, Duration: runFor})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > runFor/2 {
		t.Fatalf("the run went on for %v after the cancel", took)
	}
	if res.Requests < 2 {
		t.Fatalf("%d requests in the partial result; want the 2 answered before the cancel", res.Requests)
	}
}

func TestRequestsCarryMethodHeadersAndBody(t *testing.T) {
	for _, client := range clients {
		t.Run(string(client), func(t *testing.T) {
			var bad atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b := make([]byte, 64)
				n, _ := r.Body.Read(b)
				if r.Method != "POST" || r.Header.Get("X-Test") != "yes" || string(b[:n]) != `{"a":1}` {
					bad.Add(1)
				}
			}))
			defer srv.Close()
			res := run(t, load.Config{Concurrency: 2, Requests: 20, Client: client, Target: &load.Request{
				Method: "POST", URL: srv.URL, Header: http.Header{"X-Test": {"yes"}}, Body: []byte(`{"a":1}`)}})
			if res.Requests != 20 || bad.Load() != 0 {
				t.Fatalf("%d requests, %d malformed", res.Requests, bad.Load())
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	target := &load.Request{Method: "GET", URL: "http://127.0.0.1:1/"}
	tests := []struct {
		name string
		cfg  load.Config
	}{
		{"no model", load.Config{Target: target, Duration: time.Second}},
		{"both models", load.Config{Target: target, Duration: time.Second, Rate: 1, Concurrency: 1}},
		{"no bound", load.Config{Target: target, Rate: 1}},
		{"no target", load.Config{Rate: 1, Duration: time.Second}},
		{"negative rate", load.Config{Target: target, Rate: -1, Duration: time.Second}},
		{"think in open loop", load.Config{Target: target, Rate: 1, Duration: time.Second, ThinkTime: time.Second}},
		{"bad url", load.Config{Target: &load.Request{Method: "GET", URL: "localhost:8080"}, Rate: 1, Duration: time.Second}},
		{"no host", load.Config{Target: &load.Request{Method: "GET", URL: "http:///x"}, Rate: 1, Duration: time.Second}},
		{"ftp", load.Config{Target: &load.Request{Method: "GET", URL: "ftp://example.com"}, Rate: 1, Duration: time.Second}},
		{"bad method", load.Config{Target: &load.Request{Method: "GE T", URL: "http://127.0.0.1:1/"}, Rate: 1, Duration: time.Second}},
		{"bad client", load.Config{Target: target, Rate: 1, Duration: time.Second, Client: "curl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := load.Run(context.Background(), tt.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestThinkTimeSpacesRequestsAndIsNotLatency(t *testing.T) {
	// Each user thinks after each answer, and one of the two sends at least
	// half of the requests: the run cannot be shorter than that many
	// thinks, however the users are scheduled. Think time counted as
	// latency would put p50 at think or above.
	srv := newTruthServer(t, 0)
	const users, requests, think = 2, 6, 200 * time.Millisecond
	res := run(t, load.Config{Target: &load.Request{Method: "GET", URL: srv.URL}, Concurrency: users, ThinkTime: think, Requests: requests})
	if got := srv.count.Load(); got != requests || res.Requests != requests {
		t.Fatalf("the server got %d requests, the generator reported %d; want %d", got, res.Requests, requests)
	}
	if least := requests / users * think; res.Elapsed < least {
		t.Fatalf("%d requests by %d users thinking %v took %v, want at least %v", requests, users, think, res.Elapsed, least)
	}
	if res.Latency.P50 >= think/2 {
		t.Fatalf("p50 %v: think time was counted as latency", res.Latency.P50)
	}
}

func TestProgressReportsEverySecond(t *testing.T) {
	srv := newTruthServer(t, time.Millisecond)
	var mu sync.Mutex
	var snaps []load.Snapshot
	res := run(t, load.Config{Target: &load.Request{Method: "GET", URL: srv.URL}, Rate: 100, Duration: 2500 * time.Millisecond,
		Progress: func(s load.Snapshot) {
			mu.Lock()
			snaps = append(snaps, s)
			mu.Unlock()
		}})
	mu.Lock()
	defer mu.Unlock()
	if len(snaps) != 2 {
		t.Fatalf("%d progress calls in a 2.5 s run, want 2 (one a second)", len(snaps))
	}
	// What a snapshot holds follows from the ones before it, whenever a
	// busy machine runs the ticker: its rate is the requests since the last
	// one over the time since the last one, and no more can have been
	// answered than the schedule had sent.
	var before load.Snapshot
	for i, s := range snaps {
		if s.Elapsed < time.Duration(i+1)*time.Second {
			t.Errorf("snapshot %d at %v, before its second", i, s.Elapsed)
		}
		if sent := int64(100*s.Elapsed.Seconds()) + 1; s.Requests > sent || s.Requests < before.Requests {
			t.Errorf("snapshot %d: %d requests at %v, want between the last snapshot's %d and the %d sent", i, s.Requests, s.Elapsed, before.Requests, sent)
		}
		want := float64(s.Requests-before.Requests) / (s.Elapsed - before.Elapsed).Seconds()
		if math.Abs(s.RateRPS-want) > 1e-6*want || s.Errors != 0 || (s.Requests > 0 && s.P99 <= 0) {
			t.Errorf("snapshot %d: %+v, want a rate of %.3f (since snapshot %d), no errors and a p99", i, s, want, i-1)
		}
		before = s
	}
	if snaps[1].Requests == 0 {
		t.Fatal("no request answered in two seconds")
	}
	if res.Requests < snaps[1].Requests {
		t.Fatalf("final %d requests, fewer than the last snapshot's %d", res.Requests, snaps[1].Requests)
	}
}

func TestErrorCountsSayHowRequestsFailed(t *testing.T) {
	for _, tc := range []struct {
		e    load.ErrorCounts
		want string
	}{
		{load.ErrorCounts{}, "none"},
		{load.ErrorCounts{Status4xx: 1610}, "4xx 1610"},
		{load.ErrorCounts{Status5xx: 3, Timeout: 2, Other: 1}, "5xx 3, timeout 2, other 1"},
		{load.ErrorCounts{Status4xx: 1, Status5xx: 2, Timeout: 3, Connection: 4, Other: 5}, "4xx 1, 5xx 2, timeout 3, connection 4, other 5"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.e, got, tc.want)
		}
	}
}
