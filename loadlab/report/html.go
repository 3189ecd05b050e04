package report

import (
	"embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"time"

	"github.com/perfscale/perfscale/loadlab/usl"
)

// HTMLReporter writes results as self-contained pages: inline style and
// plots, no script or font loaded from anywhere, so a page can be mailed
// or attached to a ticket.
type HTMLReporter struct{}

//go:embed *.html
var pageFS embed.FS

var pages = template.Must(template.New("pages").Funcs(template.FuncMap{
	"ms": Millis,
	// stepErrors is a step's failed requests with their share and kinds.
	"stepErrors": stepErrors,
	// share is failed requests with their share of the requests.
	"share": errorShare,
	"pct":   func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	// cores is CPU measured, unknown as a dash.
	"cores": func(f float64) string {
		if math.IsNaN(f) {
			return "–"
		}
		return fmt.Sprintf("%.2f", f)
	},
	// size is CPU given (a quota, a size asked for), unknown as a dash.
	"size": func(f float64) string {
		if math.IsNaN(f) {
			return "–"
		}
		return fmt.Sprintf("%g", f)
	},
	"num":     func(f float64) string { return fmt.Sprintf("%.4g", f) },
	"rps":     func(f float64) string { return fmt.Sprintf("%.0f", f) },
	"article": func(n int) float64 { return articleEfficiency(float64(n)) },
	"fitPeak": fitPeak,
	"inc":     func(i int) int { return i + 1 },
}).ParseFS(pageFS, "*.html"))

func generated() string { return time.Now().UTC().Format(time.RFC3339) }

func execute(w io.Writer, page string, v any) error {
	if err := pages.ExecuteTemplate(w, page, v); err != nil {
		return fmt.Errorf("render %s: %w", page, err)
	}
	return nil
}

// Run writes a run's summary as a page: requests, errors by kind, the
// latency percentiles and requests per second over the run.
func (HTMLReporter) Run(w io.Writer, r RunResult) error {
	charts, err := renderAll(seriesChart(r))
	if err != nil {
		return err
	}
	return execute(w, "run.html", struct {
		R         RunResult
		Generated string
		Charts    []*Chart
	}{r, generated(), charts})
}

// Fit writes a USL fit as a page: the parameters and the points beside
// the model, plotted.
func (HTMLReporter) Fit(w io.Writer, r FitResult) error {
	charts, err := renderAll(fitChart(r))
	if err != nil {
		return err
	}
	return execute(w, "fit.html", struct {
		R          FitResult
		Generated  string
		Efficiency []float64
		Charts     []*Chart
	}{r, generated(), usl.Efficiency(r.Points, r.Fit), charts})
}
