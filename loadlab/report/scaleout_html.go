package report

import (
	"io"
	"math"

	"github.com/perfscale/perfscale/loadlab/scaleout"
)

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

// Scaleout writes a scale-out measurement as a page:
// capacity and efficiency against replicas beside the articles' invented
// 90/80/70% line, and, with CPU sizes, scaling up beside scaling out at
// equal total CPU.
func (HTMLReporter) Scaleout(w io.Writer, r *scaleout.Result) error {
	v := scaleoutView{R: r, Generated: generated(), PeakText: r.PeakText(), EqualCPU: equalCPUs(r)}
	if len(r.Steps) > 0 {
		v.Plots = append(v.Plots, capacityPlot(r), efficiencyPlot(r))
	}
	if len(r.Vertical) > 0 {
		v.HasCPU = true
		v.Plots = append(v.Plots, cpuPlot(r))
	}
	v.PlotsCount = len(v.Plots)
	return execute(w, "scaleout.html", v)
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
