package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/scaleout"
	"github.com/perfscale/perfscale/loadlab/threshold"
	"github.com/perfscale/perfscale/loadlab/usl"
)

func sampleRun() RunResult {
	return RunResult{Target: "GET http://127.0.0.1:8080/v1/menu", Result: &load.Result{Model: "open", Rate: 200,
		Elapsed: 2 * time.Second, Requests: 400, ThroughputRPS: 200, Errors: load.ErrorCounts{Status5xx: 3},
		Latency: load.Latency{Min: time.Millisecond, Mean: 2 * time.Millisecond, P50: 2 * time.Millisecond, P90: 3 * time.Millisecond,
			P99: 4500 * time.Microsecond, P999: 6 * time.Millisecond, Max: 7 * time.Millisecond},
		Series: []load.Second{{At: 0, Requests: 199, Errors: 1}, {At: 1, Requests: 201, Errors: 2}},
		Stages: []load.StageResult{{Stage: load.Stage{Duration: time.Second, Target: 200}, From: 100, Requests: 150, ThroughputRPS: 150}},
		Endpoints: []load.Endpoint{
			{Name: "menu", Request: "GET /v1/menu", Requests: 300, Latency: load.Latency{P50: 2 * time.Millisecond, P99: 4 * time.Millisecond}},
			{Name: "checkout", Request: "POST /v1/orders", Requests: 100, Latency: load.Latency{P50: 3 * time.Millisecond, P99: 6 * time.Millisecond},
				Errors: load.EndpointErrors{Total: 3, Causes: []load.Cause{{Cause: "503 Service Unavailable", Status: 503, Count: 3, Sample: "queue full"}}}},
		}}}
}

func sampleFit(t *testing.T) FitResult {
	t.Helper()
	pts := []usl.Point{{N: 1, X: 100}, {N: 2, X: 180}, {N: 4, X: 300}, {N: 8, X: 380}}
	fit, err := usl.FitPoints(pts)
	if err != nil {
		t.Fatal(err)
	}
	return FitResult{Source: "points.csv", Points: pts, Fit: fit}
}

// Every form writes every result, and what it writes is that form: JSON
// parses, a page is a page, text holds the figures.
func TestEveryReporterWritesEveryResult(t *testing.T) {
	results := map[string]func(Reporter, io.Writer) error{
		"run":       func(r Reporter, w io.Writer) error { return r.Run(w, sampleRun()) },
		"diagnosis": func(r Reporter, w io.Writer) error { return r.Diagnosis(w, sampleReport(t)) },
		"scaleout":  func(r Reporter, w io.Writer) error { return r.Scaleout(w, sampleScaleout(t, true)) },
		"fit":       func(r Reporter, w io.Writer) error { return r.Fit(w, sampleFit(t)) },
	}
	for _, format := range []Format{Text, JSON, HTML} {
		rep, err := For(format)
		if err != nil {
			t.Fatal(err)
		}
		for name, write := range results {
			t.Run(string(format)+" "+name, func(t *testing.T) {
				var b bytes.Buffer
				if err := write(rep, &b); err != nil {
					t.Fatal(err)
				}
				out := b.String()
				switch format {
				case JSON:
					var doc map[string]any
					if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
						t.Fatalf("not JSON: %v\n%s", err, out)
					}
				case HTML:
					if !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.Contains(out, `class="plot"`) {
						t.Fatalf("not a page with a plot:\n%.300s", out)
					}
					if name == "run" && (!strings.Contains(out, "checkout: 3 × 503 Service Unavailable: “queue full”") ||
						!strings.Contains(out, "<td>100 → 200</td>")) {
						t.Errorf("the run page does not name the endpoint's error cause:\n%s", out)
					}
				case Text:
					if len(strings.TrimSpace(out)) == 0 {
						t.Fatal("wrote nothing")
					}
				}
			})
		}
	}
	if _, err := For("yaml"); err == nil || !strings.Contains(err.Error(), `"yaml"`) {
		t.Fatalf("For(yaml) = %v, want an error naming it", err)
	}
}

func TestRunTextHasTheFigures(t *testing.T) {
	th, err := threshold.Parse("p99<4ms")
	if err != nil {
		t.Fatal(err)
	}
	run := sampleRun()
	run.Thresholds = []threshold.Outcome{{Threshold: th, Passed: false, Observed: "p99 4.50ms"}}
	var b bytes.Buffer
	if err := (TextReporter{}).Run(&b, run); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"400 in 2.00s = 200.0 req/s", "errors      3 (4xx 0, 5xx 3", "4.50ms", "intended send time", "FAIL p99<4ms: p99 4.50ms",
		"checkout  POST /v1/orders", "checkout           3  503 Service Unavailable: \"queue full\""} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// A write that fails (a closed pipe, a full disk) is an error, not a
// silently short report.
func TestWriteErrorsAreReturned(t *testing.T) {
	for _, format := range []Format{Text, JSON, HTML} {
		rep, _ := For(format)
		if err := rep.Run(failingWriter{}, sampleRun()); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("%s: err = %v, want disk full", format, err)
		}
	}
}

// The run and fit pages as a person sees them, in Chromium: the plot
// drawn at full width, no script errors.
func TestRunAndFitPagesRenderInHeadlessChromium(t *testing.T) {
	for name, write := range map[string]func(*bytes.Buffer) error{
		"run":             func(b *bytes.Buffer) error { return (HTMLReporter{}).Run(b, sampleRun()) },
		"distributed run": func(b *bytes.Buffer) error { return (HTMLReporter{}).Run(b, sampleDistributedRun()) },
		"fit":             func(b *bytes.Buffer) error { return (HTMLReporter{}).Fit(b, sampleFit(t)) },
	} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := write(&b); err != nil {
				t.Fatal(err)
			}
			checkInChromium(t, b.Bytes(), 1, "1000,1400")
		})
	}
}

// A diagnosis or scale-out that measured nothing (every step failed, a
// run stopped at once) still renders, without a plot of nothing.
func TestEmptyResultsRender(t *testing.T) {
	var b bytes.Buffer
	if err := (HTMLReporter{}).Diagnosis(&b, &diagnose.Report{Target: "http://127.0.0.1:1/"}); err != nil {
		t.Fatal(err)
	}
	if err := (HTMLReporter{}).Scaleout(&b, &scaleout.Result{}); err != nil {
		t.Fatal(err)
	}
	if err := (HTMLReporter{}).Run(&b, RunResult{Result: &load.Result{}}); err != nil {
		t.Fatal(err)
	}
}

// A verdict withheld is said to be withheld in every form: a baseline
// the machine held back gives no performance verdict, a ramp it held
// back no scalability verdict, and neither reads "no problem" (the page
// said so of a machine-bound ramp before).
func TestEveryFormSaysAWithheldVerdictIsNone(t *testing.T) {
	r := sampleReport(t)
	r.Scalability, r.Kind, r.BaselineHeldBack = false, diagnose.KindMachineBound, true
	for _, tt := range []struct {
		format Format
		want   []string
	}{
		{Text, []string{"performance (one user):    no verdict (machine-bound: the machine, not the target, held the single-user baseline back)",
			"scalability (more users):  no verdict (machine-bound"}},
		{HTML, []string{`<div class="answer">no verdict: the machine held the baseline back</div>`,
			`<div class="answer">no verdict: the machine held the ramp back</div>`, `class="verdict unknown" id="verdict-performance"`}},
		{JSON, []string{`"performance":{"problem":false,`, `"machine_bound":true}`, `"scalability":{"problem":false,"kind":"machine-bound"}`}},
	} {
		rep, err := For(tt.format)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := rep.Diagnosis(&b, r); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if tt.format == JSON {
			var compact bytes.Buffer
			if err := json.Compact(&compact, b.Bytes()); err != nil {
				t.Fatal(err)
			}
			out = compact.String()
		}
		for _, want := range tt.want {
			if !strings.Contains(out, want) {
				t.Errorf("%s lacks %s:\n%s", tt.format, want, out)
			}
		}
		if tt.format != JSON && strings.Contains(b.String(), "no problem") {
			t.Errorf("%s says \"no problem\" of a withheld verdict:\n%s", tt.format, b.String())
		}
	}
}

// The run page says what the text says about the generator and the
// machine: whether it kept up, how late it sent, and the notes (a busy
// machine delayed the sends). The page left them out.
func TestRunPageHasTheGeneratorAndTheNotes(t *testing.T) {
	run := sampleRun()
	run.GeneratorCPUCores, run.SendDelayP99 = 0.02, 5380*time.Microsecond
	run.Notes = []string{"the machine's CPUs were 100% busy while the generator used 0.02 of 2 cores: latencies may include time it waited for a CPU"}
	var b bytes.Buffer
	if err := (HTMLReporter{}).Run(&b, run); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"<th>generator</th><td>kept up (CPU 0.02 cores, requests sent at most 5.38 ms late at p99)</td>",
		`<div class="warnings" id="notes"><strong>Notes</strong><ul><li>the machine&#39;s CPUs were 100% busy while the generator used 0.02 of 2 cores: latencies may include time it waited for a CPU</li></ul></div>`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the page lacks %s", want)
		}
	}
}

// sampleDistributedRun is sampleRun sent by two agents, the second
// saturated and slower, with the errors.
func sampleDistributedRun() RunResult {
	run := sampleRun()
	run.Agents = []load.AgentCheck{
		{Name: "agent 1 (10.0.0.5:7070)", Requests: 200, Sent: 200, Rate: 100, ThroughputRPS: 100,
			Latency: load.Latency{P50: 1500 * time.Microsecond, P99: 3 * time.Millisecond}, GeneratorCPUCores: 0.04, SendDelayP99: time.Millisecond},
		{Name: "agent 2 (10.0.0.6:7070)", Requests: 200, Sent: 200, Rate: 100, ThroughputRPS: 99.5, Errors: load.ErrorCounts{Status5xx: 3},
			Latency: load.Latency{P50: 2500 * time.Microsecond, P99: 7 * time.Millisecond}, GeneratorCPUCores: 0.97, GeneratorSaturated: true,
			StartedLate: 12 * time.Millisecond},
	}
	return run
}

// A distributed run's page has a row per agent: its part of the
// requests, its own rate, errors and latency, and whether it kept up.
// The page had no agent at all; the text named them without their
// latency or errors.
func TestDistributedRunShowsEachAgent(t *testing.T) {
	tests := []struct {
		format Format
		want   []string
	}{
		{HTML, []string{`<table id="agents">`,
			`<tr class="ok"><td class="text">agent 1 (10.0.0.5:7070)</td><td>200</td><td>100.0</td><td>100 req/s</td><td>0</td><td>1.50</td><td>3.00</td><td>0.04</td><td class="text">kept up</td></tr>`,
			`<tr class="problem"><td class="text">agent 2 (10.0.0.6:7070)</td><td>200</td><td>99.5</td><td>100 req/s</td><td>3 (2%)</td><td>2.50</td><td>7.00</td><td>0.97</td><td class="text">SATURATED</td></tr>`}},
		{Text, []string{"agent 1 (10.0.0.5:7070): 200 requests (100.0 req/s, errors 0, p50 1.50ms, p99 3.00ms)",
			"agent 2 (10.0.0.6:7070): 200 requests (99.5 req/s, errors 3 (2%), p50 2.50ms, p99 7.00ms), 100 req/s, sent at most 0.00ms late at p99, CPU 0.97 cores: SATURATED"}},
		{JSON, []string{`"throughput_rps":99.5,"errors":{"status_4xx":0,"status_5xx":3`, `"latency":{"min_ns":0,"mean_ns":0,"p50_ns":2500000`}},
	}
	for _, tt := range tests {
		t.Run(string(tt.format), func(t *testing.T) {
			rep, err := For(tt.format)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := rep.Run(&b, sampleDistributedRun()); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			if tt.format == JSON {
				var compact bytes.Buffer
				if err := json.Compact(&compact, b.Bytes()); err != nil {
					t.Fatal(err)
				}
				out = compact.String()
			}
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("%s lacks %s:\n%s", tt.format, want, out)
				}
			}
		})
	}
	// A run from one machine has no agents table.
	var b bytes.Buffer
	if err := (HTMLReporter{}).Run(&b, sampleRun()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), `id="agents"`) {
		t.Error("a run without agents has an agents table")
	}
}
