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
// generator's per-endpoint results, each status split by the kind its
// answers' bodies named: `"cart" (POST /v1/cart) got 503 Service
// Unavailable ×1610 (“the service is overloaded and refused…”)` ("" when
// the probe kept none).
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
		for _, c := range e.Errors.Causes[:min(len(e.Errors.Causes), 3)] {
			causes = append(causes, fmt.Sprintf("%s ×%d", c.Cause, c.Count)+kindText(c))
		}
		if len(causes) == 0 {
			causes = append(causes, e.Errors.ErrorCounts.String())
		}
		parts = append(parts, who+" got "+strings.Join(causes, ", "))
	}
	return strings.Join(parts, "; ")
}

// kindLength is how much of a kind a line of the table shows: enough to
// tell a service's messages apart.
const kindLength = 60

// kindText is a cause's kind as errorDetail adds it after the count.
func kindText(c load.Cause) string {
	if c.Kind == "" {
		return ""
	}
	return strings.TrimPrefix(c.Label(kindLength), c.Cause)
}

// errorKinds sums a probe's failed requests by cause and kind over its
// endpoints, the most frequent first, at most n of them: `503 Service
// Unavailable ×37 (“the service is overloaded…”), 503 Service Unavailable
// ×5 (“shard N is not answering…”)` ("" when the probe kept none).
func errorKinds(p Probe, n int) string {
	s, ok := p.Detail.(measure.Step)
	if !ok || s.Load == nil {
		return ""
	}
	type key struct{ cause, kind string }
	sums := map[key]*load.Cause{}
	var order []key
	for _, e := range s.Load.Endpoints {
		for _, c := range e.Errors.Causes {
			k := key{c.Cause, c.Kind}
			if have, ok := sums[k]; ok {
				have.Count += c.Count
				continue
			}
			cc := c
			sums[k] = &cc
			order = append(order, k)
		}
	}
	slices.SortStableFunc(order, func(a, b key) int { return cmp.Compare(sums[b].Count, sums[a].Count) })
	var parts []string
	for _, k := range order[:min(len(order), n)] {
		c := sums[k]
		parts = append(parts, fmt.Sprintf("%s ×%d", c.Cause, c.Count)+kindText(*c))
	}
	if len(order) > n {
		parts = append(parts, "…")
	}
	return strings.Join(parts, ", ")
}

// tooManyRequests counts the probe's answers of 429 Too Many Requests.
func tooManyRequests(p Probe) int64 {
	s, ok := p.Detail.(measure.Step)
	if !ok {
		return 0
	}
	return tooManyRequestsIn(s)
}

// tooManyRequestsIn counts a step's answers of 429 Too Many Requests (0
// when its source kept no generator's result).
func tooManyRequestsIn(s measure.Step) int64 {
	if s.Load == nil {
		return 0
	}
	var n int64
	for _, e := range s.Load.Endpoints {
		n += e.Errors.ByStatus["429"]
	}
	return n
}

// rateLimited says so when the errors that bounded the capacity are
// mostly 429 Too Many Requests: the target refused this client's rate (a
// per-client limit, which one generator on one address meets as though
// it were one user), so the capacity found is the limit's, not the
// system's, and a table of such counts measures how the limit grows with
// the replicas ("" when not).
func rateLimited(c Capacity, cfg Config) string {
	b := c.Bound
	if b.Requests == 0 || b.Errors == 0 || float64(b.Errors) < cfg.MaxErrorRate*float64(b.Requests) {
		return ""
	}
	n := tooManyRequests(b)
	if 2*n <= b.Errors {
		return ""
	}
	return fmt.Sprintf("at %.0f req/s, the rate that bounded it, %d of the %d failed requests were 429 Too Many Requests: "+
		"the target limited this client's rate, so the capacity is that limit's, not the system's; "+
		"lift per-client limits for the measurement (scripts/cluster.sh: PERFSCALE_CLUSTER_CLIENT_LIMITS=off)",
		b.Rate, n, b.Errors)
}

// refusedOutright says why there is no capacity to search when one user's
// every request got a client error other than 429 (a wrong URL's 404, a
// 401 without credentials): no rate makes such a target answer, and a
// search of it ran every probe on 100% errors down to its lowest rate.
// A 429 is a rate limit, which a lower rate meets (nil then, as when any
// request succeeded or failed otherwise).
func refusedOutright(s measure.Step) error {
	if s.Requests == 0 || s.ErrorKinds.Status4xx < s.Requests || tooManyRequestsIn(s) > 0 {
		return nil
	}
	how := errorDetail(Probe{Detail: s})
	if how == "" {
		how = s.ErrorKinds.String()
	}
	return fmt.Errorf("all %d of one user's requests failed with a client error (%s): the target refuses what is sent at any rate, so there is no capacity to search; check the URL, --path or the scenario",
		s.Requests, how)
}
