package report

import "math"

// seriesPlot is requests and errors per second over the run.
func seriesPlot(r RunResult) Plot {
	maxT, maxY := 1.0, 1.0
	for _, s := range r.Series {
		maxT = math.Max(maxT, float64(s.At))
		maxY = math.Max(maxY, float64(s.Requests))
	}
	p, at := frame("series", "Requests per second over the run", "seconds since start", "requests/s", maxT, maxY*1.05)
	var reqs, errs []point
	for _, s := range r.Series {
		reqs = append(reqs, at(float64(s.At), float64(s.Requests)))
		errs = append(errs, at(float64(s.At), float64(s.Errors)))
	}
	p.Series = append(p.Series,
		Series{Name: "requests", Class: "measured", Points: polyline(reqs), Markers: reqs},
		Series{Name: "errors", Class: "p99", Points: polyline(errs), Markers: errs})
	return p
}

// fitPlot is the measured points beside the fitted model.
func fitPlot(r FitResult) Plot {
	maxN, maxX := 1.0, 1.0
	for _, pt := range r.Points {
		maxN = math.Max(maxN, pt.N)
		maxX = math.Max(maxX, math.Max(pt.X, r.Fit.Throughput(pt.N)))
	}
	p, at := frame("fit", "Throughput against concurrency", "concurrency (N)", "throughput (X)", maxN, maxX*1.05)
	var measured, curve []point
	for _, pt := range r.Points {
		measured = append(measured, at(pt.N, pt.X))
	}
	for i := 0; i <= 200; i++ {
		n := 1 + (maxN-1)*float64(i)/200
		curve = append(curve, at(n, r.Fit.Throughput(n)))
	}
	p.Series = append(p.Series,
		Series{Name: "USL fit", Class: "fit", Points: polyline(curve)},
		Series{Name: "measured", Class: "measured", Markers: measured})
	return p
}
