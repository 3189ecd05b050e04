package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/perfscale/perfscale/shop/httpapi/shedconn"
)

// The fast path: once admission has refused a request at once (sustained
// overload), its connection may go to shedconn, which reads the next
// requests itself and asks fastJudge about each, so that a refusal skips
// net/http's own work per request (reading and parsing it into an
// http.Request, its ResponseWriter, the header map): a replica at ten times
// its capacity refuses nine requests for each one it answers, and a
// refusal must cost under a ninth of an answer (docs/reliability.md). What
// the client sees is unchanged: the same 503, header and body, in order,
// on the same keep-alive connection.

// fastRoute is what a refusal on the fast path needs of a route: its plan,
// metrics and deadline (handle registers it).
type fastRoute struct {
	spec    routeSpec
	route   *routeMetrics
	timeout time.Duration
}

// shedConnection hands the connection of r, whose refusal has just been
// written to w, to the fast path (shedconn.Take says when it can keep the
// HTTP contract there), unless the process drains (its answers say
// Connection: close) or logs at debug level (a line per refusal).
func (s *server) shedConnection(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodHead && s.fastPathOpen() {
		shedconn.Take(w, r, func() shedconn.Judge { return s.newFastJudge(w.Header()) })
	}
}

// fastPathOpen reports whether the fast path may answer now.
func (s *server) fastPathOpen() bool {
	return !s.draining() && !s.log.Enabled(context.Background(), slog.LevelDebug)
}

// fastJudge refuses, on one connection's fast path, the requests admission
// would refuse at once, with the answer net/http wrote for the refusal
// that handed the connection over (its header as the handlers set it, the
// outer ones' X-Replica included), the request id and the length made
// anew for each, as withRequestID and writeShed make them.
type fastJudge struct {
	s *server
	// header is the answer's header lines in net/http's order (sorted by
	// key), with "" where the request's Content-Length and X-Request-Id
	// go.
	header []string
	probe  http.Request // asks the mux for a request's route
	target url.URL
	body   []byte
	// date is the Date line of the second dateOf, made once a second
	// (formatting it was a tenth of a refusal's cost).
	date   []byte
	dateOf int64
}

// shedStatusLine is a refusal's status line.
const shedStatusLine = "HTTP/1.1 503 Service Unavailable\r\n"

func (s *server) newFastJudge(h http.Header) *fastJudge {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	j := &fastJudge{s: s, header: make([]string, 0, len(keys))}
	for _, k := range keys {
		if k == "Content-Length" || k == "X-Request-Id" {
			j.header = append(j.header, "", k)
			continue
		}
		for _, v := range h[k] {
			j.header = append(j.header, k+": "+v+"\r\n")
		}
	}
	j.probe.URL = &j.target
	j.probe.Header = http.Header{}
	return j
}

// Refuse implements shedconn.Judge.
func (j *fastJudge) Refuse(dst []byte, r *shedconn.Request) ([]byte, bool) {
	s := j.s
	if !s.fastPathOpen() {
		return dst, false
	}
	j.probe.Method, j.target.Path = r.Method, r.Path
	_, pattern := s.mux.Handler(&j.probe)
	fr, ok := s.fastRoutes[pattern]
	if !ok {
		return dst, false
	}
	start := time.Now()
	var deadline time.Time
	if fr.timeout > 0 {
		deadline = start.Add(fr.timeout)
	}
	if !s.admission.refusesAtOnce(fr.spec, deadline) {
		return dst, false
	}
	fr.route.begin()
	id := r.RequestID
	if !saneID(id) {
		id = newRequestID()
	}
	j.body = appendShed(j.body[:0], r.Path, id)
	dst = append(dst, shedStatusLine...)
	for i := 0; i < len(j.header); i++ {
		line := j.header[i]
		if line != "" {
			dst = append(dst, line...)
			continue
		}
		i++
		switch j.header[i] {
		case "Content-Length":
			dst = strconv.AppendInt(append(dst, "Content-Length: "...), int64(len(j.body)), 10)
		default:
			dst = append(append(dst, "X-Request-Id: "...), id...)
		}
		dst = append(dst, "\r\n"...)
	}
	dst = append(append(dst, j.dateLine(time.Now())...), j.body...)
	fr.route.end(http.StatusServiceUnavailable, time.Since(start))
	return dst, true
}

// dateLine is the Date header line for now, as net/http writes it, and
// the blank line that ends the header.
func (j *fastJudge) dateLine(now time.Time) []byte {
	if sec := now.Unix(); sec != j.dateOf || j.date == nil {
		j.date = append(now.UTC().AppendFormat(append(j.date[:0], "Date: "...), http.TimeFormat), "\r\n\r\n"...)
		j.dateOf = sec
	}
	return j.date
}
