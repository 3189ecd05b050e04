package report

import (
	"math"
	"time"

	"gonum.org/v1/plot/plotter"

	"github.com/perfscale/perfscale/loadlab/load"
)

// seriesChart is requests and errors per second over the run.
func seriesChart(r RunResult) *Chart {
	c := newChart("series", "Requests per second over the run", "seconds since start", "requests/s")
	reqs, errs := seriesRates(r.Series, r.Elapsed)
	top := 0.0
	for _, p := range reqs {
		top = math.Max(top, p.Y)
	}
	c.fromZeroY(top)
	c.plot.Y.Max = math.Max(c.plot.Y.Max, top*1.3) // room for the legend above a steady rate
	c.plot.X.Min = 0
	c.plot.X.Tick.Marker = plainTicks{Min: 1} // whole seconds
	c.line("requests", reqs, blue, false, true)
	c.line("errors", errs, red, false, true)
	return c
}

// seriesRates are the series' requests and errors a second, each at the
// end of its second. The run's end cuts the last interval short (a
// closed loop's last answers arrive a few milliseconds after its last
// whole second): plotted as a second of its own, its count read as the
// load falling to nothing. It is a rate over its own length, at the run's
// end, or, under half a second, merged with the second before it into
// one rate over both.
func seriesRates(series []load.Second, elapsed time.Duration) (reqs, errs plotter.XYs) {
	for _, s := range series {
		reqs = append(reqs, plotter.XY{X: float64(s.At), Y: float64(s.Requests)})
		errs = append(errs, plotter.XY{X: float64(s.At), Y: float64(s.Errors)})
	}
	n := len(series)
	if n == 0 {
		return reqs, errs
	}
	last := series[n-1]
	span := elapsed.Seconds() - float64(last.At-1)
	if span <= 0 || span >= 1 {
		return reqs, errs
	}
	end := elapsed.Seconds()
	if span < 0.5 && n > 1 {
		prev := series[n-2]
		reqs, errs = reqs[:n-1], errs[:n-1]
		reqs[n-2] = plotter.XY{X: end, Y: float64(prev.Requests+last.Requests) / (1 + span)}
		errs[n-2] = plotter.XY{X: end, Y: float64(prev.Errors+last.Errors) / (1 + span)}
		return reqs, errs
	}
	reqs[n-1] = plotter.XY{X: end, Y: float64(last.Requests) / span}
	errs[n-1] = plotter.XY{X: end, Y: float64(last.Errors) / span}
	return reqs, errs
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
