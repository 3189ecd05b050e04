// Package threshold parses and checks pass/fail criteria for a load run,
// in the spirit of k6's thresholds: "p99<50ms", "p50<=10ms", "errors<0.1%",
// "rps>100", and per endpoint "checkout:p99<200ms". A run that breaches one
// fails, so that a pipeline can gate on it.
package threshold

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Metric is what a threshold measures.
type Metric int

// The metrics a threshold can name.
const (
	Percentile Metric = iota // pN: a latency percentile
	Mean                     // mean latency
	Max                      // highest latency
	ErrorShare               // errors as a share of requests ("errors<1%")
	ErrorCount               // errors as a count ("errors<10")
	RPS                      // completed requests per second
)

// Op compares the measured value with the limit.
type Op string

// The comparisons a threshold can use.
const (
	Less         Op = "<"
	LessEqual    Op = "<="
	Greater      Op = ">"
	GreaterEqual Op = ">="
)

// Threshold is one parsed expression.
type Threshold struct {
	Source     string  // the expression as written
	Endpoint   string  // "" for the whole run
	Metric     Metric  //
	Percentile float64 // for Percentile: 50, 99, 99.9
	Op         Op
	// Limit is in nanoseconds for latencies, a fraction (0.01 for 1%) for
	// ErrorShare, a count for ErrorCount and requests per second for RPS.
	Limit float64
}

// Parse reads one expression: [ENDPOINT:]METRIC OP VALUE, where METRIC is
// pN (p50, p99, p99.9), mean, max, errors or rps, OP one of < <= > >=,
// and VALUE a duration (50ms, 1.5s) for latencies, a percentage (0.1%) or
// a count for errors, and a number for rps.
func Parse(expr string) (Threshold, error) {
	t := Threshold{Source: expr}
	body := strings.TrimSpace(expr)
	// Endpoint names may hold colons ("GET http://host:80/x") but metric
	// expressions never do, so the last colon separates them.
	if i := strings.LastIndexByte(body, ':'); i >= 0 {
		t.Endpoint = strings.TrimSpace(body[:i])
		body = strings.TrimSpace(body[i+1:])
		if t.Endpoint == "" {
			return t, fmt.Errorf("threshold %q: empty endpoint name before ':'", expr)
		}
	}
	opAt := strings.IndexAny(body, "<>")
	if opAt < 0 {
		if strings.Contains(body, "=") {
			return t, fmt.Errorf("threshold %q: use <, <=, > or >= (an exact value is not a threshold)", expr)
		}
		return t, fmt.Errorf("threshold %q: no comparison; write e.g. p99<50ms or errors<1%%", expr)
	}
	name := strings.TrimSpace(body[:opAt])
	rest := body[opAt:]
	switch {
	case strings.HasPrefix(rest, "<="):
		t.Op = LessEqual
	case strings.HasPrefix(rest, ">="):
		t.Op = GreaterEqual
	case rest[0] == '<':
		t.Op = Less
	default:
		t.Op = Greater
	}
	value := strings.TrimSpace(rest[len(t.Op):])
	if value == "" {
		return t, fmt.Errorf("threshold %q: no value after %s", expr, t.Op)
	}
	if err := t.parseMetric(name, value); err != nil {
		return t, fmt.Errorf("threshold %q: %w", expr, err)
	}
	return t, nil
}

func (t *Threshold) parseMetric(name, value string) error {
	switch {
	case name == "mean" || name == "avg":
		t.Metric = Mean
		return t.parseDuration(value)
	case name == "max":
		t.Metric = Max
		return t.parseDuration(value)
	case name == "errors":
		return t.parseErrors(value)
	case name == "rps":
		t.Metric = RPS
		v, err := parseNumber(strings.TrimSuffix(value, "/s"))
		if err != nil {
			return fmt.Errorf("rps needs a number of requests per second, got %q", value)
		}
		t.Limit = v
		return nil
	case len(name) > 1 && name[0] == 'p':
		p, err := parseNumber(name[1:])
		if err != nil || p <= 0 || p > 100 {
			return fmt.Errorf("%q is not a percentile: write p50, p99 or p99.9 (above 0, at most 100)", name)
		}
		t.Metric, t.Percentile = Percentile, p
		return t.parseDuration(value)
	case name == "":
		return errors.New("no metric before the comparison")
	}
	return fmt.Errorf("unknown metric %q (want pN such as p99, mean, max, errors or rps)", name)
}

func (t *Threshold) parseDuration(value string) error {
	d, err := time.ParseDuration(value)
	if err != nil || d < 0 {
		return fmt.Errorf("%q is not a latency: write a duration with a unit, such as 50ms or 1.5s", value)
	}
	t.Limit = float64(d)
	return nil
}

func (t *Threshold) parseErrors(value string) error {
	if pct, ok := strings.CutSuffix(value, "%"); ok {
		v, err := parseNumber(pct)
		if err != nil || v > 100 {
			return fmt.Errorf("%q is not a share of requests: write a percentage from 0%% to 100%%", value)
		}
		t.Metric, t.Limit = ErrorShare, v/100
		return nil
	}
	v, err := strconv.ParseInt(value, 10, 64)
	if err != nil || v < 0 {
		return fmt.Errorf("errors needs a percentage (1%%) or a whole count (10), got %q", value)
	}
	t.Metric, t.Limit = ErrorCount, float64(v)
	return nil
}

// parseNumber accepts finite, non-negative decimal numbers only.
func parseNumber(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || strings.ContainsAny(s, "xXpPeEnN_") {
		return 0, fmt.Errorf("%q is not a plain number", s)
	}
	return v, nil
}

// Measured is what a run (or one endpoint of it) measured.
type Measured struct {
	Requests int64   // completed, successful or not
	Errors   int64   // failed requests
	RPS      float64 // completed requests per second
	// Quantile returns the latency at a percentile (50, 99, 99.9).
	Quantile  func(percentile float64) time.Duration
	Mean, Max time.Duration
}

// Outcome is one threshold checked against a measurement.
type Outcome struct {
	Threshold Threshold
	Passed    bool
	// Observed says what was measured, as it is compared: "p99 83.2ms".
	Observed string
}

// String is one line naming the threshold and what was measured.
func (o Outcome) String() string {
	verdict := "passed"
	if !o.Passed {
		verdict = "failed"
	}
	return fmt.Sprintf("threshold %s %s: %s", o.Threshold.Source, verdict, o.Observed)
}

// Check compares t with m. A latency or rate threshold on an endpoint
// that completed no requests fails: nothing was shown to meet it.
func (t Threshold) Check(m Measured) Outcome {
	o := Outcome{Threshold: t}
	var got float64
	switch t.Metric {
	case ErrorShare:
		if m.Requests == 0 {
			o.Observed = "no requests completed"
			return o
		}
		got = float64(m.Errors) / float64(m.Requests)
		o.Observed = fmt.Sprintf("errors %s (%d of %d)", percent(got), m.Errors, m.Requests)
	case ErrorCount:
		got = float64(m.Errors)
		o.Observed = fmt.Sprintf("errors %d of %d", m.Errors, m.Requests)
	case RPS:
		got = m.RPS
		o.Observed = fmt.Sprintf("rps %.1f", got)
	default:
		if m.Requests == 0 || m.Quantile == nil {
			o.Observed = "no requests completed"
			return o
		}
		var d time.Duration
		switch t.Metric {
		case Mean:
			d = m.Mean
		case Max:
			d = m.Max
		default:
			d = m.Quantile(t.Percentile)
		}
		got = float64(d)
		o.Observed = t.metricName() + " " + formatDuration(d)
	}
	o.Passed = compare(got, t.Op, t.Limit)
	return o
}

func (t Threshold) metricName() string {
	switch t.Metric {
	case Mean:
		return "mean"
	case Max:
		return "max"
	case Percentile:
		return "p" + strconv.FormatFloat(t.Percentile, 'f', -1, 64)
	}
	return ""
}

func compare(got float64, op Op, limit float64) bool {
	switch op {
	case Less:
		return got < limit
	case LessEqual:
		return got <= limit
	case Greater:
		return got > limit
	}
	return got >= limit
}

func percent(f float64) string {
	s := strconv.FormatFloat(100*f, 'f', 2, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "%"
}

// formatDuration prints milliseconds with one decimal ("83.2ms") and
// finer units below a millisecond, as the comparison needs.
func formatDuration(d time.Duration) string {
	if d >= time.Millisecond {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	}
	return d.String()
}

// List is a repeatable command-line flag of thresholds; each value is
// parsed as it is given, so a bad one is refused before any load.
type List []Threshold

// String joins the expressions as written.
func (l *List) String() string {
	var s []string
	for _, t := range *l {
		s = append(s, t.Source)
	}
	return strings.Join(s, ", ")
}

// Set parses and adds one expression.
func (l *List) Set(expr string) error {
	t, err := Parse(expr)
	if err != nil {
		return err
	}
	*l = append(*l, t)
	return nil
}

// Endpoints names the endpoints the thresholds refer to, in order.
func (l List) Endpoints() []string {
	var names []string
	for _, t := range l {
		if t.Endpoint != "" {
			names = append(names, t.Endpoint)
		}
	}
	return names
}

// HasWholeRunErrors reports whether one threshold limits the whole run's
// errors (it then replaces a default limit).
func (l List) HasWholeRunErrors() bool {
	for _, t := range l {
		if t.Endpoint == "" && (t.Metric == ErrorShare || t.Metric == ErrorCount) {
			return true
		}
	}
	return false
}

// Evaluate checks every threshold: whole-run ones against whole, the
// others against endpoint(name); an endpoint that reports not found fails
// its thresholds.
func (l List) Evaluate(whole Measured, endpoint func(name string) (Measured, bool)) []Outcome {
	var out []Outcome
	for _, t := range l {
		if t.Endpoint == "" {
			out = append(out, t.Check(whole))
			continue
		}
		m, ok := endpoint(t.Endpoint)
		if !ok {
			out = append(out, Outcome{Threshold: t, Observed: fmt.Sprintf("no endpoint %q in the results", t.Endpoint)})
			continue
		}
		out = append(out, t.Check(m))
	}
	return out
}

// FirstFailure returns the first outcome that failed.
func FirstFailure(outcomes []Outcome) (Outcome, bool) {
	for _, o := range outcomes {
		if !o.Passed {
			return o, true
		}
	}
	return Outcome{}, false
}
