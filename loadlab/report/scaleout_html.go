package report

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"

	"gonum.org/v1/plot/plotter"

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
	R         *scaleout.Result
	Generated string
	Charts    []*Chart
	PeakText  string
	EqualCPU  []equalCPU
	HasCPU    bool
	Rows      []scaleoutRow
	Vertical  []scaleoutRow
	// Warnings are what makes the table less trustworthy, stated before
	// it: failed checks, counts whose capacity was not bracketed, a fit
	// that was skipped.
	Warnings []string
}

// scaleoutRow is a step as the page shows it: the CPU per replica from
// --cpus or, without it, from the replicas' cgroup quota.
type scaleoutRow struct {
	scaleout.Step
	CPUEach string
}

// Scaleout writes a scale-out measurement as a page: warnings first, the
// table with each count's bottleneck written out below it, capacity and
// efficiency against replicas beside the articles' invented 90/80/70%
// line, and, with CPU sizes, scaling up beside scaling out at equal total
// CPU.
func (HTMLReporter) Scaleout(w io.Writer, r *scaleout.Result) error {
	v := scaleoutView{R: r, Generated: generated(), PeakText: r.PeakText(), EqualCPU: equalCPUs(r), Warnings: scaleoutWarnings(r)}
	for _, s := range r.Steps {
		v.Rows = append(v.Rows, scaleoutRow{s, cpuEach(s)})
	}
	for _, s := range r.Vertical {
		v.Vertical = append(v.Vertical, scaleoutRow{s, cpuEach(s)})
	}
	var charts []*Chart
	if len(r.Steps) > 0 {
		charts = append(charts, capacityChart(r), efficiencyChart(r))
	}
	if len(r.Vertical) > 0 {
		v.HasCPU = true
		charts = append(charts, cpuChart(r))
	}
	var err error
	if v.Charts, err = renderAll(charts...); err != nil {
		return err
	}
	return execute(w, "scaleout.html", v)
}

// cpuEach is the CPU each replica had: the size given, or else the cgroup
// quota seen on the replicas (cluster.sh --cpu sets one), or "–".
func cpuEach(s scaleout.Step) string {
	if !math.IsNaN(s.CPU) && s.CPU > 0 {
		return strconv.FormatFloat(s.CPU, 'g', 4, 64)
	}
	best := -1
	for i, p := range s.Processes {
		if p.Suspect || p.Members == 0 || math.IsNaN(p.QuotaCores) || p.QuotaCores <= 0 {
			continue
		}
		if best < 0 || (p.Members == s.Replicas && s.Processes[best].Members != s.Replicas) {
			best = i
		}
	}
	if best < 0 {
		return "–"
	}
	p := s.Processes[best]
	return strconv.FormatFloat(p.QuotaCores/float64(p.Members), 'g', 3, 64) + " (quota)"
}

// scaleoutWarnings gathers what the reader must know before trusting the
// table.
func scaleoutWarnings(r *scaleout.Result) []string {
	out := append([]string(nil), r.Warnings...)
	for _, steps := range [][]scaleout.Step{r.Steps, r.Vertical} {
		for _, s := range steps {
			where := fmt.Sprintf("%d replicas", s.Replicas)
			if s.Replicas == 1 {
				where = "1 replica"
			}
			if !math.IsNaN(s.CPU) && len(r.Vertical) > 0 {
				where += fmt.Sprintf(" of %g cores", s.CPU)
			}
			if !s.Found {
				out = append(out, where+": the capacity was not bracketed; the figure is a bound, not a measurement")
			}
			if s.GeneratorLimited {
				out = append(out, where+": the generator, not the system, limited the probe")
			}
			for _, w := range s.Warnings {
				out = append(out, where+": "+w)
			}
		}
	}
	if !r.FitOK {
		reason := r.FitError
		if reason == "" {
			reason = "not enough replica counts"
		}
		out = append(out, "no USL fit over replica counts: "+reason)
	}
	return out
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

func replicaCounts(r *scaleout.Result) []float64 {
	var out []float64
	for _, s := range r.Steps {
		out = append(out, float64(s.Replicas))
	}
	return out
}

// capacityChart is capacity against replicas on log-log axes: linear
// scaling is the straight dashed line over every count.
func capacityChart(r *scaleout.Result) *Chart {
	c := newChart("capacity", "Capacity against replicas (log scales: linear scaling is the straight dashed line)", "replicas", "requests/s at the SLO")
	ns := replicaCounts(r)
	c.logX(ns)
	minN, maxN, x1 := ns[0], maxReplicas(r), perReplica(r)
	var measured plotter.XYs
	lo, hi := math.Inf(1), x1*maxN
	for _, s := range r.Steps {
		measured = append(measured, plotter.XY{X: float64(s.Replicas), Y: s.CapacityRPS})
		if s.CapacityRPS > 0 {
			lo, hi = math.Min(lo, s.CapacityRPS), math.Max(hi, s.CapacityRPS)
		}
	}
	lo = math.Min(lo, x1*minN*articleEfficiency(minN))
	c.logY(lo, hi)
	if x1 > 0 {
		c.line("linear (100%)", plotter.XYs{{X: minN, Y: x1 * minN}, {X: maxN, Y: x1 * maxN}}, grey, true, false)
		c.line("the articles' invented 90/80/70%", curve(minN, maxN, 60, func(n float64) float64 { return x1 * n * articleEfficiency(n) }), green, true, false)
	}
	if r.FitOK {
		c.line("USL fit", curve(minN, maxN, 60, r.Fit.Throughput), orange, false, false)
	}
	c.line("measured", measured, blue, false, true)
	return c
}

// efficiencyChart is efficiency in percent against replicas.
func efficiencyChart(r *scaleout.Result) *Chart {
	c := newChart("efficiency", "Scaling efficiency against replicas", "replicas", "efficiency")
	ns := replicaCounts(r)
	c.logX(ns)
	minN, maxN := ns[0], maxReplicas(r)
	top := 110.0
	var measured plotter.XYs
	for _, s := range r.Steps {
		measured = append(measured, plotter.XY{X: float64(s.Replicas), Y: 100 * s.Efficiency})
		top = math.Max(top, 100*s.Efficiency*1.08)
	}
	c.percentY(top)
	c.line("linear (100%)", plotter.XYs{{X: minN, Y: 100}, {X: maxN, Y: 100}}, grey, true, false)
	c.line("the articles' invented 90/80/70%", curve(minN, maxN, 60, func(n float64) float64 { return 100 * articleEfficiency(n) }), green, true, false)
	c.line("measured", measured, blue, false, true)
	return c
}

// cpuChart sets scaling out beside scaling up against total CPU.
func cpuChart(r *scaleout.Result) *Chart {
	c := newChart("cpu", "Scaling out against scaling up, at equal total CPU", "total CPU (cores)", "requests/s at the SLO")
	var cores []float64
	top := 0.0
	var out, up plotter.XYs
	for _, s := range r.Steps {
		out = append(out, plotter.XY{X: float64(s.Replicas) * s.CPU, Y: s.CapacityRPS})
		cores = append(cores, float64(s.Replicas)*s.CPU)
		top = math.Max(top, s.CapacityRPS)
	}
	for _, s := range r.Vertical {
		up = append(up, plotter.XY{X: s.CPU, Y: s.CapacityRPS})
		cores = append(cores, s.CPU)
		top = math.Max(top, s.CapacityRPS)
	}
	sort.Float64s(cores)
	c.logX(cores)
	c.fromZeroY(top)
	c.line("scaling out: more replicas", out, blue, false, true)
	c.line("scaling up: one replica, more CPU", up, orange, false, true)
	return c
}
