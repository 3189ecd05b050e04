package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
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
		{[]string{"agent", "--listen", "nonsense"}, "agent: listen tcp: address nonsense"},
		{[]string{"run", "--agents", ",", "--rate", "1", "http://127.0.0.1:1/"}, "--agents: give a list of agents"},
		{[]string{"run", "--agents", "127.0.0.1:1", "--targets", "-", "--rate", "1"}, "--targets list is not sent to agents"},
		{[]string{"run", "--agents-wait", "1s", "--rate", "1", "http://127.0.0.1:1/"}, "--agents-wait takes a positive duration, with --agents"},
	}
	for _, tt := range tests {
		_, _, err := loadlab(tt.args...)
		if exitCode(err) != exitBadInput || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err %v (exit %d), want exit 2 with %q", tt.args, err, exitCode(err), tt.want)
		}
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
