package experiments

import (
	"context"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
)

// The test binary is also the systems the runner starts: with
// EXPERIMENTS_TEST_ADDR set it serves there, each answer after
// EXPERIMENTS_TEST_DELAY, until it is stopped.
func TestMain(m *testing.M) {
	if addr := os.Getenv("EXPERIMENTS_TEST_ADDR"); addr != "" {
		delay, _ := time.ParseDuration(os.Getenv("EXPERIMENTS_TEST_DELAY"))
		http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { //nolint:errcheck // stopped by a signal
			time.Sleep(delay)
			w.Write([]byte("ok")) //nolint:errcheck // the client went away
		}))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func served(delay string) *Setting {
	return &Setting{Label: "delay " + delay, Serve: "EXPERIMENTS_TEST_ADDR=127.0.0.1:{port} EXPERIMENTS_TEST_DELAY=" + delay + " exec {shop}", URL: "http://127.0.0.1:{port}"}
}

func testRunner(t *testing.T) *Runner {
	return &Runner{Shop: os.Args[0], TempDir: t.TempDir(), Cores: 2, ReadyTimeout: 20 * time.Second}
}

// A system that answers in 20 ms against one that answers at once: one
// user sees the difference, and the lab calls it a performance problem;
// both systems are stopped and their directories removed.
func TestRunnerMeasuresAKnownDelay(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts two systems and loads them (the run without -short measures it)")
	}
	e := Experiment{Name: "delay", Claim: "a sleep is slow", Expected: VerdictPerformance, Measure: MeasureBaseline,
		Path: "/", Endpoint: "GET /", Requests: 40, Without: served("0s"), With: served("20ms")}
	e.defaults()
	r := testRunner(t)
	rep, err := r.Run(context.Background(), []Experiment{e, {Name: "later", Claim: "c", Waits: "sharding"}})
	if err != nil {
		t.Fatal(err)
	}
	res := rep.Experiments[0]
	if res.Error != "" || res.Verdict != VerdictPerformance || !*res.Holds {
		t.Fatalf("verdict %q (error %q): %s", res.Verdict, res.Error, res.Reason)
	}
	if w := res.With.Metrics["GET /.p50_ms"]; w < 20 {
		t.Errorf("with: p50 %.2f ms, below the server's own 20 ms", w)
	}
	// Sent in rounds, alternating between the systems: every request counted.
	if n, m := res.Without.Metrics["GET /.requests"], res.With.Metrics["GET /.requests"]; n != 40 || m != 40 {
		t.Errorf("requests without %v, with %v; want 40 each", n, m)
	}
	// Each round's judged figure is kept, the 20 ms sleep in each.
	if r := res.With.Rounds; len(r) != baselineRounds || len(res.Without.Rounds) != baselineRounds || slices.Min(r) < 20 {
		t.Errorf("rounds without %v, with %v; want %d each, with at least 20 ms", res.Without.Rounds, r, baselineRounds)
	}
	if later := rep.Experiments[1]; later.Verdict != VerdictWaits || later.Holds != nil || later.With != nil {
		t.Errorf("a waiting experiment ran: %+v", later)
	}
	if left, _ := os.ReadDir(r.TempDir); len(left) > 0 {
		t.Errorf("systems' directories left behind: %v", left)
	}
}

func TestRunnerSaysWhyASystemDidNotStart(t *testing.T) {
	tests := []struct {
		name string
		with *Setting
		want string
	}{
		{"exits at once", &Setting{Serve: "echo no database here >&2; exit 1", URL: "http://127.0.0.1:{port}"}, "with: the system stopped before it answered at http://127.0.0.1:"},
		{"up fails", &Setting{Up: "echo cannot scale >&2; exit 3", Down: "true"}, "cannot scale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Experiment{Name: "broken", Claim: "c", Expected: VerdictPerformance, Measure: MeasureBaseline, Path: "/", Endpoint: "GET /",
				Requests: 10, Without: served("0s"), With: tt.with}
			e.defaults()
			rep, err := testRunner(t).Run(context.Background(), []Experiment{e})
			if err != nil {
				t.Fatal(err)
			}
			res := rep.Experiments[0]
			if res.Holds != nil || !strings.Contains(res.Error, tt.want) {
				t.Fatalf("error %q, want %q", res.Error, tt.want)
			}
		})
	}
}

// A side's rounds add up: each endpoint's latencies from the merged
// histograms (the median of all the rounds, not a median of medians),
// its requests and errors, and the server's CPU over the time they took.
func TestCombineStepsMergesTheRounds(t *testing.T) {
	round := func(seconds, cpu float64, latenciesUS ...int64) measure.Step {
		h := hdrhistogram.New(1, 60_000_000, 3)
		for _, v := range latenciesUS {
			h.RecordValue(v)
		}
		n := int64(len(latenciesUS))
		return measure.Step{Requests: n + 1, Errors: 1, ServerCPUCores: cpu, Load: &load.Result{Elapsed: time.Duration(seconds * float64(time.Second)),
			Endpoints: []load.Endpoint{{Name: "checkout", Requests: n + 1, Errors: load.EndpointErrors{Total: 1}, SuccessHistogram: h}}}}
	}
	s := combineSteps([]measure.Step{round(1, 0.2, 1000, 1000, 1000), round(3, 0.6, 3000, 3000, 3000, 3000)})
	ep := s.Load.Endpoints
	if len(ep) != 1 || ep[0].Requests != 9 || ep[0].Errors.Total != 2 || s.Requests != 9 || s.Errors != 2 {
		t.Fatalf("%+v", s)
	}
	if p50 := ep[0].SuccessLatency.P50; p50 < 2990*time.Microsecond || p50 > 3010*time.Microsecond {
		t.Errorf("p50 %v, want the merged median, 3 ms", p50)
	}
	if math.Abs(s.ServerCPUCores-0.5) > 1e-9 || math.Abs(s.AnsweredRPS-9.0/4) > 1e-9 {
		t.Errorf("server CPU %.3f cores at %.2f req/s, want (0.2 + 1.8) / 4 s = 0.5 at 9 / 4 s", s.ServerCPUCores, s.AnsweredRPS)
	}
	unseen := round(1, math.NaN(), 1000)
	if s := combineSteps([]measure.Step{round(1, 0.2, 1000), unseen}); !math.IsNaN(s.ServerCPUCores) {
		t.Errorf("a round that did not see the server's CPU gave %v", s.ServerCPUCores)
	}
}
