package main

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/threshold"
)

// endpointMeasured finds what the thresholds of one endpoint check: the
// endpoint of that name, or all the requests of a sequence step ("checkout"
// covers "checkout/1" and "checkout/2").
func endpointMeasured(r *load.Result) func(name string) (threshold.Measured, bool) {
	return func(name string) (threshold.Measured, bool) {
		var (
			found          bool
			requests, errs int64
			h              = hdrhistogram.New(1, int64(1<<62), 3)
		)
		for _, ep := range r.Endpoints {
			if ep.Name != name && !strings.HasPrefix(ep.Name, name+"/") {
				continue
			}
			found = true
			requests += ep.Requests
			errs += ep.Errors.Total
			if ep.Histogram != nil {
				h.Merge(ep.Histogram)
			}
		}
		return measured(requests, errs, r.Elapsed, h), found
	}
}

// checkEndpointNames refuses, before the run, a threshold naming an
// endpoint the run will not have.
func checkEndpointNames(checks threshold.List, endpoints []load.EndpointInfo) error {
	for _, name := range checks.Endpoints() {
		ok := false
		var names []string
		for _, ep := range endpoints {
			names = append(names, ep.Name)
			ok = ok || ep.Name == name || strings.HasPrefix(ep.Name, name+"/")
		}
		if !ok {
			return fmt.Errorf("--threshold: no endpoint %q in this run (it has %s)", name, strings.Join(names, ", "))
		}
	}
	return nil
}

// printEndpoints prints one row per endpoint, then each endpoint's error
// causes with a sample message, so a failure says where and why.
func printEndpoints(w io.Writer, eps []load.Endpoint) {
	if len(eps) > 1 {
		nameW, reqW := len("endpoint"), len("request")
		for _, ep := range eps {
			nameW = max(nameW, utf8.RuneCountInString(ep.Name))
			reqW = max(reqW, min(utf8.RuneCountInString(ep.Request), 40))
		}
		fmt.Fprintf(w, "  endpoints\n    %-*s  %-*s %9s %15s %10s %10s %10s\n", nameW, "endpoint", reqW, "request", "requests", "errors", "p50", "p99", "max")
		for _, ep := range eps {
			fmt.Fprintf(w, "    %-*s  %-*s %9d %15s %10s %10s %10s\n", nameW, ep.Name, reqW, clip(ep.Request, 40),
				ep.Requests, errorShare(ep.Errors.Total, ep.Requests), ms(ep.Latency.P50), ms(ep.Latency.P99), ms(ep.Latency.Max))
		}
	}
	printed := false
	for _, ep := range eps {
		for _, c := range ep.Errors.Causes {
			if !printed {
				fmt.Fprintln(w, "  error causes")
				printed = true
			}
			line := fmt.Sprintf("    %-12s %7d  %s", ep.Name, c.Count, c.Cause)
			if c.Sample != "" {
				line += fmt.Sprintf(": %q", c.Sample)
			}
			fmt.Fprintln(w, line)
		}
	}
}

func errorShare(errs, requests int64) string {
	if requests == 0 || errs == 0 {
		return fmt.Sprint(errs)
	}
	return fmt.Sprintf("%d (%.0f%%)", errs, 100*float64(errs)/float64(requests))
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// topCause names the most frequent cause of failure in a run and where it
// happened: "429 Too Many Requests on session (7841)".
func topCause(eps []load.Endpoint) string {
	var best load.Cause
	where := ""
	for _, ep := range eps {
		for _, c := range ep.Errors.Causes {
			if c.Count > best.Count {
				best, where = c, ep.Name
			}
		}
	}
	if best.Count == 0 {
		return ""
	}
	s := fmt.Sprintf("%s on %s (%d)", best.Cause, where, best.Count)
	if best.Sample != "" && best.Status != 0 {
		s += fmt.Sprintf(": %q", best.Sample)
	}
	return s
}
