package report

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/perfscale/perfscale/loadlab/experiments"
)

// The markers of the part of a document that loadlab experiments --doc
// writes; the text outside them is the document's own.
const (
	DocBegin = "<!-- loadlab experiments --doc: begin (generated from one run; do not edit by hand) -->"
	DocEnd   = "<!-- loadlab experiments --doc: end -->"
)

// Provenance is where a run of experiments was taken: what a document of
// its figures must say beside them.
type Provenance struct {
	Command    string // the command line, as run
	Commit     string // loadlab's commit
	ShopCommit string // the shop binary's commit ("" when no shop ran)
	Machine    string // CPU model, cores, memory
	Cores      int
}

// ExperimentsDoc writes a run as a section of a document: when, on which
// commit and machine, at what load, by which command, then the tables of
// Experiments. A run that started or ended with the load average above
// the machine's cores is flagged: other work held the machine, and its
// timing figures are not results.
func ExperimentsDoc(w io.Writer, r *experiments.Report, p Provenance) error {
	var b strings.Builder
	fmt.Fprintf(&b, "One run of `%s` on %s from %s to %s (%s), at loadlab commit %s",
		p.Command, r.Started.UTC().Format("2006-01-02"), r.Started.UTC().Format("15:04:05"),
		r.Finished.UTC().Format("15:04:05 UTC"), r.Finished.Sub(r.Started).Round(time.Second), orUnknown(p.Commit))
	if p.ShopCommit != "" {
		fmt.Fprintf(&b, " (the shop: %s)", p.ShopCommit)
	}
	fmt.Fprintf(&b, ", on %s, at a load average of %s at the start and %s at the end.\n\n",
		orUnknown(p.Machine), loadText(r.LoadBefore), loadText(r.LoadAfter))
	if busy(r, p.Cores) {
		fmt.Fprintf(&b, "**Flagged: the load average was above the machine's %d cores, so other work held the machine; the timings below are not results.**\n\n", p.Cores)
	}
	b.WriteString("What it printed:\n\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	return TextReporter{}.Experiments(w, r)
}

// busy tells whether the machine's load average exceeded its cores at
// either end of the run (unknown loads and cores are not flagged).
func busy(r *experiments.Report, cores int) bool {
	if cores <= 0 {
		return false
	}
	for _, l := range []float64{r.LoadBefore, r.LoadAfter} {
		if !math.IsNaN(l) && l > float64(cores) {
			return true
		}
	}
	return false
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// SpliceDoc puts section between doc's markers (DocBegin, DocEnd, each
// once, on lines of their own, in that order), replacing what was there.
func SpliceDoc(doc, section []byte) ([]byte, error) {
	begin, end, err := docMarkers(doc)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Write(doc[:begin+len(DocBegin)])
	out.WriteString("\n\n")
	out.Write(bytes.TrimSpace(section))
	out.WriteString("\n\n")
	out.Write(doc[end:])
	return out.Bytes(), nil
}

// CheckDoc tells, before a run, whether SpliceDoc will take doc.
func CheckDoc(doc []byte) error {
	_, _, err := docMarkers(doc)
	return err
}

func docMarkers(doc []byte) (begin, end int, err error) {
	for _, m := range []string{DocBegin, DocEnd} {
		switch n := bytes.Count(doc, []byte(m)); n {
		case 0:
			return 0, 0, fmt.Errorf("has no line %q to say where the run goes", m)
		case 1:
		default:
			return 0, 0, fmt.Errorf("has %d lines %q; want one", n, m)
		}
	}
	begin, end = bytes.Index(doc, []byte(DocBegin)), bytes.Index(doc, []byte(DocEnd))
	if end < begin {
		return 0, 0, errors.New("has its end marker before its begin marker")
	}
	return begin, end, nil
}
