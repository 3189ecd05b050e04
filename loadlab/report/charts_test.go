package report

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/scaleout"
)

// Users and replicas double from step to step: on a log axis they sit
// evenly apart, each labelled, and the linear-scaling line spans every
// count measured, not a sliver at the left.
func TestChartsPutCountsOnALogAxisWithLinearScalingOverTheWholeRange(t *testing.T) {
	diag, scale := sampleReport(t), sampleScaleout(t, false)
	tests := []struct {
		chart      *Chart
		linear     string
		from, upTo float64
	}{
		{throughputChart(diag), "linear scaling", 1, 16},
		{latencyChart(diag), "SLO", 1, 16},
		{capacityChart(scale), "linear (100%)", 1, 4},
		{efficiencyChart(scale), "linear (100%)", 1, 4},
	}
	for _, tt := range tests {
		t.Run(tt.chart.ID, func(t *testing.T) {
			if _, ok := tt.chart.plot.X.Scale.(plot.LogScale); !ok {
				t.Errorf("x axis is %T, want a log scale", tt.chart.plot.X.Scale)
			}
			var labels []string
			for _, tick := range tt.chart.plot.X.Tick.Marker.Ticks(tt.from, tt.upTo) {
				if tick.Label != "" {
					labels = append(labels, tick.Label)
				}
			}
			want := "1 2 4 8 16"
			if tt.upTo == 4 {
				want = "1 2 4"
			}
			if got := strings.Join(labels, " "); got != want {
				t.Errorf("x labels %q, want %q", got, want)
			}
			line := tt.chart.Lines[tt.linear]
			if len(line) < 2 || line[0].X != tt.from || line[len(line)-1].X != tt.upTo {
				t.Fatalf("%q spans %v, want from %g to %g", tt.linear, line, tt.from, tt.upTo)
			}
		})
	}
	// On log-log axes linear scaling is a straight line, so all of it is
	// on the plot: the y axis reaches its top.
	c := throughputChart(diag)
	if top := c.Lines["linear scaling"][1].Y; c.plot.Y.Max < top {
		t.Errorf("y axis ends at %g, below the linear line's %g", c.plot.Y.Max, top)
	}
}

// Efficiency reads in percent, also far above 100% (the table
// read "1k" and "1.5k" for 1078%).
func TestEfficiencyAxisReadsInPercent(t *testing.T) {
	r := sampleScaleout(t, false)
	r.Steps[1].Efficiency = 10.78
	c := efficiencyChart(r)
	var labels []string
	for _, tick := range c.plot.Y.Tick.Marker.Ticks(c.plot.Y.Min, c.plot.Y.Max) {
		if tick.Label == "" {
			continue
		}
		labels = append(labels, tick.Label)
		if !strings.HasSuffix(tick.Label, "%") || strings.Contains(tick.Label, "k") || strings.Contains(tick.Label, "e") {
			t.Errorf("tick %q is not a percentage", tick.Label)
		}
	}
	if c.plot.Y.Max < 1078 || len(labels) < 3 {
		t.Fatalf("axis to %g with labels %v: 1078%% is not on it", c.plot.Y.Max, labels)
	}
}

// Without --cpus the CPU per replica is the replicas' cgroup quota
// (cluster.sh --cpu 0.25 sets one), not a dash.
func TestCPUPerReplicaComesFromTheQuota(t *testing.T) {
	tests := []struct {
		name string
		step scaleout.Step
		want string
	}{
		{"given", scaleout.Step{Replicas: 2, CPU: 0.5}, "0.5"},
		{"quota of the replicas", scaleout.Step{Replicas: 2, CPU: math.NaN(), Processes: []measure.ProcessStep{
			{Name: "nginx", Members: 1, QuotaCores: math.NaN()},
			{Name: "postgres", Members: 1, QuotaCores: 2, Suspect: true},
			{Name: "shop", Members: 2, QuotaCores: 0.5},
		}}, "0.25 (quota)"},
		{"nothing known", scaleout.Step{Replicas: 1, CPU: math.NaN(), Processes: []measure.ProcessStep{{Name: "shop", Members: 1, QuotaCores: math.NaN()}}}, "–"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cpuEach(tt.step); got != tt.want {
				t.Fatalf("cpuEach = %q, want %q", got, tt.want)
			}
		})
	}
}

// What makes the figures less trustworthy is said before them, and each
// count's bottleneck is a readable block under the table, not a column.
func TestScaleoutPageStatesWarningsFirstAndBottlenecksBelowTheTable(t *testing.T) {
	r := sampleScaleout(t, false)
	r.FitOK, r.FitError = false, "the counts contradict the model"
	r.Steps[1].Warnings = []string{"the machine's CPUs were 98% busy"}
	r.Steps[2].Found = false
	r.Warnings = []string{"not to be trusted: efficiency 1078% at 2 replicas"}
	var b bytes.Buffer
	if err := (HTMLReporter{}).Scaleout(&b, r); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	warnings, table, blocks, firstPlot := strings.Index(page, `id="warnings"`), strings.Index(page, `id="steps"`),
		strings.Index(page, `id="bottlenecks"`), strings.Index(page, `<svg class="plot"`)
	if warnings < 0 || warnings > table || table > blocks || blocks > firstPlot {
		t.Fatalf("order: warnings at %d, table at %d, bottlenecks at %d, first plot at %d", warnings, table, blocks, firstPlot)
	}
	for _, want := range []string{"no USL fit over replica counts: the counts contradict the model", "not to be trusted: efficiency 1078% at 2 replicas",
		"2 replicas: the machine&#39;s CPUs were 98% busy", "4 replicas: the capacity was not bracketed",
		"<dt>Bottleneck at 4 replicas</dt><dd>the 4 shop replicas CPU-bound &lt;at quota&gt;</dd>"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, `class="bottleneck"`) {
		t.Error("the bottleneck is still a table column")
	}
}

func TestDiagnosisPageStatesWarningsAndASkippedFitFirst(t *testing.T) {
	r := sampleReport(t)
	r.FitOK = false
	var b bytes.Buffer
	if err := (HTMLReporter{}).Diagnosis(&b, r); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	warnings, evidence := strings.Index(page, `id="warnings"`), strings.Index(page, "<h2>Evidence</h2>")
	if warnings < 0 || warnings > evidence || !strings.Contains(page, "no USL fit over the steps") || !strings.Contains(page, "a warning") {
		t.Fatalf("warnings at %d, evidence at %d:\n%s", warnings, evidence, page)
	}
}

// The page says what the text says of goodput: the capacity, each step's
// answers beside its goodput with the errors' share and kinds, and every
// step's endpoints with their causes; and it still renders in Chromium.
func TestDiagnosisPageShowsCapacityErrorsAndEndpoints(t *testing.T) {
	r := sampleReport(t)
	r.Kind = diagnose.KindErrors
	r.CapacityRPS, r.CapacityAt = r.Steps[1].ThroughputRPS, r.Steps[1].Concurrency
	latency := load.Latency{P50: 2 * time.Millisecond, P99: 4 * time.Millisecond, Max: 5 * time.Millisecond}
	endpoints := func(refused int64) *load.Result {
		checkout := load.Endpoint{Name: "checkout", Request: "POST /v1/orders", Requests: 40 + refused, Latency: latency,
			Errors: load.EndpointErrors{Total: refused, ErrorCounts: load.ErrorCounts{Status4xx: refused}}}
		if refused > 0 {
			checkout.Errors.Causes = []load.Cause{{Cause: "429 Too Many Requests", Status: 429, Count: refused, Sample: "slow <down>"}}
		}
		return &load.Result{Endpoints: []load.Endpoint{
			{Name: "menu", Request: "GET /v1/menu", Requests: 60, Latency: latency}, checkout}}
	}
	r.Baseline.Load = endpoints(0)
	for i := range r.Steps {
		refused := int64(i * 30)
		s := &r.Steps[i]
		s.Errors, s.ErrorKinds, s.Requests = refused, load.ErrorCounts{Status4xx: refused}, 100+refused
		s.AnsweredRPS = s.ThroughputRPS * float64(s.Requests) / 100
		s.Load = endpoints(refused)
	}
	var b bytes.Buffer
	if err := (HTMLReporter{}).Diagnosis(&b, r); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	top := r.Steps[len(r.Steps)-1]
	for _, want := range []string{
		fmt.Sprintf("Capacity: %.0f req/s with %d users", r.CapacityRPS, r.CapacityAt),
		"problem: errors",
		fmt.Sprintf("<td>%.1f</td><td class=\"text\">%s</td>", top.AnsweredRPS, stepErrors(top)),
		fmt.Sprintf("%d (%.0f%%: 4xx %d)", top.Errors, 100*float64(top.Errors)/float64(top.Requests), top.Errors),
		`<td class="text nowrap">baseline</td><td class="text">checkout</td>`,
		fmt.Sprintf(`<td class="text nowrap">%d users</td><td class="text">checkout</td>`, top.Concurrency),
		fmt.Sprintf("%d × 429 Too Many Requests: “slow &lt;down&gt;”", top.Errors),
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	capacity, steps, table := strings.Index(page, `id="capacity"`), strings.Index(page, `id="steps"`), strings.Index(page, `id="endpoints"`)
	if capacity < 0 || capacity > steps || steps > table {
		t.Errorf("capacity at %d, steps at %d, endpoints at %d: want capacity above the steps above the endpoints", capacity, steps, table)
	}
	checkInChromium(t, b.Bytes(), 2, "1000,2600")
}

// The run's last interval, cut short by its end, is a rate over its own
// length, or merged with the second before when under half a second: a
// closed loop's 4 last answers 50 ms after its third second were drawn as
// 4 requests/s at second 4, the load seemingly falling to nothing.
func TestTheSeriesLastIntervalIsARateOverItsLength(t *testing.T) {
	second := func(at int, reqs, errs int64) load.Second { return load.Second{At: at, Requests: reqs, Errors: errs} }
	tests := []struct {
		name    string
		series  []load.Second
		elapsed time.Duration
		want    string
	}{
		{"short tail merged", []load.Second{second(1, 1313, 0), second(2, 449, 0), second(3, 553, 10), second(4, 4, 0)}, 3050 * time.Millisecond,
			"(1 1313 0) (2 449 0) (3.05 530.5 9.52)"},
		{"long tail scaled", []load.Second{second(1, 500, 0), second(2, 250, 5)}, 1500 * time.Millisecond,
			"(1 500 0) (1.5 500 10)"},
		{"whole seconds kept", []load.Second{second(1, 500, 0), second(2, 500, 0)}, 2000 * time.Millisecond,
			"(1 500 0) (2 500 0)"},
		{"one short interval alone", []load.Second{second(1, 30, 0)}, 300 * time.Millisecond,
			"(0.3 100 0)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqs, errs := seriesRates(tt.series, tt.elapsed)
			var got []string
			for i := range reqs {
				got = append(got, fmt.Sprintf("(%.3g %.4g %.3g)", reqs[i].X, reqs[i].Y, errs[i].Y))
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("points %s, want %s", g, tt.want)
			}
		})
	}
	c := seriesChart(RunResult{Result: &load.Result{Series: tests[0].series, Elapsed: tests[0].elapsed}})
	if line := c.Lines["requests"]; len(line) != 3 || line[2].Y < 500 {
		t.Errorf("the chart's requests %v, want the tail merged into the third second", line)
	}
}
