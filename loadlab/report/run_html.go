package report

import (
	"math"

	"gonum.org/v1/plot/plotter"
)

// seriesChart is requests and errors per second over the run.
func seriesChart(r RunResult) *Chart {
	c := newChart("series", "Requests per second over the run", "seconds since start", "requests/s")
	top := 0.0
	var reqs, errs plotter.XYs
	for _, s := range r.Series {
		reqs = append(reqs, plotter.XY{X: float64(s.At), Y: float64(s.Requests)})
		errs = append(errs, plotter.XY{X: float64(s.At), Y: float64(s.Errors)})
		top = math.Max(top, float64(s.Requests))
	}
	c.fromZeroY(top)
	c.plot.Y.Max = math.Max(c.plot.Y.Max, top*1.3) // room for the legend above a steady rate
	c.plot.X.Min = 0
	c.plot.X.Tick.Marker = plainTicks{Min: 1} // whole seconds
	c.line("requests", reqs, blue, false, true)
	c.line("errors", errs, red, false, true)
	return c
}

// fitChart is the measured points beside the fitted model, against N on
// a log scale.
func fitChart(r FitResult) *Chart {
	c := newChart("fit", "Throughput against concurrency", "concurrency (N)", "throughput (X)")
	var ns []float64
	top := 0.0
	var measured plotter.XYs
	for _, pt := range r.Points {
		ns = append(ns, pt.N)
		measured = append(measured, plotter.XY{X: pt.N, Y: pt.X})
		top = math.Max(top, math.Max(pt.X, r.Fit.Throughput(pt.N)))
	}
	c.logX(ns)
	c.fromZeroY(top)
	if len(ns) > 0 {
		lo, hi := ns[0], ns[0]
		for _, n := range ns {
			lo, hi = math.Min(lo, n), math.Max(hi, n)
		}
		c.line("USL fit", curve(lo, hi, 120, r.Fit.Throughput), orange, false, false)
	}
	c.line("measured", measured, blue, false, true)
	return c
}
