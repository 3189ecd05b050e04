// Package usl fits Neil Gunther's Universal Scalability Law,
//
//	X(N) = λN / (1 + σ(N−1) + κN(N−1)),
//
// to measured throughput X at concurrency N: λ is the throughput of one
// user, σ the share of serial work (contention) and κ the cost of keeping
// workers coherent (crosstalk), which makes throughput fall past the peak
// concurrency N* = sqrt((1−σ)/κ).
package usl

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/optimize"
)

// Point is one measurement: throughput X at concurrency N.
type Point struct {
	N float64 `json:"n"`
	X float64 `json:"x"`
}

// Fit is a fitted model.
type Fit struct {
	Sigma  float64 `json:"sigma"`
	Kappa  float64 `json:"kappa"`
	Lambda float64 `json:"lambda"`
	// PeakConcurrency is N*: +Inf when κ is about zero (throughput never
	// falls within reach; see NoPeakBeyond), 1 when σ ≥ 1 (a second user
	// already lowers throughput).
	PeakConcurrency float64 `json:"-"`
	R2              float64 `json:"r2"`
}

// Throughput is the model's X(N).
func (f Fit) Throughput(n float64) float64 {
	return f.Lambda * n / (1 + f.Sigma*(n-1) + f.Kappa*n*(n-1))
}

// PeakThroughput is X(N*), or the asymptote λ/σ when κ is zero.
func (f Fit) PeakThroughput() float64 {
	if math.IsInf(f.PeakConcurrency, 1) {
		if f.Sigma == 0 {
			return math.Inf(1)
		}
		return f.Lambda / f.Sigma
	}
	return f.Throughput(f.PeakConcurrency)
}

// NoPeakBeyond: a fitted N* past this many users means κ is about zero.
// A least-squares κ of 1e-18 is not evidence of coherency, and "peak at
// N* = 693387133" only hides that throughput never turns down.
const NoPeakBeyond = 1e4

// kappaZero and sigmaFalls: a κ below kappaZero is no coherency cost at
// all, and a σ of sigmaFalls or more makes throughput fall from the second
// user on (at σ = 1 it stays flat).
const (
	kappaZero  = 1e-9
	sigmaFalls = 1.01
)

// PeakText says where throughput peaks, in words: "no peak (κ ≈ 0)",
// "peak at one user (σ ≥ 1)" or "peak at N* = 28.2".
func (f Fit) PeakText() string {
	switch {
	case f.PeakConcurrency == 1 && f.Sigma >= 1:
		return "peak at one user (σ ≥ 1: a second one already lowers throughput)"
	case math.IsInf(f.PeakConcurrency, 1):
		return "no peak (κ ≈ 0: throughput levels off and never falls)"
	}
	return fmt.Sprintf("peak at N* = %.1f", f.PeakConcurrency)
}

// MinPoints is the fewest points a fit needs: three parameters.
const MinPoints = 3

// FitPoints fits the law by least squares on X with σ, κ ≥ 0 and λ > 0.
func FitPoints(pts []Point) (Fit, error) {
	if err := checkPoints(pts); err != nil {
		return Fit{}, err
	}
	best, bestSSE, err := leastSquares(pts)
	if err != nil {
		return Fit{}, err
	}
	f := Fit{Sigma: best[0] * best[0], Kappa: best[1] * best[1], Lambda: best[2] * best[2]}
	f.PeakConcurrency = peakConcurrency(f.Sigma, f.Kappa)
	f.R2 = rSquared(pts, bestSSE)
	return f, nil
}

// checkPoints refuses what cannot be fitted: too few points, a
// concurrency below one or repeated, a throughput that is not a number.
func checkPoints(pts []Point) error {
	if len(pts) < MinPoints {
		return fmt.Errorf("need at least %d points to fit three parameters, got %d", MinPoints, len(pts))
	}
	seen := map[float64]bool{}
	for _, p := range pts {
		switch {
		case p.N < 1 || math.IsNaN(p.N) || math.IsInf(p.N, 0):
			return fmt.Errorf("concurrency must be at least 1, got %v", p.N)
		case p.X < 0 || math.IsNaN(p.X) || math.IsInf(p.X, 0):
			return fmt.Errorf("throughput must be a non-negative number, got %v", p.X)
		case seen[p.N]:
			return fmt.Errorf("concurrency %v appears twice", p.N)
		}
		seen[p.N] = true
	}
	return nil
}

// leastSquares minimises the squared error of the model over the points
// and returns the best (√σ, √κ, √λ) and its error. The parameters enter
// squared, which keeps σ, κ and λ non-negative without constraints.
func leastSquares(pts []Point) (best []float64, bestSSE float64, err error) {
	sse := func(x []float64) float64 {
		f := Fit{Sigma: x[0] * x[0], Kappa: x[1] * x[1], Lambda: x[2] * x[2]}
		var s float64
		for _, p := range pts {
			d := p.X - f.Throughput(p.N)
			s += d * d
		}
		return s
	}
	// λ starts from the best per-user throughput seen; several σ, κ starts
	// keep the simplex out of the wrong valley.
	lambda0 := 0.0
	for _, p := range pts {
		lambda0 = math.Max(lambda0, p.X/p.N)
	}
	if lambda0 == 0 {
		return nil, 0, errors.New("every throughput is zero: nothing to fit")
	}
	settings := &optimize.Settings{MajorIterations: 20000, FuncEvaluations: 200000}
	bestSSE = math.Inf(1)
	for _, s0 := range []float64{0.001, 0.02, 0.1, 0.5} {
		for _, k0 := range []float64{1e-6, 1e-4, 1e-2} {
			x0 := []float64{math.Sqrt(s0), math.Sqrt(k0), math.Sqrt(lambda0)}
			res, err := optimize.Minimize(optimize.Problem{Func: sse}, x0, settings, &optimize.NelderMead{})
			if err != nil && res == nil {
				continue
			}
			// Polish the simplex's answer.
			if res2, err := optimize.Minimize(optimize.Problem{Func: sse}, res.X, settings, &optimize.NelderMead{}); err == nil || res2 != nil {
				if res2.F < res.F {
					res = res2
				}
			}
			if res.F < bestSSE {
				best, bestSSE = res.X, res.F
			}
		}
	}
	if best == nil {
		return nil, 0, errors.New("the fit did not converge")
	}
	return best, bestSSE, nil
}

// peakConcurrency is where the fitted throughput peaks: +Inf when it is
// flat or rises for ever (or peaks beyond NoPeakBeyond), 1 when any
// concurrency only loses.
func peakConcurrency(sigma, kappa float64) float64 {
	switch {
	case kappa < kappaZero && sigma < sigmaFalls:
		// Flat or rising for ever: no peak (a σ of exactly 1 is flat).
		return math.Inf(1)
	case sigma >= 1:
		return 1
	}
	if n := math.Sqrt((1 - sigma) / kappa); n <= NoPeakBeyond {
		return n
	}
	return math.Inf(1)
}

// rSquared is the share of the throughputs' variance the fit explains
// (1 when they do not vary).
func rSquared(pts []Point, sse float64) float64 {
	var mean, ssTot float64
	for _, p := range pts {
		mean += p.X
	}
	mean /= float64(len(pts))
	for _, p := range pts {
		ssTot += (p.X - mean) * (p.X - mean)
	}
	if ssTot == 0 {
		return 1
	}
	return 1 - sse/ssTot
}

// Efficiency is X(N)/(N·X(1)) for each point, using the point at N = 1
// (or, without one, the fitted λ as X(1)).
func Efficiency(pts []Point, f Fit) []float64 {
	x1 := f.Lambda
	for _, p := range pts {
		if p.N == 1 {
			x1 = p.X
		}
	}
	out := make([]float64, len(pts))
	for i, p := range pts {
		if x1 > 0 {
			out[i] = p.X / (p.N * x1)
		}
	}
	return out
}

// ReadCSV reads N,X points: a header line, then two numeric columns, N a
// whole number of at least 1.
// Errors name the line at fault; too few points is the file's fault, not a line's.
func ReadCSV(r io.Reader) ([]Point, error) {
	br := bufio.NewReader(r)
	// A JSON report (loadlab's own --json) given where the CSV belongs
	// failed on its quotes ("line 1: bare \" in non-quoted-field").
	if start, _ := br.Peek(512); len(start) > 0 {
		if t := bytes.TrimLeft(start, " \t\r\n\ufeff"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
			return nil, errors.New("the file looks like JSON; want CSV: a header line N,X, then one N,X point a line")
		}
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	var pts []Point
	seen := map[float64]int{}
	header := true
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("line %d: %v", pe.StartLine, pe.Err)
			}
			return nil, fmt.Errorf("read CSV: %v", err)
		}
		line, _ := cr.FieldPos(0)
		if header {
			header = false
			if len(rec) != 2 {
				return nil, fmt.Errorf("line %d: the header must name two columns (N,X), got %d", line, len(rec))
			}
			if _, err := strconv.ParseFloat(strings.TrimSpace(rec[0]), 64); err == nil {
				return nil, fmt.Errorf("line %d: the first line must be a header such as N,X, not data", line)
			}
			continue
		}
		if len(rec) != 2 {
			return nil, fmt.Errorf("line %d: want two columns N,X, got %d", line, len(rec))
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(rec[0]), 64)
		if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
			return nil, fmt.Errorf("line %d: N %q is not a number", line, rec[0])
		}
		x, err := strconv.ParseFloat(strings.TrimSpace(rec[1]), 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("line %d: X %q is not a number", line, rec[1])
		}
		if n < 1 {
			return nil, fmt.Errorf("line %d: N must be at least 1, got %v", line, n)
		}
		// N counts users or replicas: 2.5 of them is a typo or a column
		// of something else (a CPU share), and a fit over it would be
		// reported as if it were a concurrency.
		if n != math.Trunc(n) {
			return nil, fmt.Errorf("line %d: N must be a whole number (users or replicas), got %q", line, strings.TrimSpace(rec[0]))
		}
		if x < 0 {
			return nil, fmt.Errorf("line %d: X must not be negative, got %v", line, x)
		}
		if prev, dup := seen[n]; dup {
			return nil, fmt.Errorf("line %d: N %v already given on line %d", line, n, prev)
		}
		seen[n] = line
		pts = append(pts, Point{N: n, X: x})
	}
	// Too few points is a fact about the whole file, not about a line:
	// naming the last line read would point at a line with nothing wrong.
	if header {
		return nil, fmt.Errorf("the file is empty; want a header line N,X and at least %d points", MinPoints)
	}
	switch len(pts) {
	case 0:
		return nil, fmt.Errorf("no points after the header; the fit needs at least %d", MinPoints)
	case 1:
		return nil, fmt.Errorf("only 1 point; the fit needs at least %d", MinPoints)
	}
	if len(pts) < MinPoints {
		return nil, fmt.Errorf("only %d points; the fit needs at least %d", len(pts), MinPoints)
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].N < pts[j].N })
	return pts, nil
}
