package scaleout

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
)

// errorDetail names the requests that failed and how, from the
// generator's per-endpoint results: `"session" (POST /v1/sessions): 429
// Too Many Requests ×1610` ("" when the probe kept none).
func errorDetail(p Probe) string {
	s, ok := p.Detail.(measure.Step)
	if !ok || s.Load == nil {
		return ""
	}
	var failed []load.Endpoint
	for _, e := range s.Load.Endpoints {
		if e.Errors.Total > 0 {
			failed = append(failed, e)
		}
	}
	slices.SortStableFunc(failed, func(a, b load.Endpoint) int { return cmp.Compare(b.Errors.Total, a.Errors.Total) })
	var parts []string
	for _, e := range failed[:min(len(failed), 3)] {
		who := e.Request
		if e.Name != "" && e.Name != e.Request {
			who = fmt.Sprintf("%q (%s)", e.Name, e.Request)
		}
		var causes []string
		for _, c := range e.Errors.Causes[:min(len(e.Errors.Causes), 2)] {
			causes = append(causes, fmt.Sprintf("%s ×%d", c.Cause, c.Count))
		}
		if len(causes) == 0 {
			causes = append(causes, e.Errors.ErrorCounts.String())
		}
		parts = append(parts, who+" got "+strings.Join(causes, ", "))
	}
	return strings.Join(parts, "; ")
}
