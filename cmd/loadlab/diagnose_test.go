package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/scaleout/testsystem"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestDiagnoseRejectsBadInvocations(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"diagnose"}, "give one URL"},
		{[]string{"diagnose", "127.0.0.1:8080"}, "must start with http"},
		{[]string{"diagnose", "--max-concurrency", "1", "http://127.0.0.1:1/"}, "--max-concurrency must be at least 2"},
		{[]string{"diagnose", "--slo", "0s", "http://127.0.0.1:1/"}, "--slo must be positive"},
		{[]string{"diagnose", "--step-duration", "-1s", "http://127.0.0.1:1/"}, "--step-duration must be positive"},
		{[]string{"diagnose", "--baseline-duration", "0s", "http://127.0.0.1:1/"}, "--baseline-duration must be positive"},
		{[]string{"diagnose", "--timeout", "0s", "http://127.0.0.1:1/"}, "--timeout must be positive"},
		{[]string{"diagnose", "--baseline-requests", "3", "http://127.0.0.1:1/"}, "--baseline-requests must be at least 10"},
		{[]string{"diagnose", "--pid", "1", "--metrics", "http://x/", "http://127.0.0.1:1/"}, "not both"},
		{[]string{"diagnose", "--pid", "1073741824", "http://127.0.0.1:1/"}, "no process 1073741824"},
		{[]string{"diagnose", "--pid", "0", "http://127.0.0.1:1/"}, "--pid must be a process id (a positive number), got 0"},
		{[]string{"diagnose", "--pid=0", "http://127.0.0.1:1/"}, "--pid must be a process id (a positive number), got 0"},
		{[]string{"diagnose", "--pid", "-3", "http://127.0.0.1:1/"}, "--pid must be a process id (a positive number), got -3"},
		{[]string{"diagnose", "--watch", "db", "http://127.0.0.1:1/"}, "NAME=PID or NAME=METRICS_URL"},
		{[]string{"diagnose", "--watch", "db=", "http://127.0.0.1:1/"}, "NAME=PID or NAME=METRICS_URL"},
		{[]string{"diagnose", "--watch", "db=-3", "http://127.0.0.1:1/"}, "not a process id"},
		{[]string{"diagnose", "--watch", "db=postgres", "http://127.0.0.1:1/"}, "give a process id or a metrics URL"},
		{[]string{"diagnose", "--watch", "db=1", "--pid", "1", "http://127.0.0.1:1/"}, "not both"},
		{[]string{"diagnose", "--metrics", "nope", "http://127.0.0.1:1/"}, "--metrics"},
		{[]string{"diagnose", "--baseline-requests", "10", "--step-duration", "100ms", "http://127.0.0.1:1/"}, "baseline"},
		{[]string{"diagnose", "--scenario", "shop", "--method", "POST", "http://127.0.0.1:1/"}, "apply to a URL"},
		{[]string{"diagnose", "--scenario", "shop", "-H", "X-A: 1"}, "apply to a URL"},
		{[]string{"diagnose", "--scenario", "no-such-file.yaml", "http://127.0.0.1:1/"}, "no-such-file.yaml"},
		{[]string{"diagnose", "--scenario", "shop", "127.0.0.1:1"}, "must start with http"},
		{[]string{"diagnose", "--body", "@no-such-body.json", "http://127.0.0.1:1/"}, "no-such-body.json"},
		{[]string{"diagnose", "-H", "no colon", "http://127.0.0.1:1/"}, "'Name: value'"},
		{[]string{"diagnose", "--method", "GE T", "http://127.0.0.1:1/"}, "not an HTTP method"},
		{[]string{"diagnose", "--client", "curl", "http://127.0.0.1:1/"}, "unknown client"},
		{[]string{"diagnose", "http://127.0.0.1:1/", "http://127.0.0.1:2/"}, "one URL only"},
		{[]string{"diagnose", "--prometheus", "http://127.0.0.1:1/", "--pid", "1", "http://127.0.0.1:1/"}, "not both"},
		{[]string{"diagnose", "--prometheus", "nope", "http://127.0.0.1:1/"}, "--prometheus"},
		{[]string{"diagnose", "--prometheus", "http://127.0.0.1:1/", "http://127.0.0.1:1/"}, "does not answer as a Prometheus server"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := loadlab(tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") || exitCode(err) == 0 {
				t.Fatalf("err = %v, want a one-line error containing %q", err, tt.want)
			}
		})
	}
	out, errOut, err := loadlab("diagnose", "--help")
	if err != errUsageShown || !strings.Contains(out+errOut, "Examples:") {
		t.Fatalf("--help: %v", err)
	}
}

// A global lock in the test server: the diagnosis must say contention in
// the summary, the evidence and the JSON, and write the JSON in the
// documented shape and an HTML report. Whether one user is within the SLO
// is not asserted: beside CPU hogs a 4 ms handler's baseline p99 reached
// 33 ms (the ground-truth tests in loadlab/diagnose judge that axis). The
// lock is held 8 ms so that the p99 of 16 users stays well above twice
// even such a baseline. The server is a process of its own, as a user's
// is, and the lab (this process, the generator, and the server it starts)
// runs at the weight of the scale-out test system: with the server inside
// the generator's process, beside two CPU hogs the threads' wait for a CPU
// made it CPU-bound ("capacity"), or one starved step made throughput fall
// ("coherency").
func TestDiagnoseWritesJSONAndHTML(t *testing.T) {
	testsystem.WeighTest(t)
	url := startLockServer(t)
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "d.json"), filepath.Join(dir, "d.html")
	// A ramp the machine held back gets no verdict (the lab says so,
	// machine-bound) and is measured again, as in the ground-truth
	// tests: at a load average of 50 the lock server's processes waited
	// for a CPU 0.50 cores' worth while running 0.02.
	var out string
	for attempt := 1; ; attempt++ {
		var err error
		out, _, err = loadlab("diagnose", "--slo", "30ms", "--max-concurrency", "16", "--step-duration", "400ms",
			"--baseline-requests", "30", "--json", jsonPath, "--html", htmlPath, url)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "scalability (more users):  no verdict (machine-bound") || attempt == 3 {
			break
		}
		t.Logf("attempt %d: machine-bound", attempt)
	}
	const kind = "contention"
	if !strings.Contains(out, "scalability (more users):  PROBLEM ("+kind+")") || !strings.Contains(out, "- USL fit: σ = ") {
		t.Fatalf("summary:\n%s", out)
	}
	if !strings.Contains(out, "- "+kind+": ") {
		t.Fatalf("the evidence does not explain the kind %s:\n%s", kind, out)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Performance *struct {
			Problem     *bool    `json:"problem"`
			BaselineP50 *float64 `json:"baseline_p50_ms"`
			BaselineP99 *float64 `json:"baseline_p99_ms"`
		} `json:"performance"`
		Scalability *struct {
			Problem *bool   `json:"problem"`
			Kind    *string `json:"kind"`
		} `json:"scalability"`
		USL *struct {
			Sigma, Kappa, Lambda, R2 *float64
			Peak                     *float64 `json:"peak_concurrency"`
		} `json:"usl"`
		Steps []struct {
			Concurrency *int     `json:"concurrency"`
			Throughput  *float64 `json:"throughput_rps"`
			P50         *float64 `json:"p50_ms"`
			P99         *float64 `json:"p99_ms"`
			Errors      *int     `json:"errors"`
			// The target is this process, found by its port: its run-queue
			// wait is read from /proc.
			CPUWait *float64 `json:"server_cpu_wait_cores"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Performance == nil || doc.Performance.Problem == nil || doc.Performance.BaselineP99 == nil ||
		doc.Scalability == nil || doc.Scalability.Kind == nil || *doc.Scalability.Kind != kind || !*doc.Scalability.Problem ||
		doc.USL == nil || doc.USL.Sigma == nil || doc.USL.Kappa == nil || doc.USL.Lambda == nil || doc.USL.R2 == nil || len(doc.Steps) != 5 {
		t.Fatalf("json does not have the documented shape:\n%s", b)
	}
	for _, s := range doc.Steps {
		if s.Concurrency == nil || s.Throughput == nil || s.P50 == nil || s.P99 == nil || s.Errors == nil || s.CPUWait == nil {
			t.Fatalf("step lacks a field:\n%s", b)
		}
	}
	html, err := os.ReadFile(htmlPath)
	if err != nil || !strings.Contains(string(html), `id="plot-throughput"`) {
		t.Fatalf("html report missing: %v", err)
	}
}

// With --metrics, the server's CPU and in-flight gauge come from its
// Prometheus endpoint.
func TestDiagnoseReadsServerMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	inFlight := prometheus.NewGauge(prometheus.GaugeOpts{Name: "http_requests_in_flight", Help: "requests being served"})
	reg.MustRegister(inFlight)
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		inFlight.Inc()
		defer inFlight.Dec()
		mu.Lock()
		time.Sleep(4 * time.Millisecond)
		mu.Unlock()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "d.json")
	out, _, err := loadlab("diagnose", "--slo", "30ms", "--max-concurrency", "8", "--step-duration", "700ms",
		"--baseline-requests", "20", "--metrics", srv.URL+"/metrics", "--json", path, srv.URL+"/work")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "watching server: CPU from "+srv.URL+"/metrics") || !strings.Contains(out, "in flight") {
		t.Fatalf("output:\n%s", out)
	}
	b, _ := os.ReadFile(path)
	var doc struct {
		Source string `json:"saturation_source"`
		Steps  []struct {
			CPU      *float64 `json:"server_cpu_cores"`
			InFlight *float64 `json:"server_in_flight"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	last := doc.Steps[len(doc.Steps)-1]
	if doc.Source != "metrics" || last.CPU == nil || last.InFlight == nil || *last.InFlight < 2 {
		t.Fatalf("metrics not used: %s", b)
	}
}

// --watch NAME=PID names what is watched; the JSON carries each watched
// group's figures per step.
func TestDiagnoseWatchesGivenProcesses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "d.json")
	out, _, err := loadlab("diagnose", "--max-concurrency", "2", "--step-duration", "300ms", "--baseline-requests", "10",
		"--watch", fmt.Sprintf("api=%d", os.Getpid()), "--json", path, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, fmt.Sprintf("watching api: process %d with its children, as given", os.Getpid())) {
		t.Fatalf("output:\n%s", out)
	}
	b, _ := os.ReadFile(path)
	var doc struct {
		Watched []string `json:"watched"`
		Steps   []struct {
			Processes []struct {
				Name string   `json:"name"`
				CPU  *float64 `json:"cpu_cores"`
				Wait *float64 `json:"cpu_wait_cores"`
			} `json:"processes"`
			GeneratorWait *float64 `json:"generator_cpu_wait_cores"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Watched) != 1 || len(doc.Steps) != 2 {
		t.Fatalf("json: %s", b)
	}
	for _, s := range doc.Steps {
		if len(s.Processes) != 1 || s.Processes[0].Name != "api" || s.Processes[0].CPU == nil || s.Processes[0].Wait == nil || s.GeneratorWait == nil {
			t.Fatalf("step lacks the watched process or the generator's wait: %s", b)
		}
	}
}

// diagnose sends the request it is given: method, headers and a body read
// from a file with @FILE, every request of the baseline and the ramp.
func TestDiagnoseSendsTheGivenRequest(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen[r.Method+" "+r.Header.Get("Authorization")+" "+string(b)]++
		mu.Unlock()
	}))
	defer srv.Close()
	body := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(body, []byte(`{"quantity": 2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := loadlab("diagnose", "--max-concurrency", "2", "--step-duration", "200ms", "--baseline-requests", "10",
		"--method", "put", "-H", "Authorization: Bearer t0k", "--body", "@"+body, srv.URL+"/v1/cart/items/3")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "loadlab diagnose: PUT "+srv.URL+"/v1/cart/items/3") {
		t.Errorf("the request is not named:\n%s", out)
	}
	mu.Lock()
	defer mu.Unlock()
	want := `PUT Bearer t0k {"quantity": 2}`
	if len(seen) != 1 || seen[want] < 10 {
		t.Fatalf("the server saw %v, want only %q", seen, want)
	}
}

// With --scenario the ramp's users walk the journey, and the evidence
// names the step that fails as users are added: here a checkout that
// answers 429 past two requests in flight, beside a menu that never fails.
func TestDiagnoseRunsAScenario(t *testing.T) {
	var inCheckout atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /menu", func(w http.ResponseWriter, r *http.Request) { time.Sleep(time.Millisecond) })
	mux.HandleFunc("POST /checkout", func(w http.ResponseWriter, r *http.Request) {
		defer inCheckout.Add(-1)
		if inCheckout.Add(1) > 2 {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		time.Sleep(4 * time.Millisecond)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "journey.yaml")
	journey := "base: http://127.0.0.1:1\nsteps:\n  - name: menu\n    weight: 1\n    path: /menu\n  - name: checkout\n    weight: 1\n    method: POST\n    path: /checkout\n"
	if err := os.WriteFile(file, []byte(journey), 0o644); err != nil {
		t.Fatal(err)
	}
	jsonPath := filepath.Join(t.TempDir(), "d.json")
	out, _, err := loadlab("diagnose", "--max-concurrency", "16", "--step-duration", "400ms", "--baseline-requests", "40",
		"--scenario", file, "--json", jsonPath, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "loadlab diagnose: scenario "+file+" at "+srv.URL) {
		t.Errorf("the scenario and its base are not named:\n%s", out)
	}
	if !strings.Contains(out, "scalability (more users):  PROBLEM") {
		t.Errorf("rising 429s are not a problem:\n%s", out)
	}
	i := strings.Index(out, "by endpoint")
	if i < 0 {
		t.Fatalf("no per-endpoint evidence:\n%s", out)
	}
	line := out[i : i+strings.IndexByte(out[i:], '\n')]
	if !strings.Contains(line, "checkout ") || !strings.Contains(line, "(429 ") || !strings.Contains(line, "menu ") {
		t.Errorf("the evidence does not say which step failed and how: %s", line)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Steps []struct {
			Endpoints []struct {
				Name   string `json:"name"`
				Errors struct {
					ByStatus map[string]int64 `json:"by_status"`
				} `json:"errors"`
			} `json:"endpoints"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	top := doc.Steps[len(doc.Steps)-1]
	refused := map[string]int64{}
	for _, e := range top.Endpoints {
		refused[e.Name] = e.Errors.ByStatus["429"]
	}
	if len(top.Endpoints) != 2 || refused["checkout"] == 0 || refused["menu"] != 0 {
		t.Errorf("the JSON's top step does not carry the endpoints with their statuses: %s", b)
	}
}

// A request the target refuses every time stops diagnose after the
// baseline, with the status and the target's own words.
func TestDiagnoseSaysWhyEveryRequestFailed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"title": "Unauthorized", "status": 401, "detail": "send the session token"}`)
	}))
	defer srv.Close()
	_, _, err := loadlab("diagnose", "--max-concurrency", "2", "--step-duration", "200ms", "--baseline-requests", "10", "--method", "PUT", srv.URL)
	if err == nil || !strings.Contains(err.Error(), "every request failed") || !strings.Contains(err.Error(), "401") ||
		!strings.Contains(err.Error(), "send the session token") || exitCode(err) == 0 {
		t.Fatalf("err = %v, want the status and the problem's detail", err)
	}
}

// A per-endpoint threshold naming an endpoint the request or the scenario
// does not have is refused before any load, as run refuses it, and not
// after the whole ramp.
func TestDiagnoseRefusesAThresholdOnAnUnknownEndpointBeforeAnyLoad(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--threshold", "checkout:p99<200ms", srv.URL + "/v1/menu"}, `no endpoint "checkout" in this run (it has GET /v1/menu)`},
		{[]string{"--threshold", "chekout:p99<200ms", "--scenario", "shop", srv.URL}, `no endpoint "chekout"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := append([]string{"diagnose", "--max-concurrency", "2", "--step-duration", "200ms", "--baseline-requests", "10"}, tt.args...)
			_, _, err := loadlab(args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want a one-line error containing %q", err, tt.want)
			}
			if code := exitCode(err); code != exitBadInput {
				t.Errorf("exit code %d, want %d (bad input)", code, exitBadInput)
			}
			if n := hits.Load(); n != 0 {
				t.Errorf("the target got %d requests before the threshold was refused", n)
			}
		})
	}
	// A step of the scenario by its name, or a prefix of numbered steps,
	// is known: the run goes ahead.
	_, _, err := loadlab("diagnose", "--max-concurrency", "2", "--step-duration", "200ms", "--baseline-requests", "10",
		"--threshold", "GET /v1/menu:errors<100%", srv.URL+"/v1/menu")
	if err != nil {
		t.Fatalf("a threshold on the request's own endpoint: %v", err)
	}
	if hits.Load() == 0 {
		t.Error("the diagnosis with a known endpoint sent nothing")
	}
}
