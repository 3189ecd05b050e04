package diagnose_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/procwatch"
	"github.com/perfscale/perfscale/loadlab/scaleout/testsystem"
)

// Ground truth: servers with known problems, each run in a child process
// (this test binary, re-executed) so that its CPU can be told from the
// generator's.
const serverKindEnv = "DIAGNOSE_TEST_SERVER"

func TestMain(m *testing.M) {
	if kind := os.Getenv(serverKindEnv); kind != "" {
		serve(kind)
		return
	}
	os.Exit(m.Run())
}

func handlerFor(kind string) http.HandlerFunc {
	var mu sync.Mutex
	var inFlight atomic.Int64
	pool := make(chan struct{}, runtime.NumCPU())
	switch kind {
	case "slow": // slow for everyone, even alone; no shared state
		return func(w http.ResponseWriter, r *http.Request) { time.Sleep(250 * time.Millisecond) }
	case "lock": // a global lock around 5 ms of waiting: a serial section
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			time.Sleep(5 * time.Millisecond)
			mu.Unlock()
		}
	case "coherency": // serial work that grows with the requests in flight
		// 2 ms a request in flight, 33 ms each with 16 users: on a busy
		// machine every wake-up in the serial section (the sleep's, the
		// lock's hand-off) and the generator's round trip add some
		// milliseconds to each request whatever the users, which with
		// 0.5 ms a request in flight can flatten the fall (a fresh-clone
		// CI run at a load average of 25 read it as contention; its trace
		// is not kept, so which way is not known). A delay d
		// added to each request keeps the throughput at 16 users under 0.8
		// of one user's while (3 ms + d) < 0.8 (33 ms + d): d under 117 ms,
		// where with 0.5 ms it was d under 28 ms. Its CPU falls with its
		// throughput (diagnose's fallOutlastsTheWait keeps that from
		// passing for CPU other work took).
		return func(w http.ResponseWriter, r *http.Request) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			mu.Lock()
			time.Sleep(time.Millisecond + time.Duration(n)*2*time.Millisecond)
			mu.Unlock()
		}
	case "pool": // a worker per core, each burning CPU: CPU-bound
		return func(w http.ResponseWriter, r *http.Request) {
			pool <- struct{}{}
			diagnose.BurnThreadCPU(8 * time.Millisecond)
			<-pool
		}
	case "healthy": // light, no shared state
		return func(w http.ResponseWriter, r *http.Request) { time.Sleep(2 * time.Millisecond) }
	}
	panic("unknown server kind " + kind)
}

func serve(kind string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	http.Serve(ln, handlerFor(kind))
}

// startServer runs a ground-truth server and returns its URL and PID.
func startServer(t *testing.T, kind string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serverKindEnv+"="+kind)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("server %s did not start: %v", kind, err)
	}
	port, _ := strconv.Atoi(strings.TrimSpace(line))
	return fmt.Sprintf("http://127.0.0.1:%d/", port), cmd.Process.Pid
}

func TestVerdictsOnServersWithKnownProblems(t *testing.T) {
	if testing.Short() {
		t.Skip("runs load against five servers; skipped with -short")
	}
	// perf is nil where the single-user verdict is not asserted.
	no, yes := new(bool), new(bool)
	*yes = true
	tests := []struct {
		kind     string
		slo      time.Duration
		baseline int64
		perf     *bool
		scal     bool
		want     string
		users    int
		step     time.Duration
	}{
		// The fast servers get the default 200-request baseline: with 40,
		// the p99 is the slowest request, and one 46 ms hiccup of a noisy
		// machine made the 8 ms pool server a "performance problem".
		{"slow", 200 * time.Millisecond, 12, yes, false, diagnose.KindNone, 16, 1500 * time.Millisecond},
		{"lock", 40 * time.Millisecond, 0, no, true, diagnose.KindContention, 16, 600 * time.Millisecond},
		{"coherency", 40 * time.Millisecond, 0, no, true, diagnose.KindCoherency, 16, 600 * time.Millisecond},
		// The pool's single user burns 8 ms of CPU: within the 40 ms SLO
		// alone. The ramp goes to 64 users, 32 queued per worker, so that
		// the p99 at the top stands far above the baseline, and its steps
		// are long enough that one slow step cannot pass for scaling.
		{"pool", 40 * time.Millisecond, 0, no, true, diagnose.KindCapacity, 64, 1200 * time.Millisecond},
		{"healthy", 40 * time.Millisecond, 0, no, false, diagnose.KindNone, 16, 600 * time.Millisecond},
	}
	// The lab (this process, the generator, and the servers it starts) at
	// the weight of the scale-out test system: beside two CPU hogs at the
	// default weight, the pool's one user (8 ms of CPU) had a p99 of 110
	// to 200 ms, the machine's share of CPU rather than the server's, and
	// the healthy server (2 ms) was judged "contention" when the starved
	// generator could not raise its throughput with the users.
	testsystem.WeighTest(t)
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			url, pid := startServer(t, tt.kind)
			port, _ := strconv.Atoi(url[strings.LastIndexByte(url[:len(url)-1], ':')+1 : len(url)-1])
			watch, err := procwatch.Discover(port, true)
			if err != nil || len(watch.Groups()) == 0 || !slices.Equal(watch.Groups()[0].Roots, []int{pid}) {
				t.Fatalf("Discover(%d) = %v, %v; want process %d first", port, watch.Describe(), err, pid)
			}
			// A ramp the machine held back gets no scalability verdict (the
			// lab says so, KindMachineBound), and a baseline it held back
			// no performance verdict (BaselineHeldBack): the server is
			// measured again for the verdict not given. A wrong verdict
			// fails at once, and so does a verdict held back in all three
			// attempts: an excused attempt never passes for a right one.
			perfJudged, scalJudged := tt.perf == nil, false
			for attempt := 1; !perfJudged || !scalJudged; attempt++ {
				if attempt > 3 {
					t.Fatalf("the machine held back every attempt's verdict (performance given %v, scalability given %v)", perfJudged, scalJudged)
				}
				rep, err := diagnose.Run(context.Background(), diagnose.Config{
					Target: url, SLO: tt.slo, MaxConcurrency: tt.users, StepDuration: tt.step,
					BaselineRequests: tt.baseline, BaselineDuration: 5 * time.Second,
				}, measure.LoadRunner{Target: &load.Request{Method: "GET", URL: url}, Timeout: 10 * time.Second},
					watch)
				if err != nil {
					t.Fatal(err)
				}
				var trace strings.Builder
				b := rep.Baseline
				fmt.Fprintf(&trace, "  baseline: %d requests, X=%.1f p50=%v p99=%v server CPU %.2f (+%.2f waiting) machine busy %.2f\n",
					b.Requests, b.ThroughputRPS, b.P50.Round(time.Microsecond*10), b.P99.Round(time.Microsecond*10), b.ServerCPUCores, b.ServerCPUWaitCores, b.MachineBusy)
				for _, s := range rep.Steps {
					fmt.Fprintf(&trace, "  N=%-3d X=%7.1f p99=%8v server CPU %.2f (+%.2f waiting, %.2f of it preempted) generator CPU %.2f machine busy %.2f\n",
						s.Concurrency, s.ThroughputRPS, s.P99.Round(time.Microsecond*10), s.ServerCPUCores, s.ServerCPUWaitCores, s.ServerCPUPreemptedCores,
						s.GeneratorCPUCores, s.MachineBusy)
				}
				evidence := strings.Join(rep.Evidence, "\n")
				if tt.perf != nil && !rep.BaselineHeldBack {
					if rep.Performance != *tt.perf {
						t.Fatalf("attempt %d: performance %v, want %v\n%s%s", attempt, rep.Performance, *tt.perf, trace.String(), evidence)
					}
					perfJudged = true
				}
				if rep.Kind != diagnose.KindMachineBound {
					if rep.Scalability != tt.scal || rep.Kind != tt.want {
						t.Fatalf("attempt %d: scalability %v kind %s, want %v %s\n%s%s", attempt, rep.Scalability, rep.Kind, tt.scal, tt.want, trace.String(), evidence)
					}
					scalJudged = true
				}
				t.Logf("attempt %d: %s (baseline held back %v)\n%s%s", attempt, rep.Kind, rep.BaselineHeldBack, trace.String(), evidence)
			}
		})
	}
}
