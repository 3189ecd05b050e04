package main

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/distributed"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/scaleout/testsystem"
)

// startAgentProcess runs 'loadlab agent' in a process of its own (this
// test binary, re-executed) and returns its address once it accepts runs.
func startAgentProcess(t *testing.T, flags ...string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOADLAB_TEST_MAIN=1", "LOADLAB_TEST_ARGS=agent --listen 127.0.0.1:0 "+strings.Join(flags, " "))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "loadlab agent listening on ")
	if err != nil || !ok {
		t.Fatalf("agent did not start: %q %v", line, err)
	}
	return addr, cmd
}

func startAgentProcesses(t *testing.T, n int) ([]string, []*exec.Cmd) {
	t.Helper()
	var addrs []string
	var cmds []*exec.Cmd
	for range n {
		a, c := startAgentProcess(t)
		addrs = append(addrs, a)
		cmds = append(cmds, c)
	}
	return addrs, cmds
}

func TestRunOnThreeAgentProcesses(t *testing.T) {
	var served atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		time.Sleep(2 * time.Millisecond)
	}))
	defer target.Close()
	addrs, _ := startAgentProcesses(t, 3)
	out, errOut, err := loadlab("run", "--agents", strings.Join(addrs, ","), "--rate", "300", "--duration", "2s", "--json", "-", target.URL+"/menu")
	if err != nil {
		t.Fatalf("err %v\n%s", err, errOut)
	}
	var res load.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(res.Agents) != 3 || res.Requests != served.Load() || res.Sent != res.Requests {
		t.Fatalf("%d agents, %d requests, %d sent, the target served %d", len(res.Agents), res.Requests, res.Sent, served.Load())
	}
	if rate := float64(res.Sent) / 2; rate < 0.98*300 || rate > 1.02*300 {
		t.Errorf("sent %.1f req/s, want 300 within 2%%", rate)
	}
	if res.Latency.P50 < 2*time.Millisecond || res.Endpoints[0].Name != "GET /menu" {
		t.Errorf("p50 %v, endpoint %q; want at least the target's 2 ms, GET /menu", res.Latency.P50, res.Endpoints[0].Name)
	}
	for _, want := range []string{"open loop at 300 req/s, for 2s, on 3 agents", "agents      3, histograms merged exactly", "agent 3 (" + addrs[2] + "): "} {
		if !strings.Contains(errOut, want) {
			t.Errorf("summary lacks %q:\n%s", want, errOut)
		}
	}
}

func TestAKilledAgentFailsTheRun(t *testing.T) {
	addrs, cmds := startAgentProcesses(t, 3)
	var once sync.Once
	firstRequest := make(chan struct{})
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(firstRequest) })
	}))
	defer target.Close()
	go func() {
		<-firstRequest // the run is on: kill the second agent
		cmds[1].Process.Kill()
	}()
	began := time.Now()
	out, _, err := loadlab("run", "--agents", strings.Join(addrs, ","), "--rate", "90", "--duration", "30s", target.URL)
	if exitCode(err) != exitNotRun {
		t.Fatalf("err %v (exit %d), want exit %d\n%s", err, exitCode(err), exitNotRun, out)
	}
	msg := err.Error()
	if !strings.Contains(msg, "agent 2 ("+addrs[1]+") failed") || strings.Contains(msg, "\n") {
		t.Errorf("error %q, want one line naming agent 2", msg)
	}
	if strings.Contains(out, "requests ") {
		t.Errorf("a partial report was printed:\n%s", out)
	}
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("the run failed after %v, not at the agent's death", d)
	}
}

func TestAgentFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"agent"}, "give --listen"},
		{[]string{"agent", "--listen", "nonsense"}, `agent: --listen "nonsense" is not HOST:PORT or :PORT`},
		{[]string{"agent", "--listen", "127.0.0.1:99999"}, `agent: --listen "127.0.0.1:99999" is not HOST:PORT or :PORT`},
		{[]string{"run", "--agents", ",", "--rate", "1", "http://127.0.0.1:1/"}, "--agents: give a list of agents"},
		// An agent without a port was dialled and failed the run (exit 3).
		{[]string{"run", "--agents", "127.0.0.1:7070,abc", "--rate", "1", "http://127.0.0.1:1/"}, `--agents: "abc" is not HOST:PORT, such as 10.0.0.5:7070`},
		{[]string{"run", "--agents", "http://10.0.0.5:7070", "--rate", "1", "http://127.0.0.1:1/"}, `--agents: "http://10.0.0.5:7070" is not HOST:PORT`},
		{[]string{"diagnose", "--agents", "10.0.0.5:70700", "http://127.0.0.1:1/"}, `--agents: "10.0.0.5:70700" is not HOST:PORT`},
		{[]string{"run", "--agents", "127.0.0.1:1", "--targets", "-", "--rate", "1"}, "--targets list is not sent to agents"},
		{[]string{"run", "--agents-wait", "1s", "--rate", "1", "http://127.0.0.1:1/"}, "--agents-wait takes a positive duration, with --agents"},
		{[]string{"diagnose", "--agents", " , ", "http://127.0.0.1:1/"}, "--agents: give a list of agents"},
		{[]string{"diagnose", "--agents-wait", "1s", "http://127.0.0.1:1/"}, "--agents-wait takes a positive duration, with --agents"},
		{[]string{"scaleout", "--agents", ",", "--scale-cmd", "up {n}", "--down-cmd", "d"}, "--agents: give a list of agents"},
		{[]string{"scaleout", "--agents", "127.0.0.1:1", "--agents-wait", "-1s", "--scale-cmd", "up {n}", "--down-cmd", "d"}, "--agents-wait takes a positive duration"},
	}
	for _, tt := range tests {
		_, _, err := loadlab(tt.args...)
		if exitCode(err) != exitBadInput || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err %v (exit %d), want exit 2 with %q", tt.args, err, exitCode(err), tt.want)
		}
	}
}

// An agent whose port is taken could not run: exit 3, as a run that could
// not happen, not 2 (its input was good).
func TestAnAgentOnAPortInUseExitsNotRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, _, err = loadlab("agent", "--listen", ln.Addr().String())
	if exitCode(err) != exitNotRun || !strings.Contains(err.Error(), "address already in use") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err %v (exit %d), want one line saying the address is in use, exit %d", err, exitCode(err), exitNotRun)
	}
}

// An agent started with --once (as in a Kubernetes Job) exits 0 after
// its run, and --agents-wait waits for an agent still starting.
func TestAgentOnceExitsAfterItsRun(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer target.Close()
	addr, cmd := startAgentProcess(t, "--once")
	if _, errOut, err := loadlab("run", "--agents", addr, "--agents-wait", "5s", "--concurrency", "1", "--requests", "5", target.URL); err != nil {
		t.Fatalf("err %v\n%s", err, errOut)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the agent did not exit 0 after its run: %v", err)
	}
	began := time.Now()
	_, _, err := loadlab("run", "--agents", addr, "--agents-wait", "600ms", "--concurrency", "1", "--requests", "5", target.URL)
	if exitCode(err) != exitNotRun || !strings.Contains(err.Error(), "agent 1 ("+addr+") failed before the start: not ready after 600ms") {
		t.Fatalf("err %v, want the gone agent not ready", err)
	}
	if time.Since(began) < 600*time.Millisecond {
		t.Error("--agents-wait did not wait")
	}
}

// inProcessAgents starts n agents in this process, each serving on a TCP
// port of its own, and counts the requests each one sent; onSample, if
// set, hears agent i's every request (its server is servers[i]).
func inProcessAgents(t *testing.T, n int, onSample func(i int, servers []*httptest.Server)) ([]string, []*atomic.Int64) {
	t.Helper()
	var addrs []string
	var sent []*atomic.Int64
	servers := make([]*httptest.Server, n)
	for i := range n {
		count := new(atomic.Int64)
		a := &distributed.Agent{Sample: func(int, time.Duration, bool) {
			count.Add(1)
			if onSample != nil {
				onSample(i, servers)
			}
		}}
		servers[i] = httptest.NewServer(a.Handler())
		t.Cleanup(servers[i].Close)
		addrs = append(addrs, strings.TrimPrefix(servers[i].URL, "http://"))
		sent = append(sent, count)
	}
	return addrs, sent
}

// A diagnosis whose load comes from two agents: against the lock server
// (one request at a time, 8 ms each) the verdict is contention, as from
// one process, and every request measured was one the agents sent. (A
// baseline of 100: with 20, its p99 was one request that a compile beside
// the test held 76 ms, and the verdict a performance problem.)
func TestDiagnoseOnAgents(t *testing.T) {
	testsystem.WeighTest(t)
	url := startLockServer(t)
	addrs, sent := inProcessAgents(t, 2, nil)
	out, errOut, err := loadlab("diagnose", "--agents", strings.Join(addrs, ","), "--slo", "30ms", "--max-concurrency", "8",
		"--step-duration", "400ms", "--baseline-requests", "100", "--json", "-", url)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "scalability (more users):  PROBLEM (contention)") || !strings.Contains(errOut, "load from 2 agents") {
		t.Fatalf("summary:\n%s", errOut)
	}
	var doc struct {
		Performance struct {
			BaselineP50 float64 `json:"baseline_p50_ms"`
			Requests    int64   `json:"baseline_requests"`
		} `json:"performance"`
		Steps []struct {
			Concurrency int   `json:"concurrency"`
			Requests    int64 `json:"requests"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	measured := doc.Performance.Requests
	for _, s := range doc.Steps {
		measured += s.Requests
	}
	if got := sent[0].Load() + sent[1].Load(); got != measured || sent[1].Load() == 0 {
		t.Errorf("the agents sent %d and %d requests, the diagnosis measured %d", sent[0].Load(), sent[1].Load(), measured)
	}
	if doc.Performance.BaselineP50 < 8 || len(doc.Steps) != 4 {
		t.Errorf("baseline p50 %.2f ms (the lock holds 8 ms), %d steps (want 4)", doc.Performance.BaselineP50, len(doc.Steps))
	}
}

// An agent killed mid-ramp fails the diagnosis naming it: exit 3, one
// line, no verdict from what the others measured.
func TestDiagnoseFailsWhenAnAgentDies(t *testing.T) {
	addrs, cmds := startAgentProcesses(t, 2)
	var inFlight atomic.Int64
	var once sync.Once
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Two requests at once: the step with 2 users runs on both
		// agents (one user alone never has two).
		if inFlight.Add(1) >= 2 {
			once.Do(func() { cmds[1].Process.Kill() })
		}
		defer inFlight.Add(-1)
		time.Sleep(10 * time.Millisecond)
	}))
	defer target.Close()
	out, errOut, err := loadlab("diagnose", "--agents", strings.Join(addrs, ","), "--max-concurrency", "2",
		"--step-duration", "1s", "--baseline-requests", "10", target.URL)
	if exitCode(err) != exitNotRun {
		t.Fatalf("err %v (exit %d), want exit %d\n%s%s", err, exitCode(err), exitNotRun, out, errOut)
	}
	if msg := err.Error(); !strings.Contains(msg, "step with 2 users: agent 2 ("+addrs[1]+") failed") || strings.Contains(msg, "\n") {
		t.Errorf("error %q, want one line naming agent 2 in the step with 2 users", msg)
	}
	if strings.Contains(out, "capacity:") {
		t.Errorf("a verdict was printed:\n%s", out)
	}
}

// An agent dying during a scale-out search fails it naming the agent
// (exit 3, one line), and the down command still runs.
func TestScaleoutFailsWhenAnAgentDies(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer target.Close()
	// The second agent's connections are cut once it sends load (in the
	// warm-up: one user's baseline before it runs on the first agent
	// alone), as a killed agent's would be.
	var once sync.Once
	addrs, _ := inProcessAgents(t, 2, func(i int, servers []*httptest.Server) {
		if i == 1 {
			once.Do(func() { go servers[1].CloseClientConnections() })
		}
	})
	downRan := filepath.Join(t.TempDir(), "down")
	out, errOut, err := loadlab("scaleout", "--agents", strings.Join(addrs, ","), "--scale-cmd", "echo "+target.URL+" # {n}",
		"--down-cmd", "touch "+downRan, "--replicas", "1", "--probe-duration", "20s", "--start-rate", "40")
	if exitCode(err) != exitNotRun {
		t.Fatalf("err %v (exit %d), want exit %d\n%s%s", err, exitCode(err), exitNotRun, out, errOut)
	}
	if msg := err.Error(); !strings.Contains(msg, "1 replica: warm-up: agent 2 ("+addrs[1]+") failed mid-run") || strings.Contains(msg, "\n") {
		t.Errorf("error %q, want one line naming agent 2 in the warm-up", msg)
	}
	if _, err := os.Stat(downRan); err != nil {
		t.Errorf("the down command did not run: %v", err)
	}
}
