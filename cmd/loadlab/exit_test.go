package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// closedPort returns a URL on a port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/"
}

func TestRunFailsWhenRequestsFail(t *testing.T) {
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	tests := []struct {
		name, url, want string
	}{
		{"closed port", closedPort(t), "threshold errors<=1% failed: errors 100%"},
		{"unknown host", "http://no-such-host.invalid/", "threshold errors<=1% failed: errors 100%"},
		{"404", notFound.URL + "/missing", "threshold errors<=1% failed: errors 100%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := loadlab("run", "--concurrency", "2", "--requests", "10", "--timeout", "5s", tt.url)
			if err == nil || exitCode(err) != exitFailed {
				t.Fatalf("err %v (exit %d), want exit %d", err, exitCode(err), exitFailed)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err %q, want one line with %q", err, tt.want)
			}
			if !strings.Contains(out, "FAIL errors<=1%") {
				t.Errorf("summary does not show the failed limit:\n%s", out)
			}
		})
	}
}

func TestMaxErrorsSetsTheLimit(t *testing.T) {
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	if _, _, err := loadlab("run", "--concurrency", "1", "--requests", "5", "--max-errors", "100%", notFound.URL); err != nil {
		t.Fatalf("--max-errors 100%% still failed: %v", err)
	}
	// A threshold on the whole run's errors replaces the default.
	if _, _, err := loadlab("run", "--concurrency", "1", "--requests", "5", "--threshold", "errors<=5", notFound.URL); err != nil {
		t.Fatalf("errors<=5 over 5 failures failed: %v", err)
	}
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ok.Close()
	if _, _, err := loadlab("run", "--concurrency", "1", "--requests", "5", ok.URL); err != nil {
		t.Fatalf("a clean run failed: %v", err)
	}
}

func TestThresholdsGateTheRun(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every answer takes at least 20 ms; the handler waits on a timer
		// channel, and a test bound of 1 µs cannot be met however fast
		// the machine is.
		select {
		case <-time.After(20 * time.Millisecond):
		case <-release:
		}
	}))
	defer slow.Close()
	defer close(release)
	path := filepath.Join(t.TempDir(), "out.json")
	out, _, err := loadlab("run", "--concurrency", "2", "--requests", "10", "--threshold", "p99<1us",
		"--threshold", "p50<1h", "--threshold", "rps>1000000", "--json", path, slow.URL)
	if exitCode(err) != exitFailed {
		t.Fatalf("err %v, exit %d; want %d", err, exitCode(err), exitFailed)
	}
	if !strings.HasPrefix(err.Error(), "threshold p99<1us failed: p99 ") || !strings.Contains(err.Error(), "(and 1 more threshold failed)") {
		t.Fatalf("err %q", err)
	}
	for _, want := range []string{"FAIL p99<1us", "ok   p50<1h", "FAIL rps>1000000", "ok   errors<=1%"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Thresholds []struct {
			Threshold string `json:"threshold"`
			Passed    bool   `json:"passed"`
			Observed  string `json:"observed"`
		} `json:"thresholds"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Thresholds) != 4 || res.Thresholds[0].Passed || !res.Thresholds[1].Passed || !strings.HasPrefix(res.Thresholds[0].Observed, "p99 ") {
		t.Fatalf("json thresholds %+v", res.Thresholds)
	}
}

func TestBadInputExitsTwoWithOneLine(t *testing.T) {
	url := closedPort(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--ratee", "5", url}, "flag provided but not defined: -ratee (see loadlab run --help)"},
		{[]string{"run", "--rate", "5", "--duration", "0", url}, "--duration must be positive"},
		{[]string{"run", "--rate", "5", "--duration", "-1s", url}, "--duration must be positive"},
		{[]string{"run", "--rate", "5", "--max-inflight", "0", url}, "--max-inflight must be at least 1"},
		{[]string{"run", "--rate", "5", "--users", "-2", "--scenario", "shop"}, "--users must not be negative"},
		{[]string{"run", "--concurrency", "2", "--users", "5", "--scenario", "shop"}, "a pool of users is for an open-loop run"},
		{[]string{"run", "--rate", "1e9", url}, "above the 1000000 req/s"},
		{[]string{"run", "--rate", "-5", url}, "--rate must be a positive"},
		{[]string{"run", "--rate", "NaN", url}, "run: --rate must be a positive number of requests per second, got NaN"},
		{[]string{"run", "--concurrency", "-1", url}, "--concurrency must be at least 1"},
		{[]string{"run", "--rate", "5", "--requests", "0", url}, "--requests must be at least 1"},
		{[]string{"run", "--rate", "5", "--timeout", "0", url}, "--timeout must be positive"},
		{[]string{"run", "--concurrency", "1", "--think", "-1s", url}, "--think must not be negative"},
		{[]string{"run", "--rate", "5", "--threshold", "p99<50", url}, "not a latency"},
		{[]string{"run", "--rate", "5", "--max-errors", "lots", url}, "--max-errors"},
		{[]string{"run", "--stages", "30s", url}, "--stages: stage 1 \"30s\": want DURATION:TARGET"},
		{[]string{"run", "--stages", "1s:0,1s:0", url}, "--stages: every stage's target is 0"},
		{[]string{"run", "--stages", "1s:10", "--rate", "5", url}, "give no --rate or --concurrency"},
		{[]string{"run", "--stages", "1s:10", "--duration", "5s", url}, "give no --duration or --requests"},
		{[]string{"run", "--stages", "1s:2.5", "--stage-users", url}, "2.5 users is not a whole number"},
		{[]string{"run", "--stage-users", "--rate", "5", url}, "--stage-users applies to --stages only"},
		// The file's flag is named (it was "open /no/such/body: ...").
		{[]string{"run", "--rate", "5", "--body-file", "/no/such/body", url}, "--body-file /no/such/body: open /no/such/body: no such file"},
		// @FILE reads a file in run as in diagnose (run sent "@FILE" itself).
		{[]string{"run", "--rate", "5", "--body", "@/no/such/body", url}, "--body @/no/such/body: open /no/such/body: no such file"},
		{[]string{"run", "--rate", "5", "--targets", "/no/such/targets"}, "--targets /no/such/targets: open /no/such/targets: no such file"},
		// A value its flag's type cannot take says what the flag wants
		// (it was 'invalid value "abc" for flag -rate: parse error').
		{[]string{"run", "--rate", "abc", url}, `run: --rate "abc": want a number (see loadlab run --help)`},
		{[]string{"run", "--concurrency", "1.5", url}, `--concurrency "1.5": want a whole number`},
		{[]string{"diagnose", "--slo", "50", url}, `diagnose: --slo "50": want a duration with a unit, such as 500ms or 2s`},
		{[]string{"run", "--rate", "5", "--stage-users=maybe", url}, `--stage-users "maybe": want true or false`},
		{[]string{"diagnose", "--bogus", url}, "see loadlab diagnose --help"},
		{[]string{"scaleout", "--bogus"}, "see loadlab scaleout --help"},
		{[]string{"fit", "--bogus"}, "see loadlab fit --help"},
		{[]string{"frobnicate"}, "unknown command"},
		{nil, "no command given"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, err := loadlab(tt.args...)
			if err == nil || exitCode(err) != exitBadInput {
				t.Fatalf("err %v, exit %d; want %d", err, exitCode(err), exitBadInput)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err %q, want one line with %q", err, tt.want)
			}
			if out+errOut != "" {
				t.Fatalf("printed more than the one line:\n%s%s", out, errOut)
			}
		})
	}
}

func TestEveryHelpGoesToStdoutAndExitsZero(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"diagnose", "-h"}, {"scaleout", "--help"}, {"fit", "-help"}} {
		out, errOut, err := loadlab(args...)
		if exitCode(err) != exitOK || out == "" || errOut != "" {
			t.Errorf("%v: exit %d, %d bytes on stdout, stderr %q", args, exitCode(err), len(out), errOut)
		}
	}
	// "loadlab help CMD" is CMD's help: it printed the general usage.
	for name := range commands {
		out, _, err := loadlab("help", name)
		want, _, _ := loadlab(name, "--help")
		if exitCode(err) != exitOK || out != want {
			t.Errorf("help %s: exit %d, printed %.60q...; want %s --help's text", name, exitCode(err), out, name)
		}
	}
	if _, _, err := loadlab("help", "nosuch"); exitCode(err) != exitBadInput {
		t.Errorf("help nosuch: exit %d (%v), want %d", exitCode(err), err, exitBadInput)
	}
	out, _, _ := loadlab("--help")
	for _, want := range []string{"Exit status:", "  1  ", "  2  ", "  3  "} {
		if !strings.Contains(out, want) {
			t.Errorf("loadlab --help lacks %q", want)
		}
	}
}

func TestScenarioTemplatesAreCheckedBeforeTheRun(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(file, []byte("base: "+srv.URL+"\nsteps:\n  - name: item\n    path: /v1/items/{{rand 5 1}}\n"), 0o644)
	_, _, err := loadlab("run", "--scenario", file, "--rate", "10", "--duration", "1s")
	if exitCode(err) != exitBadInput || !strings.Contains(err.Error(), "line 4: step item: path: {{rand 5 1}}: max 1 is below min 5") {
		t.Fatalf("err %v (exit %d)", err, exitCode(err))
	}
	if hits.Load() != 0 {
		t.Fatalf("%d requests sent with a broken scenario", hits.Load())
	}
}

func TestRunInStagesPrintsEachStage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "out.json")
	out, _, err := loadlab("run", "--stages", "500ms:40,500ms:40", "--json", path, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"open loop, req/s ramping 500ms to 40, then 500ms to 40", "stages", "target req/s", "0 -> 40", "40 -> 40"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Stages []struct {
			Target   float64 `json:"target"`
			Requests int64   `json:"requests"`
		} `json:"stages"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	// 0 to 40 req/s over half a second: 10 requests.
	if len(res.Stages) != 2 || res.Stages[0].Target != 40 || res.Stages[0].Requests != 10 {
		t.Fatalf("json stages %+v", res.Stages)
	}
}
