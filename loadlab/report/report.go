// Package report writes what loadlab measured, in the three forms it
// offers: text for a person at a terminal, JSON for a program, and a
// self-contained HTML page with plots for a ticket or a mail. Every form
// is a Reporter, so each command (run, diagnose, scaleout, fit) writes its
// result through one interface and a new form or a new result is added in
// one place. Outputs says where the JSON and HTML go: a file, or "-" for
// standard output.
package report

import (
	"fmt"
	"io"
	"time"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/experiments"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/scaleout"
	"github.com/perfscale/perfscale/loadlab/threshold"
	"github.com/perfscale/perfscale/loadlab/usl"
)

// Reporter writes each of loadlab's results in one form.
type Reporter interface {
	Run(w io.Writer, r RunResult) error
	Diagnosis(w io.Writer, r *diagnose.Report) error
	Scaleout(w io.Writer, r *scaleout.Result) error
	Fit(w io.Writer, r FitResult) error
	Experiments(w io.Writer, r *experiments.Report) error
}

// RunResult is what loadlab run measured against Target (a URL with its
// method, or a scenario), and the thresholds it was held to.
type RunResult struct {
	Target string
	*load.Result
	Thresholds []threshold.Outcome
}

// FitResult is a Universal Scalability Law fit of Points read from Source
// (a file name, or "standard input").
type FitResult struct {
	Source string
	Points []usl.Point
	Fit    usl.Fit
}

// Format names a Reporter.
type Format string

// The forms a result can be written in.
const (
	Text Format = "text"
	JSON Format = "json"
	HTML Format = "html"
)

// For returns the Reporter that writes format.
func For(format Format) (Reporter, error) {
	switch format {
	case Text:
		return TextReporter{}, nil
	case JSON:
		return JSONReporter{}, nil
	case HTML:
		return HTMLReporter{}, nil
	}
	return nil, fmt.Errorf("unknown report format %q (want text, json or html)", format)
}

// Millis is a duration in milliseconds with two decimals, without the
// unit: every latency loadlab prints goes through it, so text, tables and
// pages agree to the digit.
func Millis(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

// ms is Millis with its unit, for running text.
func ms(d time.Duration) string { return Millis(d) + "ms" }
