package load

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// endpointStats is one endpoint's results in one shard.
type endpointStats struct {
	hist   *hdrhistogram.Histogram // µs
	ok     *hdrhistogram.Histogram // µs, the successful answers' (nil for a stage)
	count  int64
	errs   ErrorCounts
	causes map[causeKey]*causeCount
	kind   []byte // scratch for an answer's kind, reused
}

// causeKey identifies a cause without allocating: a status code, or one
// of the constant transport causes.
type causeKey struct {
	status int
	cause  string
}

type causeCount struct {
	n      int64
	sample string // a transport cause's first message
	// kinds splits an answer's count by its kind (appendAnswerKind; ""
	// when its body named none).
	kinds map[string]*kindCount
}

type kindCount struct {
	n           int64
	sample      string // the first answer's message (bodySample)
	problemType bool   // the kind is a problem type, not a message
}

func newEndpointStats() *endpointStats {
	return &endpointStats{hist: newHist(), causes: map[causeKey]*causeCount{}}
}

// addCause counts a failed request's cause, and an answer's kind; the
// message of a cause's or kind's first occurrence is kept as its sample
// (and only then built, since that allocates).
func (e *endpointStats) addCause(out outcome, body []byte, timeoutCause string) {
	key := causeKey{status: out.status}
	if out.status == 0 {
		key.cause = transportCause(out, timeoutCause)
	}
	c, ok := e.causes[key]
	if !ok {
		c = &causeCount{}
		if out.status == 0 && out.err != nil {
			c.sample = firstLine(out.err.Error())
		}
		e.causes[key] = c
	}
	c.n++
	if out.status == 0 {
		return
	}
	var problemType bool
	e.kind, problemType = appendAnswerKind(e.kind[:0], out.status, body)
	if k, ok := c.kinds[string(e.kind)]; ok { // no allocation: the common case
		k.n++
		return
	}
	c.addKind(string(e.kind), kindCount{n: 1, sample: bodySample(body), problemType: problemType})
}

// addKind adds k's count to kind name's, past maxKindsPerStatus kinds to
// otherKinds'.
func (c *causeCount) addKind(name string, k kindCount) {
	if c.kinds == nil {
		c.kinds = map[string]*kindCount{}
	}
	if _, ok := c.kinds[name]; !ok && len(c.kinds) >= maxKindsPerStatus {
		name, k.problemType = otherKinds, false
	}
	if have, ok := c.kinds[name]; ok {
		have.n += k.n
		return
	}
	c.kinds[name] = &k
}

// transportCause names why a request got no answer, in the words a
// person would search for.
func transportCause(out outcome, timeoutCause string) string {
	err := out.err
	var dns *net.DNSError
	switch {
	case errors.Is(err, fasthttp.ErrDialTimeout):
		// The request's timeout ran out while connecting.
		return "timeout connecting"
	case out.kind == timeoutKind:
		return timeoutCause
	case out.kind == buildFailed:
		return "request could not be built"
	case err == nil:
		return "other error"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &dns) && dns.IsNotFound:
		return "no such host"
	case errors.As(err, &dns):
		return "DNS lookup failed"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the target"
	case out.kind == connectionKind:
		return "connection closed by the target"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return "request could not be sent"
	}
	return "other error"
}

// bodySample is one line from an error response: a problem document's
// detail (or title), else the body's first line.
func bodySample(body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return ""
	}
	if body[0] == '{' {
		var p struct {
			Title  string `json:"title"`
			Detail string `json:"detail"`
		}
		if json.Unmarshal(body, &p) == nil {
			if p.Detail != "" {
				return firstLine(p.Detail)
			}
			if p.Title != "" {
				return firstLine(p.Title)
			}
		}
	}
	// An HTML error page's first line is its doctype: no use as a reason.
	if !utf8.Valid(body) || body[0] == '<' {
		return ""
	}
	return firstLine(string(body))
}

const maxSample = 200

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	s = strings.TrimSpace(s)
	if len(s) > maxSample {
		cut := maxSample
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// EndpointsOf names the endpoints of a run: the scenario's, or the one
// method and path of a single target ("GET /v1/menu").
func EndpointsOf(cfg Config) []EndpointInfo {
	if cfg.Scenario != nil {
		return cfg.Scenario.Endpoints()
	}
	name := cfg.Target.Method
	if name == "" {
		name = http.MethodGet
	}
	path := "/"
	if u, err := url.Parse(cfg.Target.URL); err == nil && u.Path != "" {
		path = u.Path
	}
	name += " " + path
	return []EndpointInfo{{Name: name, Request: name}}
}

// endpointResults merges the shards' per-endpoint results.
func (g *generator) endpointResults() []Endpoint {
	out := make([]Endpoint, len(g.endpoints))
	for i, info := range g.endpoints {
		out[i] = Endpoint{Name: info.Name, Request: info.Request, Histogram: newHist(), SuccessHistogram: newHist()}
	}
	causes := make([]map[causeKey]*causeCount, len(out))
	for _, s := range g.rec.shards {
		s.mu.Lock()
		for i, e := range s.eps {
			if e == nil || i >= len(out) {
				continue
			}
			out[i].Histogram.Merge(e.hist)
			out[i].SuccessHistogram.Merge(e.ok)
			out[i].Requests += e.count
			addErrs(&out[i].Errors.ErrorCounts, e.errs)
			if causes[i] == nil {
				causes[i] = map[causeKey]*causeCount{}
			}
			for k, c := range e.causes {
				have, ok := causes[i][k]
				if !ok {
					have = &causeCount{sample: c.sample}
					causes[i][k] = have
				}
				have.n += c.n
				for name, kc := range c.kinds {
					have.addKind(name, *kc)
				}
			}
		}
		s.mu.Unlock()
	}
	for i := range out {
		ep := &out[i]
		ep.Errors.Total = ep.Errors.ErrorCounts.Total()
		ep.Errors.ByStatus, ep.Errors.Causes = summariseCauses(causes[i])
		ep.Latency = latencyOf(ep.Histogram)
		ep.SuccessLatency = latencyOf(ep.SuccessHistogram)
	}
	return out
}

func summariseCauses(m map[causeKey]*causeCount) (map[string]int64, []Cause) {
	byStatus := map[string]int64{}
	causes := []Cause{}
	for k, c := range m {
		if k.status == 0 {
			causes = append(causes, Cause{Cause: k.cause, Count: c.n, Sample: c.sample})
			continue
		}
		byStatus[strconv.Itoa(k.status)] += c.n
		name := strings.TrimSpace(strconv.Itoa(k.status) + " " + http.StatusText(k.status))
		for kind, kc := range c.kinds {
			cause := Cause{Cause: name, Status: k.status, Kind: kind, Count: kc.n, Sample: kc.sample}
			if kc.problemType {
				cause.Type = kind
			}
			causes = append(causes, cause)
		}
	}
	sort.Slice(causes, func(i, j int) bool {
		if causes[i].Count != causes[j].Count {
			return causes[i].Count > causes[j].Count
		}
		if causes[i].Cause != causes[j].Cause {
			return causes[i].Cause < causes[j].Cause
		}
		return causes[i].Kind < causes[j].Kind
	})
	return byStatus, causes
}
