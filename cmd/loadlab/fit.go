package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/perfscale/perfscale/loadlab/report"
	"github.com/perfscale/perfscale/loadlab/usl"
)

const fitUsage = `Usage: loadlab fit [--json FILE|-] [--html FILE|-] FILE.csv|-

Fits the Universal Scalability Law X(N) = λN / (1 + σ(N−1) + κN(N−1)) to
throughput measured elsewhere (a load test, a production dashboard export).
FILE.csv has a header line and two columns: concurrency N (a whole number
of users or replicas) and throughput X.
As everywhere in loadlab, - is standard input for what is read and
standard output for what is written: --json - prints only
{"sigma","kappa","lambda","peak_concurrency","r2"} on standard output, and
the summary goes to standard error.

Examples:
  loadlab fit loadlab/usl/testdata/specsdm91.csv
  loadlab fit --json - measurements.csv | jq .sigma
  loadlab fit --json fit.json --html fit.html measurements.csv
  printf 'N,X\n1,100\n2,180\n4,300\n8,380\n' | loadlab fit -

Flags:
`

func runFit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fit", fitUsage, stdout)
	outputs := outputFlags(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		if len(pos) == 0 && filepath.Ext(outputs.JSON) == ".csv" {
			return fmt.Errorf("fit: --json takes where to write the JSON (a file, or - for standard output): did you mean --json - %s?", outputs.JSON)
		}
		return errors.New("fit: give one CSV file (N,X with a header line), or - for standard input")
	}
	if err := outputs.Check(); err != nil {
		return fmt.Errorf("fit: %v", err)
	}
	if pos[0] != "-" && (sameFile(pos[0], outputs.JSON) || sameFile(pos[0], outputs.HTML)) {
		return fmt.Errorf("fit: %s is the input; writing a report over it would lose it", pos[0])
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
	result := report.FitResult{Source: name, Points: pts, Fit: fit}
	if err := (report.TextReporter{}).Fit(outputs.Human(stdout, stderr), result); err != nil {
		return fmt.Errorf("fit: %v", err)
	}
	if err := outputs.Write(stdout, func(r report.Reporter, w io.Writer) error { return r.Fit(w, result) }); err != nil {
		return fmt.Errorf("fit: %v", err)
	}
	return nil
}

// sameFile tells whether the output path names the input file.
func sameFile(input, output string) bool {
	if output == "" || output == report.Stdout {
		return false
	}
	a, errA := os.Stat(input)
	b, errB := os.Stat(output)
	return errA == nil && errB == nil && os.SameFile(a, b)
}
