package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"time"

	"github.com/perfscale/perfscale/loadlab/scaleout"
)

var scaleoutPage = template.Must(template.New("scaleout.html").Funcs(template.FuncMap{
	"ms":      func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) },
	"pct":     func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	"num":     func(f float64) string { return fmt.Sprintf("%.4g", f) },
	"rps":     func(f float64) string { return fmt.Sprintf("%.0f", f) },
	"article": func(n int) float64 { return articleEfficiency(float64(n)) },
	"cores": func(f float64) string {
		if math.IsNaN(f) {
			return "–"
		}
		return fmt.Sprintf("%g", f)
	},
}).ParseFS(pageFS, "scaleout.html", "common.html"))

// articleEfficiency is the articles' invented scaling: 1 server 1,000 req/s,
// 2 servers 1,800 (90%), 4 servers 3,200 (80%), 10 servers 7,000 (70%);
// between their points the efficiency is interpolated, past 10 it stays.
func articleEfficiency(n float64) float64 {
	pts := [][2]float64{{1, 1}, {2, 0.9}, {4, 0.8}, {10, 0.7}}
	for i := 1; i < len(pts); i++ {
		if n <= pts[i][0] {
			a, b := pts[i-1], pts[i]
			return a[1] + (b[1]-a[1])*(n-a[0])/(b[0]-a[0])
		}
	}
	return 0.7
}

type scaleoutView struct {
	R          *scaleout.Result
	Generated  string
	Plots      []Plot
	PeakText   string
	EqualCPU   []equalCPU
	HasCPU     bool
	PlotsCount int
}

type equalCPU struct {
	Cores                float64
	Replicas             int
	PerReplica           float64
	Horizontal, Vertical float64
}

// RenderScaleout writes a scale-out measurement as a self-contained page:
// capacity and efficiency against replicas beside the articles' invented
// 90/80/70% line, and, with CPU sizes, scaling up beside scaling out at
// equal total CPU.
func RenderScaleout(w io.Writer, r *scaleout.Result) error {
	v := scaleoutView{R: r, Generated: time.Now().UTC().Format(time.RFC3339), PeakText: r.PeakText()}
	if len(r.Steps) > 0 {
		v.Plots = append(v.Plots, capacityPlot(r), efficiencyPlot(r))
	}
	if len(r.Vertical) > 0 {
		v.HasCPU = true
		v.Plots = append(v.Plots, cpuPlot(r))
		for _, vs := range r.Vertical {
			for _, h := range r.Steps {
				if h.Replicas > 1 && math.Abs(float64(h.Replicas)*h.CPU-vs.CPU) < 1e-9 {
					v.EqualCPU = append(v.EqualCPU, equalCPU{vs.CPU, h.Replicas, h.CPU, h.CapacityRPS, vs.CapacityRPS})
				}
			}
		}
	}
	v.PlotsCount = len(v.Plots)
	if err := scaleoutPage.Execute(w, v); err != nil {
		return fmt.Errorf("render scale-out report: %w", err)
	}
	return nil
}

func maxReplicas(r *scaleout.Result) float64 {
	n := 1.0
	for _, s := range r.Steps {
		n = math.Max(n, float64(s.Replicas))
	}
	return n
}

// perReplica is capacity(1), or the first count's capacity per replica.
func perReplica(r *scaleout.Result) float64 {
	return r.Steps[0].CapacityRPS / float64(r.Steps[0].Replicas)
}

func capacityPlot(r *scaleout.Result) Plot {
	maxN, x1 := maxReplicas(r), perReplica(r)
	maxX := x1 * maxN
	for _, s := range r.Steps {
		maxX = math.Max(maxX, s.CapacityRPS)
	}
	p, at := frame("capacity", "Capacity against replicas", "replicas", "requests/s at the SLO", maxN, maxX*1.05)
	var measured, article, curve []point
	for _, s := range r.Steps {
		measured = append(measured, at(float64(s.Replicas), s.CapacityRPS))
	}
	for i := 0; i <= 100; i++ {
		n := 1 + (maxN-1)*float64(i)/100
		article = append(article, at(n, x1*n*articleEfficiency(n)))
		if r.FitOK {
			curve = append(curve, at(n, r.Fit.Throughput(n)))
		}
	}
	p.Series = append(p.Series,
		Series{Name: "linear (100%)", Class: "linear", Points: polyline([]point{at(1, x1), at(maxN, x1*maxN)}), Dashed: true},
		Series{Name: "the articles' invented 90/80/70%", Class: "article", Points: polyline(article), Dashed: true})
	if r.FitOK {
		p.Series = append(p.Series, Series{Name: "USL fit", Class: "fit", Points: polyline(curve)})
	}
	p.Series = append(p.Series, Series{Name: "measured", Class: "measured", Points: polyline(measured), Markers: measured})
	return p
}

func efficiencyPlot(r *scaleout.Result) Plot {
	maxN := maxReplicas(r)
	maxE := 1.0
	for _, s := range r.Steps {
		maxE = math.Max(maxE, s.Efficiency)
	}
	p, at := frame("efficiency", "Scaling efficiency against replicas", "replicas", "efficiency (%)", maxN, 100*maxE*1.05)
	var measured, article []point
	for _, s := range r.Steps {
		measured = append(measured, at(float64(s.Replicas), 100*s.Efficiency))
	}
	for i := 0; i <= 100; i++ {
		n := 1 + (maxN-1)*float64(i)/100
		article = append(article, at(n, 100*articleEfficiency(n)))
	}
	p.Series = append(p.Series,
		Series{Name: "linear (100%)", Class: "linear", Points: polyline([]point{at(1, 100), at(maxN, 100)}), Dashed: true},
		Series{Name: "the articles' invented 90/80/70%", Class: "article", Points: polyline(article), Dashed: true},
		Series{Name: "measured", Class: "measured", Points: polyline(measured), Markers: measured})
	return p
}

func cpuPlot(r *scaleout.Result) Plot {
	maxC, maxX := 0.0, 1.0
	for _, s := range r.Steps {
		maxC = math.Max(maxC, float64(s.Replicas)*s.CPU)
		maxX = math.Max(maxX, s.CapacityRPS)
	}
	for _, s := range r.Vertical {
		maxC = math.Max(maxC, s.CPU)
		maxX = math.Max(maxX, s.CapacityRPS)
	}
	p, at := frame("cpu", "Scaling out against scaling up, at equal total CPU", "total CPU (cores)", "requests/s at the SLO", maxC, maxX*1.05)
	var out, up []point
	for _, s := range r.Steps {
		out = append(out, at(float64(s.Replicas)*s.CPU, s.CapacityRPS))
	}
	for _, s := range r.Vertical {
		up = append(up, at(s.CPU, s.CapacityRPS))
	}
	p.Series = append(p.Series,
		Series{Name: "scaling out: more replicas", Class: "measured", Points: polyline(out), Markers: out},
		Series{Name: "scaling up: one replica, more CPU", Class: "fit", Points: polyline(up), Markers: up})
	return p
}
