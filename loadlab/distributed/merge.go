package distributed

import (
	"fmt"
	"sort"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/perfscale/perfscale/loadlab/load"
)

// lateStart is how late after its agreed instant an agent may start
// before the report says so.
const lateStart = 20 * time.Millisecond

// merge combines the agents' results into one, as one generator sending
// the whole load would have reported it: counts add up, histograms merge
// bucket by bucket (no rounding: the percentiles are those of the union
// of the samples, to the histograms' precision), and each agent's own
// saturation check is kept, a saturated agent marking the whole result.
func merge(conns []*agentConn, outs []agentOutcome, startAt time.Time, spec Spec) (*load.Result, error) {
	m := &load.Result{Model: "closed", Concurrency: spec.Concurrency}
	if spec.Rate > 0 || (len(spec.Stages) > 0 && !spec.StagedUsers) {
		m.Model, m.Rate, m.Concurrency = "open", spec.Rate, 0
	}
	var end time.Time
	hm := &histMerger{}
	for i, o := range outs {
		r := o.res.Result
		if i == 0 || r.Start.Before(m.Start) {
			m.Start = r.Start
		}
		if e := r.Start.Add(r.Elapsed); e.After(end) {
			end = e
		}
		m.Requests += r.Requests
		addErrs(&m.Errors, r.Errors)
		m.Succeeded += r.Succeeded
		m.Sent += r.Sent
		m.GeneratorCPUCores += r.GeneratorCPUCores
		m.SendDelayP99 = max(m.SendDelayP99, r.SendDelayP99)
		m.Histogram = hm.add(m.Histogram, r.Histogram)
		m.SuccessHistogram = hm.add(m.SuccessHistogram, r.SuccessHistogram)
		m.Agents = append(m.Agents, agentCheck(conns[i], r, startAt))
	}
	m.Elapsed = end.Sub(m.Start)
	if m.Elapsed > 0 {
		m.ThroughputRPS = float64(m.Requests) / m.Elapsed.Seconds()
		m.GoodputRPS = float64(m.Succeeded) / m.Elapsed.Seconds()
	}
	m.Latency = load.LatencyOf(m.Histogram)
	m.SuccessLatency = load.LatencyOf(m.SuccessHistogram)
	var err error
	if m.Endpoints, err = mergeEndpoints(outs, hm); err != nil {
		return nil, err
	}
	m.Stages = mergeStages(outs, spec, hm)
	m.Series = mergeSeries(outs, hm)
	for _, a := range m.Agents {
		for _, r := range a.SaturationReasons {
			m.SaturationReasons = append(m.SaturationReasons, a.Name+": "+r)
		}
		for _, n := range a.Notes {
			m.Notes = append(m.Notes, a.Name+": "+n)
		}
	}
	m.GeneratorSaturated = len(m.SaturationReasons) > 0
	if hm.dropped > 0 {
		return nil, fmt.Errorf("merging the agents' histograms dropped %d values out of range: they were not recorded alike", hm.dropped)
	}
	return m, nil
}

// histMerger merges histograms and counts values one could not take.
type histMerger struct{ dropped int64 }

// add merges h into into (a copy of h when into is nil) and returns it.
func (hm *histMerger) add(into, h *hdrhistogram.Histogram) *hdrhistogram.Histogram {
	if h == nil {
		return into
	}
	if into == nil {
		return hdrhistogram.Import(h.Export())
	}
	hm.dropped += into.Merge(h)
	return into
}

func addErrs(a *load.ErrorCounts, b load.ErrorCounts) {
	a.Status4xx += b.Status4xx
	a.Status5xx += b.Status5xx
	a.Timeout += b.Timeout
	a.Connection += b.Connection
	a.Other += b.Other
}

// agentCheck is one agent's own view of its part.
func agentCheck(a *agentConn, r *load.Result, startAt time.Time) load.AgentCheck {
	c := load.AgentCheck{
		Name: a.name, Requests: r.Requests, Sent: r.Sent, Rate: r.Rate, Concurrency: r.Concurrency,
		ThroughputRPS: r.ThroughputRPS, Errors: r.Errors, Latency: r.Latency,
		GeneratorCPUCores: r.GeneratorCPUCores, SendDelayP99: r.SendDelayP99,
		GeneratorSaturated: r.GeneratorSaturated, SaturationReasons: r.SaturationReasons, Notes: r.Notes,
	}
	c.StartedLate = max(0, r.Start.Sub(startAt.Add(a.part.Phase)))
	if c.StartedLate > lateStart {
		c.Notes = append(c.Notes, fmt.Sprintf("started %v after the agreed instant (a busy agent, or clocks that drifted since the start was agreed)", c.StartedLate.Round(time.Millisecond)))
	}
	return c
}

// mergeEndpoints merges the endpoints by index; every agent ran the same
// spec, so their endpoints must agree.
func mergeEndpoints(outs []agentOutcome, hm *histMerger) ([]load.Endpoint, error) {
	first := outs[0].res.Result.Endpoints
	merged := make([]load.Endpoint, len(first))
	causes := make([]map[[3]string]*load.Cause, len(first))
	order := make([][][3]string, len(first))
	for _, o := range outs {
		eps := o.res.Result.Endpoints
		if len(eps) != len(first) {
			return nil, fmt.Errorf("agents measured different endpoints (%d and %d)", len(first), len(eps))
		}
		for i, ep := range eps {
			d := &merged[i]
			if ep.Name != first[i].Name {
				return nil, fmt.Errorf("agents measured different endpoints (%q and %q)", first[i].Name, ep.Name)
			}
			d.Name, d.Request = ep.Name, ep.Request
			d.Requests += ep.Requests
			addErrs(&d.Errors.ErrorCounts, ep.Errors.ErrorCounts)
			d.Histogram = hm.add(d.Histogram, ep.Histogram)
			d.SuccessHistogram = hm.add(d.SuccessHistogram, ep.SuccessHistogram)
			if causes[i] == nil {
				causes[i] = map[[3]string]*load.Cause{}
			}
			for _, c := range ep.Errors.Causes {
				key := [3]string{c.Cause, fmt.Sprint(c.Status), c.Kind}
				if have, ok := causes[i][key]; ok {
					have.Count += c.Count
					continue
				}
				cc := c
				causes[i][key] = &cc
				order[i] = append(order[i], key)
			}
			for s, n := range ep.Errors.ByStatus {
				if d.Errors.ByStatus == nil {
					d.Errors.ByStatus = map[string]int64{}
				}
				d.Errors.ByStatus[s] += n
			}
		}
	}
	for i := range merged {
		d := &merged[i]
		d.Errors.Total = d.Errors.ErrorCounts.Total()
		if d.Errors.ByStatus == nil {
			d.Errors.ByStatus = map[string]int64{}
		}
		d.Errors.Causes = []load.Cause{}
		for _, k := range order[i] {
			d.Errors.Causes = append(d.Errors.Causes, *causes[i][k])
		}
		sort.SliceStable(d.Errors.Causes, func(a, b int) bool {
			ca, cb := d.Errors.Causes[a], d.Errors.Causes[b]
			if ca.Count != cb.Count {
				return ca.Count > cb.Count
			}
			return ca.Cause < cb.Cause
		})
		d.Latency = load.LatencyOf(d.Histogram)
		d.SuccessLatency = load.LatencyOf(d.SuccessHistogram)
	}
	return merged, nil
}

// mergeStages merges the stages by index, with the whole run's targets.
func mergeStages(outs []agentOutcome, spec Spec, hm *histMerger) []load.StageResult {
	if len(spec.Stages) == 0 {
		return nil
	}
	merged := make([]load.StageResult, len(spec.Stages))
	from := 0.0
	for i, s := range spec.Stages {
		merged[i] = load.StageResult{Stage: s, From: from}
		from = s.Target
	}
	for _, o := range outs {
		for i, st := range o.res.Result.Stages {
			if i >= len(merged) {
				break
			}
			merged[i].Requests += st.Requests
			addErrs(&merged[i].Errors, st.Errors)
			merged[i].Histogram = hm.add(merged[i].Histogram, st.Histogram)
		}
	}
	for i := range merged {
		merged[i].ThroughputRPS = float64(merged[i].Requests) / merged[i].Duration.Seconds()
		if merged[i].Histogram != nil {
			merged[i].Latency = load.LatencyOf(merged[i].Histogram)
		}
	}
	return merged
}

// mergeSeries merges the agents' seconds: second k of each agent (they
// started together) is second k of the run.
func mergeSeries(outs []agentOutcome, hm *histMerger) []load.Second {
	var series []load.Second
	var hists []*hdrhistogram.Histogram
	for _, o := range outs {
		for i, s := range o.res.Result.Series {
			for len(series) <= i {
				series = append(series, load.Second{At: len(series) + 1})
				hists = append(hists, nil)
			}
			series[i].Requests += s.Requests
			series[i].Errors += s.Errors
			hists[i] = hm.add(hists[i], o.seconds[i])
		}
	}
	for i, h := range hists {
		if h != nil && h.TotalCount() > 0 {
			series[i].P50 = time.Duration(h.ValueAtQuantile(50)) * time.Microsecond
			series[i].P99 = time.Duration(h.ValueAtQuantile(99)) * time.Microsecond
		}
	}
	return series
}
