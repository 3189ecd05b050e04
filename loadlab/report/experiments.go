package report

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/perfscale/perfscale/loadlab/experiments"
)

// Experiments writes a run of experiments as tables: claim | setting |
// measured without | measured with | the lab's verdict | claim holds?,
// then the trade-off table (what each setting improved, what it made
// worse, by how much), then each verdict's reason. The tables are
// Markdown, so a run pastes into a document as it is.
func (TextReporter) Experiments(w io.Writer, r *experiments.Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "loadlab experiments: %d run from %s to %s (%s), load average %s at the start, %s at the end\n\n",
		len(r.Experiments), r.Started.UTC().Format("2006-01-02 15:04:05"), r.Finished.UTC().Format("15:04:05 UTC"),
		r.Finished.Sub(r.Started).Round(time.Second), loadText(r.LoadBefore), loadText(r.LoadAfter))
	b.WriteString("| experiment | claim | setting | measured without | measured with | lab's verdict | claim holds? |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, e := range r.Experiments {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", e.Name, cell(e.Claim), cell(settingText(e)),
			cell(sideSummary(e.Without, e)), cell(sideSummary(e.With, e)), cell(verdictText(e)), holdsCell(e))
	}
	var trades []experiments.Result
	for _, e := range r.Experiments {
		if e.Tradeoff != nil {
			trades = append(trades, e)
		}
	}
	if len(trades) > 0 {
		b.WriteString("\nTrade-offs (each: the setting with against without)\n\n")
		b.WriteString("| experiment | setting | what improved | what got worse |\n| --- | --- | --- | --- |\n")
		for _, e := range trades {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", e.Name, cell(tradeoffSetting(e)), cell(e.Tradeoff.Improved), cell(orNone(e.Tradeoff.Worse)))
		}
	}
	b.WriteString("\nWhy\n\n")
	for _, e := range r.Experiments {
		fmt.Fprintf(&b, "- %s (%s, expected %s, %.0f s): %s\n", e.Name, orNA(e.Measure), orNA(e.Expected), e.Seconds, e.Reason)
		if e.NotHere != "" {
			fmt.Fprintf(&b, "  - why the claim does not hold on this system: %s\n", e.NotHere)
		}
		for _, side := range []*experiments.Side{e.Without, e.With} {
			if side != nil {
				for _, warn := range side.Warnings {
					fmt.Fprintf(&b, "  - warning (%s): %s\n", side.Setting, warn)
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func loadText(v float64) string {
	if math.IsNaN(v) {
		return "unknown"
	}
	return fmt.Sprintf("%.1f", v)
}

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func orNone(s string) string {
	if s == "" {
		return "nothing measured"
	}
	return s
}

func orNA(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// settingText is "without → with", by label.
// tradeoffSetting is a trade-off row's settings in the order of its
// figures (a row of the side without goes from with to without).
func tradeoffSetting(e experiments.Result) string {
	if e.Tradeoff != nil && e.Tradeoff.Setting != "" {
		return e.Tradeoff.Setting
	}
	return settingText(e)
}

func settingText(e experiments.Result) string {
	switch {
	case e.Waits != "":
		return "–"
	case e.Without == nil && e.With != nil:
		return e.With.Setting
	case e.Without == nil || e.With == nil:
		return "–"
	}
	return e.Without.Setting + " → " + e.With.Setting
}

func sideSummary(s *experiments.Side, e experiments.Result) string {
	switch {
	case e.Waits != "":
		return "waits for " + e.Waits
	case s == nil && e.Measure == experiments.MeasureVertical:
		return "(one system: see with)"
	case s == nil:
		return "not measured"
	}
	return s.Summary
}

func verdictText(e experiments.Result) string {
	switch {
	case e.Waits != "":
		return "waits for " + e.Waits
	case e.Error != "":
		return "not measured: " + e.Error
	}
	return e.Verdict
}

func holdsCell(e experiments.Result) string {
	switch {
	case e.Verdict == experiments.VerdictMachineBound:
		return "no verdict: machine-bound"
	case e.Holds == nil:
		return "–"
	case *e.Holds:
		return "yes"
	case e.NotHere != "":
		return "no: not on this system (why below)"
	}
	return "no"
}

// Experiments writes {"started", "finished", "load_before",
// "load_after", "experiments": [{"name", "claim", "expected", "verdict",
// "holds", "without": {...}, "with": {...}, ...}]}.
func (JSONReporter) Experiments(w io.Writer, r *experiments.Report) error {
	out := struct {
		Started     time.Time            `json:"started"`
		Finished    time.Time            `json:"finished"`
		LoadBefore  *float64             `json:"load_before"`
		LoadAfter   *float64             `json:"load_after"`
		Experiments []experiments.Result `json:"experiments"`
	}{r.Started.UTC(), r.Finished.UTC(), numOrNil(r.LoadBefore), numOrNil(r.LoadAfter), r.Experiments}
	if out.Experiments == nil {
		out.Experiments = []experiments.Result{}
	}
	return writeJSON(w, out)
}

func numOrNil(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// Experiments writes the tables as a page.
func (HTMLReporter) Experiments(w io.Writer, r *experiments.Report) error {
	type row struct {
		experiments.Result
		Setting, Without, With, Verdict, Holds string
	}
	var rows, trades []row
	for _, e := range r.Experiments {
		rw := row{e, settingText(e), sideSummary(e.Without, e), sideSummary(e.With, e), verdictText(e), holdsCell(e)}
		rows = append(rows, rw)
		if e.Tradeoff != nil {
			rw.Setting = tradeoffSetting(e)
			trades = append(trades, rw)
		}
	}
	return execute(w, "experiments.html", struct {
		R                     *experiments.Report
		Rows, Trades          []row
		Generated, LoadBefore string
		LoadAfter, Took       string
	}{r, rows, trades, generated(), loadText(r.LoadBefore), loadText(r.LoadAfter), r.Finished.Sub(r.Started).Round(time.Second).String()})
}
