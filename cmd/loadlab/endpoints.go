package main

import (
	"fmt"
	"strings"

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
	// A transport failure's sample names the address: a scenario run
	// without --base said only "connection refused on session".
	if best.Sample != "" && best.Sample != best.Cause {
		s += fmt.Sprintf(": %q", best.Sample)
	}
	return s
}
