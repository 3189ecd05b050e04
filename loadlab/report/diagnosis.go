package report

import (
	"fmt"
	"io"
	"math"
	"time"

	"gonum.org/v1/plot/plotter"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/load"
)

type view struct {
	R          *diagnose.Report
	Generated  string
	Charts     []*Chart
	Efficiency []float64
	PeakText   string
	// Endpoints is each endpoint at the baseline and at every step, when
	// the steps kept them (a scenario's steps, a URL's one request).
	Endpoints []endpointRow
}

// endpointRow is one endpoint as one step of the diagnosis saw it.
type endpointRow struct {
	Step string // "baseline", "16 users"
	load.Endpoint
}

// diagnosisEndpoints lists every step's endpoints, baseline first.
func diagnosisEndpoints(r *diagnose.Report) []endpointRow {
	var rows []endpointRow
	add := func(step string, s diagnose.Step) {
		if s.Load == nil {
			return
		}
		for _, ep := range s.Load.Endpoints {
			rows = append(rows, endpointRow{Step: step, Endpoint: ep})
		}
	}
	add("baseline", r.Baseline)
	for _, s := range r.Steps {
		step := fmt.Sprintf("%d users", s.Concurrency)
		if s.Concurrency == 1 {
			step = "1 user"
		}
		add(step, s)
	}
	return rows
}

// Diagnosis writes the diagnosis as a page: the verdicts, warnings and a
// missing fit first, the evidence, throughput (with the fitted USL curve
// and linear scaling) and latency against users, and the steps.
func (HTMLReporter) Diagnosis(w io.Writer, r *diagnose.Report) error {
	v := view{R: r, Generated: generated(), Efficiency: r.Efficiency, Endpoints: diagnosisEndpoints(r)}
	charts, err := renderAll(throughputChart(r), latencyChart(r))
	if err != nil {
		return err
	}
	v.Charts = charts
	if r.FitOK {
		v.PeakText = r.Fit.PeakText()
	}
	return execute(w, "page.html", v)
}

func users(r *diagnose.Report) []float64 {
	var out []float64
	for _, s := range r.Steps {
		out = append(out, float64(s.Concurrency))
	}
	return out
}

// throughputChart is throughput against users on log-log axes: linear
// scaling from the one-user throughput is the straight diagonal across
// the whole range, and the measured points and the USL fit fall below it
// as far as the service falls short.
func throughputChart(r *diagnose.Report) *Chart {
	c := newChart("throughput", "Throughput against users (log scales: linear scaling is the straight dashed line)", "concurrent users (N)", "successful requests/s")
	ns := users(r)
	c.logX(ns)
	var measured plotter.XYs
	lo, hi := math.Inf(1), 0.0
	for _, s := range r.Steps {
		measured = append(measured, plotter.XY{X: float64(s.Concurrency), Y: s.ThroughputRPS})
		if s.ThroughputRPS > 0 {
			lo, hi = math.Min(lo, s.ThroughputRPS), math.Max(hi, s.ThroughputRPS)
		}
	}
	if len(ns) == 0 || hi == 0 {
		c.fromZeroY(hi)
		c.line("measured", measured, blue, false, true)
		return c
	}
	minN, maxN := ns[0], ns[len(ns)-1]
	x1 := r.Steps[0].ThroughputRPS / minN
	if x1 > 0 {
		hi = math.Max(hi, x1*maxN)
	}
	c.logY(lo, hi)
	if x1 > 0 {
		c.line("linear scaling", plotter.XYs{{X: minN, Y: x1 * minN}, {X: maxN, Y: x1 * maxN}}, grey, true, false)
	}
	if r.FitOK {
		c.line("USL fit", curve(minN, maxN, 120, r.Fit.Throughput), orange, false, false)
	}
	c.line("measured", measured, blue, false, true)
	return c
}

func latencyChart(r *diagnose.Report) *Chart {
	c := newChart("latency", "Latency against users", "concurrent users (N)", "milliseconds")
	ns := users(r)
	c.logX(ns)
	slo := float64(r.SLO) / float64(time.Millisecond)
	top := slo
	var p50, p99 plotter.XYs
	for _, s := range r.Steps {
		n := float64(s.Concurrency)
		p50 = append(p50, plotter.XY{X: n, Y: float64(s.P50) / float64(time.Millisecond)})
		p99 = append(p99, plotter.XY{X: n, Y: float64(s.P99) / float64(time.Millisecond)})
		top = math.Max(top, float64(s.P99)/float64(time.Millisecond))
	}
	c.fromZeroY(top)
	if len(ns) > 0 {
		c.line("SLO", plotter.XYs{{X: ns[0], Y: slo}, {X: ns[len(ns)-1], Y: slo}}, violet, true, false)
	}
	c.line("p50", p50, green, false, true)
	c.line("p99", p99, red, false, true)
	return c
}
