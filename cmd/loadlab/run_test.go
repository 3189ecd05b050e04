package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func loadlab(args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	err = run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestRunHelpShowsExamplesAndExitsZero(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"run", "-h"}} {
		out, errOut, err := loadlab(args...)
		if err != errUsageShown || exitCode(err) != 0 {
			t.Fatalf("%v: err %v", args, err)
		}
		if !strings.Contains(out+errOut, "loadlab run") {
			t.Fatalf("%v: no usage shown", args)
		}
	}
	out, errOut, _ := loadlab("run", "--help")
	if !strings.Contains(out, "Examples:") || !strings.Contains(out, "--scenario shop") || !strings.Contains(out, "-threshold") {
		t.Fatalf("run --help lacks examples or flags on stdout:\n%s", out)
	}
	if errOut != "" {
		t.Fatalf("run --help wrote to stderr: %q", errOut)
	}
}

func TestRunRejectsBadInvocations(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run"}, "no target"},
		{[]string{"run", "--rate", "10", "localhost:8080"}, "must start with http"},
		{[]string{"run", "--rate", "10", "http://"}, "no host"},
		{[]string{"run", "--rate", "10", "http://%zz/"}, "cannot parse"},
		{[]string{"run", "http://127.0.0.1:1/"}, "give a rate"},
		{[]string{"run", "--rate", "5", "--concurrency", "2", "http://127.0.0.1:1/"}, "not both"},
		{[]string{"run", "--rate", "5", "-H", "NoColon", "http://127.0.0.1:1/"}, "Name: value"},
		{[]string{"run", "--rate", "5", "--scenario", "shop", "http://127.0.0.1:1/"}, "not both"},
		{[]string{"run", "--rate", "5", "--scenario", "/no/such/file.yaml"}, "no such file"},
		{[]string{"run", "--rate", "5", "--base", "http://x", "http://127.0.0.1:1/"}, "--base applies"},
		{[]string{"run", "--rate", "5", "--client", "curl", "http://127.0.0.1:1/"}, "unknown client"},
		{[]string{"run", "--rate", "x", "http://127.0.0.1:1/"}, `--rate "x": want a number`},
		{[]string{"run", "--rate", "5", "--method", "GE T", "http://127.0.0.1:1/"}, "not an HTTP method"},
		{[]string{"run", "--rate", "5", "http://a/", "http://b/"}, "one URL only"},
		{[]string{"frobnicate"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := loadlab(tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if exitCode(err) == 0 || strings.Contains(err.Error(), "\n") {
				t.Fatalf("want a one-line error and a non-zero exit, got %q", err)
			}
		})
	}
}

func TestRunWritesSummaryAndJSON(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("X-Token") != "abc" || r.Method != "POST" {
			w.WriteHeader(400)
		}
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "out.json")
	// Flags after the URL work too.
	out, _, err := loadlab("run", srv.URL, "--concurrency", "3", "--requests", "90", "--method", "post",
		"-H", "X-Token: abc", "--body", "{}", "--json", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"closed loop, 3 users", "requests    90", "errors      0", "p99.9", "generator"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Target             string  `json:"target"`
		Model              string  `json:"model"`
		Requests           int64   `json:"requests"`
		ThroughputRPS      float64 `json:"throughput_rps"`
		GeneratorSaturated *bool   `json:"generator_saturated"`
		Latency            struct {
			P99 int64 `json:"p99_ns"`
		} `json:"latency"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Requests != 90 || hits.Load() != 90 || res.Model != "closed" || res.ThroughputRPS <= 0 ||
		res.GeneratorSaturated == nil || res.Latency.P99 <= 0 || !strings.HasPrefix(res.Target, "POST ") {
		t.Fatalf("json = %s", b)
	}
}

// --body @FILE sends the file's content, as diagnose's --body and curl do.
func TestRunBodyAtFileSendsTheFile(t *testing.T) {
	var wrong atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, _ := io.ReadAll(r.Body); string(b) != `{"quantity": 2}` {
			wrong.Add(1)
			w.WriteHeader(400)
		}
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(path, []byte(`{"quantity": 2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadlab("run", srv.URL, "--concurrency", "1", "--requests", "3", "--method", "put", "--body", "@"+path); err != nil {
		t.Fatal(err)
	}
	if n := wrong.Load(); n != 0 {
		t.Fatalf("%d of 3 requests did not carry the file's content", n)
	}
}

func TestRunReportsASaturatedGenerator(t *testing.T) {
	// The first request is held until the client gives up on it, after
	// twice the run's duration: every other request falls due while the
	// only in-flight slot is taken, however the machine schedules the
	// pacer. The generator must say that it, not the target, limited the
	// run. That one request times out, by design: --max-errors 1.
	var seen atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) == 1 {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	path := filepath.Join(t.TempDir(), "out.json")
	out, errOut, err := loadlab("run", "--rate", "100", "--duration", "500ms", "--timeout", "1s", "--max-errors", "1", "--max-inflight", "1", "--json", path, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if errOut != "" {
		t.Errorf("stderr is not a terminal, yet got %q", errOut)
	}
	if !strings.Contains(out, "SATURATED") || !strings.Contains(out, "in-flight") {
		t.Errorf("summary does not report the saturation:\n%s", out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Saturated bool     `json:"generator_saturated"`
		Reasons   []string `json:"saturation_reasons"`
		Series    []struct {
			Requests int64 `json:"requests"`
		} `json:"series"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if !res.Saturated || len(res.Reasons) == 0 || len(res.Series) == 0 {
		t.Fatalf("json = %s", b)
	}
}

func TestRunStopsOnCancelWithThePartialResult(t *testing.T) {
	// One user sends its next request only after recording the previous
	// answer: once the server sees the third request, two are counted, and
	// the run is cancelled then.
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
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"run", "--concurrency", "1", "--duration", "1m", srv.URL}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "requests ") || strings.Contains(out.String(), "requests    0 ") {
		t.Fatalf("no partial summary after cancel:\n%s", out.String())
	}
}

func TestRunDrivesAScenarioFile(t *testing.T) {
	// Bounded by time, not by a request count: with a count, the first
	// user can spend the whole budget before the second one's goroutine is
	// scheduled on a busy machine, and the test would measure the
	// scheduler instead of the token capture.
	var sessions, unauthorized atomic.Int64
	var mu sync.Mutex
	usedTokens := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST" && r.URL.Path == "/v1/sessions":
			n := sessions.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(201)
			w.Write([]byte(`{"token": "tok` + strconv.FormatInt(n, 10) + `"}`))
		case strings.HasPrefix(r.Header.Get("Authorization"), "Bearer tok"):
			mu.Lock()
			usedTokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]++
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		default:
			unauthorized.Add(1)
			w.WriteHeader(401)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "journey.yaml")
	os.WriteFile(file, []byte(`
base: http://127.0.0.1:1
setup:
  - {name: session, method: POST, path: /v1/sessions, capture: {token: $.token}}
steps:
  - {name: cart, path: /v1/cart, headers: {Authorization: "Bearer {{.token}}"}}
`), 0o644)
	out, _, err := loadlab("run", "--scenario", file, "--base", srv.URL, "--concurrency", "2", "--duration", "500ms")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "scenario "+file) || !strings.Contains(out, "errors      0") {
		t.Fatalf("summary:\n%s", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if sessions.Load() != 2 || unauthorized.Load() != 0 || len(usedTokens) != 2 || usedTokens["tok1"] == 0 || usedTokens["tok2"] == 0 {
		t.Fatalf("%d sessions, %d unauthorized requests, tokens used %v; want 2 users, each with its own token", sessions.Load(), unauthorized.Load(), usedTokens)
	}
}
