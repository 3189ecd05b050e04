package load_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
)

// hogEnv makes this test binary, re-executed, spin on one core until
// killed: a CPU hog in a process of its own, so that its CPU is not
// counted as the generator's.
const hogEnv = "LOAD_TEST_CPU_HOG"

func TestMain(m *testing.M) {
	if os.Getenv(hogEnv) != "" {
		fmt.Println("spinning")
		//lint:ignore SA5002 spinning is the point
		for {
		}
	}
	os.Exit(m.Run())
}

// startHogs starts n CPU hogs and returns once each is spinning.
func startHogs(t *testing.T, n int) {
	t.Helper()
	for range n {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), hogEnv+"=1")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "spinning\n" {
			t.Fatalf("hog did not start: %q, %v", line, err)
		}
	}
}

// A generator at 100 requests a second uses a few hundredths of a core:
// beside two processes that keep both cores busy its requests may leave a
// little late, but not by enough to matter against a 200 ms SLO, and it
// is not saturated. Nor is it against a closed port, where nothing
// succeeds and so no latency can be distorted.
func TestAHealthyGeneratorIsNotFlagged(t *testing.T) {
	startHogs(t, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close()

	for _, tt := range []struct {
		name string
		cfg  load.Config
	}{
		{"100/s beside two CPU hogs", load.Config{Target: &load.Request{URL: srv.URL}, Rate: 100, Duration: 2 * time.Second, SLO: 200 * time.Millisecond}},
		{"10/s to a closed port beside two CPU hogs", load.Config{Target: &load.Request{URL: closed}, Rate: 10, Duration: time.Second}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, tt.cfg)
			t.Logf("generator CPU %.3f cores, send delay p99 %v, latency p99 %v, errors %v, notes %q",
				res.GeneratorCPUCores, res.SendDelayP99, res.SuccessLatency.P99, res.Errors, res.Notes)
			if res.GeneratorSaturated || len(res.SaturationReasons) > 0 {
				t.Fatalf("a generator at %g req/s was flagged: %q", tt.cfg.Rate, res.SaturationReasons)
			}
		})
	}
}

// A generator asked for far more than it can send is saturated, and says
// so once, with the figures.
func TestASaturatedGeneratorIsFlagged(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	res := run(t, load.Config{Target: &load.Request{URL: srv.URL}, Rate: 500_000, Duration: time.Second, SLO: 200 * time.Millisecond})
	t.Logf("sent %d, generator CPU %.2f cores, reasons %q", res.Sent, res.GeneratorCPUCores, res.SaturationReasons)
	if !res.GeneratorSaturated {
		t.Fatalf("sent %d of 500,000 requests, yet not saturated", res.Sent)
	}
	all := strings.Join(res.SaturationReasons, "\n")
	if !strings.Contains(all, fmt.Sprintf("sent %d requests", res.Sent)) {
		t.Errorf("the reasons do not give the shortfall's figures:\n%s", all)
	}
	seen := map[string]bool{}
	for _, r := range res.SaturationReasons {
		if seen[r] {
			t.Errorf("reason given twice: %s", r)
		}
		seen[r] = true
	}
}
