package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"

	"github.com/perfscale/perfscale/loadlab/diagnose"
	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/scaleout"
)

// JSONReporter writes results as indented JSON, one document each, in the
// shapes the README documents.
type JSONReporter struct{}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Run writes the run's result with its target, per-second series and
// thresholds: {"target", ...load.Result, "thresholds": [{"threshold",
// "passed", "observed"}]}.
func (JSONReporter) Run(w io.Writer, r RunResult) error {
	type outcome struct {
		Threshold string `json:"threshold"`
		Passed    bool   `json:"passed"`
		Observed  string `json:"observed"`
	}
	out := struct {
		Target string `json:"target"`
		*load.Result
		Thresholds []outcome `json:"thresholds"`
	}{Target: r.Target, Result: r.Result, Thresholds: []outcome{}}
	for _, o := range r.Thresholds {
		out.Thresholds = append(out.Thresholds, outcome{o.Threshold.Source, o.Passed, o.Observed})
	}
	return writeJSON(w, out)
}

// Diagnosis writes the diagnosis in diagnose.Report's documented shape.
func (JSONReporter) Diagnosis(w io.Writer, r *diagnose.Report) error { return writeJSON(w, r) }

// Scaleout writes the measurement in scaleout.Result's documented shape.
func (JSONReporter) Scaleout(w io.Writer, r *scaleout.Result) error { return writeJSON(w, r) }

// Fit writes {"sigma","kappa","lambda","peak_concurrency","r2"};
// peak_concurrency is null when κ is zero (throughput never falls, so
// there is no peak).
func (JSONReporter) Fit(w io.Writer, r FitResult) error {
	out := struct {
		Sigma           float64  `json:"sigma"`
		Kappa           float64  `json:"kappa"`
		Lambda          float64  `json:"lambda"`
		PeakConcurrency *float64 `json:"peak_concurrency"`
		R2              float64  `json:"r2"`
	}{Sigma: r.Fit.Sigma, Kappa: r.Fit.Kappa, Lambda: r.Fit.Lambda, R2: r.Fit.R2}
	if peak := r.Fit.PeakConcurrency; !math.IsInf(peak, 0) {
		out.PeakConcurrency = &peak
	}
	return writeJSON(w, out)
}
