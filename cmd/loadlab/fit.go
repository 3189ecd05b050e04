package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/perfscale/perfscale/loadlab/usl"
)

const fitUsage = `Usage: loadlab fit [--json] FILE.csv

Fits the Universal Scalability Law X(N) = λN / (1 + σ(N−1) + κN(N−1)) to
throughput measured elsewhere (a load test, a production dashboard export).
FILE.csv has a header line and two columns: concurrency N and throughput X.
Use - to read standard input.

Examples:
  loadlab fit loadlab/usl/testdata/specsdm91.csv
  loadlab fit --json measurements.csv
  printf 'N,X\n1,100\n2,180\n4,300\n8,380\n' | loadlab fit -

Flags:
`

// fitJSON is the --json output; peak_concurrency is null when κ is zero
// (throughput never falls, so there is no peak).
type fitJSON struct {
	Sigma           float64  `json:"sigma"`
	Kappa           float64  `json:"kappa"`
	Lambda          float64  `json:"lambda"`
	PeakConcurrency *float64 `json:"peak_concurrency"`
	R2              float64  `json:"r2"`
}

func toFitJSON(f usl.Fit) fitJSON {
	out := fitJSON{Sigma: f.Sigma, Kappa: f.Kappa, Lambda: f.Lambda, R2: f.R2}
	if !math.IsInf(f.PeakConcurrency, 0) {
		out.PeakConcurrency = &f.PeakConcurrency
	}
	return out
}

func runFit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fit", fitUsage, stdout)
	asJSON := fs.Bool("json", false, `print {"sigma","kappa","lambda","peak_concurrency","r2"} as JSON`)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("fit: give one CSV file (N,X with a header line), or - for standard input")
	}
	var in io.Reader = os.Stdin
	name := "standard input"
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return fmt.Errorf("fit: %v", err)
		}
		defer f.Close()
		in, name = f, pos[0]
	}
	pts, err := usl.ReadCSV(in)
	if err != nil {
		return fmt.Errorf("fit: %s: %v", name, err)
	}
	fit, err := usl.FitPoints(pts)
	if err != nil {
		return fmt.Errorf("fit: %s: %v", name, err)
	}
	if *asJSON {
		b, _ := json.Marshal(toFitJSON(fit))
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	fmt.Fprintf(stdout, "USL fit of %d points from %s\n", len(pts), name)
	fmt.Fprintf(stdout, "  sigma (contention)   %.7g\n", fit.Sigma)
	fmt.Fprintf(stdout, "  kappa (coherency)    %.7g\n", fit.Kappa)
	fmt.Fprintf(stdout, "  lambda (X at N=1)    %.7g\n", fit.Lambda)
	switch {
	case fit.Sigma >= 1:
		fmt.Fprintf(stdout, "  peak concurrency     1 (sigma >= 1: a second user already lowers throughput)\n")
	case math.IsInf(fit.PeakConcurrency, 1):
		fmt.Fprintf(stdout, "  peak concurrency     none (kappa about 0: throughput approaches %.4g and never falls)\n", fit.PeakThroughput())
	default:
		fmt.Fprintf(stdout, "  peak concurrency     %.1f (X = %.4g there)\n", fit.PeakConcurrency, fit.PeakThroughput())
	}
	fmt.Fprintf(stdout, "  R²                   %.4f\n", fit.R2)
	eff := usl.Efficiency(pts, fit)
	fmt.Fprintf(stdout, "\n  %8s %12s %12s %10s\n", "N", "X measured", "X model", "efficiency")
	for i, p := range pts {
		fmt.Fprintf(stdout, "  %8g %12.4g %12.4g %9.0f%%\n", p.N, p.X, fit.Throughput(p.N), 100*eff[i])
	}
	return nil
}
