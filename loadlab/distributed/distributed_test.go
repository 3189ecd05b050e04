package distributed

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/perfscale/perfscale/loadlab/load"
)

// knownLatency is a target answering every request after delay.
func knownLatency(t *testing.T, delay time.Duration) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		time.Sleep(delay)
		w.Write([]byte("ok")) //nolint:errcheck // test target
	}))
	t.Cleanup(srv.Close)
	return srv, &served
}

// samples keeps the raw latencies an agent records, in µs as recorded.
type samples struct {
	mu  sync.Mutex
	all []int64
}

func (s *samples) add(_ int, d time.Duration, _ bool) {
	us := min(max(int64(d/time.Microsecond), 1), int64(time.Hour/time.Microsecond))
	s.mu.Lock()
	s.all = append(s.all, us)
	s.mu.Unlock()
}

// startAgents starts n agents, each an HTTP server of its own, recording
// raw samples into s (when not nil).
func startAgents(t *testing.T, n int, s *samples) ([]*Agent, []*httptest.Server) {
	t.Helper()
	var agents []*Agent
	var servers []*httptest.Server
	for range n {
		a := &Agent{}
		if s != nil {
			a.Sample = s.add
		}
		srv := httptest.NewServer(a.Handler())
		t.Cleanup(srv.Close)
		agents = append(agents, a)
		servers = append(servers, srv)
	}
	return agents, servers
}

func addrs(servers []*httptest.Server) []string {
	var out []string
	for _, s := range servers {
		out = append(out, strings.TrimPrefix(s.URL, "http://"))
	}
	return out
}

// exactPercentile is the sample at the rank hdrhistogram reads a
// percentile at.
func exactPercentile(sorted []int64, q float64) int64 {
	rank := max(int64(q/100*float64(len(sorted))+0.5), 1)
	return sorted[rank-1]
}

func TestThreeAgentsMergeExactlyAtTheAskedRate(t *testing.T) {
	target, served := knownLatency(t, 2*time.Millisecond)
	var raw samples
	_, servers := startAgents(t, 3, &raw)
	const rate, dur = 300.0, 2 * time.Second
	spec := Spec{Rate: rate, Duration: dur, Timeout: 5 * time.Second, Target: &load.Request{Method: "GET", URL: target.URL + "/menu"}}
	c := &Coordinator{Agents: addrs(servers)}
	res, err := c.Run(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Agents) != 3 {
		t.Fatalf("%d agents in the result, want 3", len(res.Agents))
	}
	want := int64(rate * dur.Seconds())
	if res.Requests != int64(len(raw.all)) || res.Requests != served.Load() {
		t.Fatalf("merged %d requests, agents recorded %d samples, the target served %d", res.Requests, len(raw.all), served.Load())
	}
	// The rate sent is the schedule's: every request due within the
	// duration went out and was answered. (The throughput, over the run
	// and its last answers' wait, is lower by that wait: at a load of 25
	// under the race detector the target's p99 was 300 ms.)
	if sent := float64(res.Sent) / dur.Seconds(); sent < 0.98*rate || sent > 1.02*rate || res.Sent != res.Requests {
		t.Errorf("sent %d requests (%.1f req/s), %d answered; want %g req/s within 2%%", res.Sent, sent, res.Requests, rate)
	}
	var agentRequests int64
	for _, a := range res.Agents {
		if a.Rate != rate/3 || a.Requests < want/3-2 || a.Requests > want/3+2 {
			t.Errorf("%s: rate %g, %d requests; want %g and about %d", a.Name, a.Rate, a.Requests, rate/3, want/3)
		}
		// Each agent's own figures, for the report's agents table: the
		// target answers after 2 ms, so no agent's median is below it.
		if a.ThroughputRPS <= 0 || a.Errors.Total() != 0 || a.Latency.P50 < 2*time.Millisecond || a.Latency.P99 < a.Latency.P50 || a.Latency.P99 > res.Latency.Max {
			t.Errorf("%s: %.1f req/s, errors %v, p50 %v, p99 %v; want its own rate, no errors, p50 >= 2ms <= p99 <= the run's max %v",
				a.Name, a.ThroughputRPS, a.Errors, a.Latency.P50, a.Latency.P99, res.Latency.Max)
		}
		agentRequests += a.Requests
	}
	if agentRequests != res.Requests {
		t.Errorf("the agents' requests add to %d, the run's are %d", agentRequests, res.Requests)
	}

	// The merged histograms equal one histogram holding every agent's
	// samples, and so its percentiles are the samples' own to HDR
	// precision.
	union := hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3)
	for _, us := range raw.all {
		union.RecordValue(us) //nolint:errcheck // in range
	}
	if !res.Histogram.Equals(union) {
		t.Errorf("merged histogram differs from the union of the samples: %d and %d values", res.Histogram.TotalCount(), union.TotalCount())
	}
	sorted := slices.Clone(raw.all)
	slices.Sort(sorted)
	for _, p := range []struct {
		q   float64
		got time.Duration
	}{{50, res.Latency.P50}, {99, res.Latency.P99}, {99.9, res.Latency.P999}, {99, res.Endpoints[0].Latency.P99}} {
		exact := exactPercentile(sorted, p.q)
		got := int64(p.got / time.Microsecond)
		if got < exact || got > exact+exact/1000+1 {
			t.Errorf("p%g %d µs, the samples' own %d µs: beyond HDR precision", p.q, got, exact)
		}
	}
	if res.Latency.P50 < 2*time.Millisecond {
		t.Errorf("p50 %v below the target's 2 ms", res.Latency.P50)
	}
	var inSeries int64
	for _, s := range res.Series {
		inSeries += s.Requests
	}
	if inSeries != res.Requests {
		t.Errorf("the series holds %d requests, the run %d", inSeries, res.Requests)
	}
}

func TestAUserRunSplitsUsersAndRequests(t *testing.T) {
	target, served := knownLatency(t, 0)
	_, servers := startAgents(t, 3, nil)
	spec := Spec{Concurrency: 4, Requests: 100, Target: &load.Request{URL: target.URL}}
	res, err := (&Coordinator{Agents: addrs(servers)}).Run(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 100 || served.Load() != 100 || res.Model != "closed" || res.Concurrency != 4 {
		t.Fatalf("%d requests (%d served), model %s with %d users; want 100 closed with 4", res.Requests, served.Load(), res.Model, res.Concurrency)
	}
	users := 0
	for _, a := range res.Agents {
		users += a.Concurrency
	}
	if users != 4 || res.Agents[0].Requests != 34 {
		t.Errorf("agents: %+v; want 4 users in all and 34 requests for the first", res.Agents)
	}
}

func TestAnAgentDyingMidRunFailsTheRun(t *testing.T) {
	target, _ := knownLatency(t, time.Millisecond)
	agents, servers := startAgents(t, 3, nil)
	// The second agent's connection is cut once it has sent requests:
	// the coordinator sees what a killed agent process looks like.
	var once sync.Once
	agents[1].Sample = func(int, time.Duration, bool) {
		once.Do(func() { go servers[1].CloseClientConnections() })
	}
	spec := Spec{Rate: 150, Duration: 20 * time.Second, Target: &load.Request{URL: target.URL}}
	began := time.Now()
	res, err := (&Coordinator{Agents: addrs(servers)}).Run(context.Background(), spec)
	var ae *AgentError
	if !errors.As(err, &ae) || !strings.HasPrefix(ae.Agent, "agent 2 (") || ae.During == "before the start" {
		t.Fatalf("result %v, err %v; want agent 2 failing mid-run", res, err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "connection lost") {
		t.Errorf("error %q, want one line saying the connection was lost", msg)
	}
	if d := time.Since(began); d > 15*time.Second {
		t.Errorf("the run took %v to fail, not stopped at the failure", d)
	}
	// The other agents stopped their parts and take a new run.
	for _, i := range []int{0, 2} {
		waitFree(t, agents[i])
	}
}

// waitFree waits until the agent holds no run.
func waitFree(t *testing.T, a *Agent) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		free := a.pending == nil
		a.mu.Unlock()
		if free {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("an agent still runs its part after the run failed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAgentProblemsAreNamed(t *testing.T) {
	target, _ := knownLatency(t, 0)
	agents, servers := startAgents(t, 2, nil)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()

	_, err := (&Coordinator{Agents: []string{addrs(servers)[0], deadAddr}}).Run(context.Background(),
		Spec{Rate: 10, Duration: time.Second, Target: &load.Request{URL: target.URL}})
	var ae *AgentError
	if !errors.As(err, &ae) || ae.Agent != "agent 2 ("+deadAddr+")" || !strings.Contains(err.Error(), "cannot reach it") {
		t.Fatalf("err %v, want agent 2 unreachable", err)
	}
	waitFree(t, agents[0]) // its prepared run was forgotten

	_, err = (&Coordinator{Agents: addrs(servers)}).Run(context.Background(),
		Spec{Rate: 10, Duration: time.Second, Target: &load.Request{URL: "ftp://x"}})
	var bad *BadSpecError
	if !errors.As(err, &bad) || !strings.Contains(err.Error(), "http://") {
		t.Fatalf("err %v, want the agents' refusal of the URL", err)
	}
	_, err = (&Coordinator{Agents: addrs(servers)}).Run(context.Background(),
		Spec{Concurrency: 1, Requests: 10, Target: &load.Request{URL: target.URL}})
	if err == nil || !strings.Contains(err.Error(), "1 users cannot be split across 2 agents") {
		t.Fatalf("err %v, want the split refused", err)
	}
}

func TestSplit(t *testing.T) {
	parts, err := Split(Spec{Rate: 100, Requests: 10, Stages: nil}, 3)
	if err != nil {
		t.Fatal(err)
	}
	var reqs int64
	for i, p := range parts {
		reqs += p.Spec.Requests
		if p.Phase != time.Duration(i)*10*time.Millisecond {
			t.Errorf("part %d phase %v, want %v", i, p.Phase, time.Duration(i)*10*time.Millisecond)
		}
	}
	if reqs != 10 || parts[0].Spec.Requests != 4 {
		t.Errorf("requests split %d (first %d), want 10 (first 4)", reqs, parts[0].Spec.Requests)
	}
	parts, err = Split(Spec{StagedUsers: true, Stages: []load.Stage{{Duration: time.Second, Target: 5}, {Duration: time.Second, Target: 0}}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if parts[0].Spec.Stages[0].Target != 3 || parts[1].Spec.Stages[0].Target != 2 || parts[1].Spec.Stages[1].Target != 0 {
		t.Errorf("user stages split %+v", parts)
	}
	if _, err := Split(Spec{StagedUsers: true, Stages: []load.Stage{{Duration: time.Second, Target: 1}}}, 2); err == nil {
		t.Error("1 user split across 2 agents")
	}
	parts, _ = Split(Spec{Stages: []load.Stage{{Duration: time.Second, Target: 90}}}, 3)
	if parts[2].Spec.Stages[0].Target != 30 {
		t.Errorf("rate stages split %+v", parts[2].Spec.Stages)
	}
}

// A heartbeat due as a run ends is sent before run returns (and so
// before the result) or not at all: never after, when the run's response
// may be finished (the agent process crashed on such a late progress
// line). With a heartbeat every microsecond, one is due as every run
// ends: before the fix, about every other run sent one late.
func TestNoHeartbeatAfterTheRun(t *testing.T) {
	target, _ := knownLatency(t, 0)
	a := &Agent{heartbeat: time.Microsecond}
	var late atomic.Int64
	for range 20 {
		var returned atomic.Bool // this run's
		send := func(event) error {
			if returned.Load() {
				late.Add(1)
			}
			return nil
		}
		cfg := load.Config{Concurrency: 1, Requests: 1, Target: &load.Request{URL: target.URL}}
		if _, _, err := a.run(context.Background(), cfg, time.Now(), send); err != nil {
			t.Fatal(err)
		}
		returned.Store(true)
	}
	if n := late.Load(); n > 0 {
		t.Fatalf("%d progress lines sent after their run returned", n)
	}
}
