package report

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
)

// Plot geometry, in SVG user units.
const (
	width, height = 640, 360
	left, right   = 70, 20
	top, bottom   = 20, 50
)

type point struct{ X, Y float64 }

type tick struct {
	Pos   float64
	Label string
}

// Series is one line or set of markers on a plot.
type Series struct {
	Name, Class string
	Points      string // "x,y x,y" in SVG units
	Markers     []point
	Dashed      bool
}

// Plot is one chart, already in SVG coordinates.
type Plot struct {
	ID, Title, XLabel, YLabel string
	Width, Height             int
	Left, Top, Right, Bottom  float64
	XTicks, YTicks            []tick
	Series                    []Series
}

type view struct {
	R           *diagnose.Report
	Generated   string
	Throughput  Plot
	Latency     Plot
	Efficiency  []float64
	PeakText    string
	PlotsInline bool
}

// Diagnosis writes the diagnosis as a page: the verdicts, the evidence,
// throughput (with the fitted USL curve) and latency against concurrency.
func (HTMLReporter) Diagnosis(w io.Writer, r *diagnose.Report) error {
	v := view{R: r, Generated: generated(), Efficiency: r.Efficiency}
	v.Throughput, v.Latency = throughputPlot(r), latencyPlot(r)
	if r.FitOK {
		v.PeakText = r.Fit.PeakText()
	}
	return execute(w, "page.html", v)
}

// niceTicks returns round tick values from 0 to at least max.
func niceTicks(max float64) []float64 {
	if max <= 0 || math.IsNaN(max) || math.IsInf(max, 0) {
		max = 1
	}
	raw := max / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := 0.0; v < max+step/2; v += step {
		out = append(out, v)
	}
	if out[len(out)-1] < max {
		out = append(out, out[len(out)-1]+step)
	}
	return out
}

func label(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%gk", math.Round(v/100)/10)
	}
	return fmt.Sprintf("%g", math.Round(v*100)/100)
}

// frame sets up a plot with axes from 0 to xMax and 0 to yMax.
func frame(id, title, xl, yl string, xMax, yMax float64) (Plot, func(x, y float64) point) {
	xt, yt := niceTicks(xMax), niceTicks(yMax)
	xTop, yTop := xt[len(xt)-1], yt[len(yt)-1]
	pw, ph := float64(width-left-right), float64(height-top-bottom)
	at := func(x, y float64) point {
		return point{left + x/xTop*pw, top + ph - y/yTop*ph}
	}
	p := Plot{ID: id, Title: title, XLabel: xl, YLabel: yl, Width: width, Height: height,
		Left: left, Top: top, Right: width - right, Bottom: height - bottom}
	for _, v := range xt {
		p.XTicks = append(p.XTicks, tick{at(v, 0).X, label(v)})
	}
	for _, v := range yt {
		p.YTicks = append(p.YTicks, tick{at(0, v).Y, label(v)})
	}
	return p, at
}

func polyline(pts []point) string {
	var b strings.Builder
	for i, p := range pts {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", p.X, p.Y)
	}
	return b.String()
}

func throughputPlot(r *diagnose.Report) Plot {
	maxN, maxX := 1.0, 1.0
	for _, s := range r.Steps {
		maxN = math.Max(maxN, float64(s.Concurrency))
		maxX = math.Max(maxX, s.ThroughputRPS)
	}
	if r.FitOK {
		for n := 1.0; n <= maxN; n += maxN / 100 {
			maxX = math.Max(maxX, r.Fit.Throughput(n))
		}
	}
	p, at := frame("throughput", "Throughput against concurrency", "concurrent users (N)", "requests/s", maxN, maxX*1.05)
	var measured []point
	for _, s := range r.Steps {
		measured = append(measured, at(float64(s.Concurrency), s.ThroughputRPS))
	}
	if r.FitOK {
		var curve []point
		for i := 0; i <= 200; i++ {
			n := 1 + (maxN-1)*float64(i)/200
			curve = append(curve, at(n, r.Fit.Throughput(n)))
		}
		// Linear scaling from the one-user throughput, up to the top of
		// the plot.
		x1 := r.Fit.Lambda
		if len(r.Steps) > 0 {
			x1 = r.Steps[0].ThroughputRPS
		}
		if end := math.Min(maxN, maxX*1.05/x1); x1 > 0 && end > 1.01 {
			p.Series = append(p.Series, Series{Name: "linear scaling", Class: "linear",
				Points: polyline([]point{at(1, x1), at(end, x1*end)}), Dashed: true})
		}
		p.Series = append(p.Series, Series{Name: "USL fit", Class: "fit", Points: polyline(curve)})
	}
	p.Series = append(p.Series, Series{Name: "measured", Class: "measured", Points: polyline(measured), Markers: measured})
	return p
}

func latencyPlot(r *diagnose.Report) Plot {
	maxN, maxMS := 1.0, float64(r.SLO)/float64(time.Millisecond)
	for _, s := range r.Steps {
		maxN = math.Max(maxN, float64(s.Concurrency))
		maxMS = math.Max(maxMS, float64(s.P99)/float64(time.Millisecond))
	}
	p, at := frame("latency", "Latency against concurrency", "concurrent users (N)", "milliseconds", maxN, maxMS*1.05)
	var p50, p99 []point
	for _, s := range r.Steps {
		p50 = append(p50, at(float64(s.Concurrency), float64(s.P50)/float64(time.Millisecond)))
		p99 = append(p99, at(float64(s.Concurrency), float64(s.P99)/float64(time.Millisecond)))
	}
	slo := float64(r.SLO) / float64(time.Millisecond)
	p.Series = append(p.Series,
		Series{Name: "SLO", Class: "slo", Points: polyline([]point{at(0, slo), at(maxN, slo)}), Dashed: true},
		Series{Name: "p50", Class: "p50", Points: polyline(p50), Markers: p50},
		Series{Name: "p99", Class: "p99", Points: polyline(p99), Markers: p99})
	return p
}
