// Package load generates HTTP load against any endpoint and measures it:
// open loop (a constant arrival rate, latency measured from each request's
// intended send time so a stalled server cannot hide its stall) or closed
// loop (N users, each waiting for its response before the next request).
package load

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Request is one HTTP request to send.
type Request struct {
	Method string
	URL    string
	Header http.Header
	Body   []byte
	// Endpoint indexes the run's endpoints (Scenario.Endpoints); its
	// results are kept per endpoint. A single target is endpoint 0.
	Endpoint int
}

// EndpointInfo names one endpoint of a scenario: a step, or one request
// of a step's sequence.
type EndpointInfo struct {
	Name    string // "checkout/2"
	Request string // "POST /v1/orders", as written (templates unexpanded)
}

// Config describes one load run. Exactly one of Rate (open loop) and
// Concurrency (closed loop) is positive. At least one of Duration and
// Requests bounds the run.
type Config struct {
	Rate        float64       // open loop: requests per second
	Concurrency int           // closed loop: simulated users
	ThinkTime   time.Duration // closed loop: pause between a user's requests
	Duration    time.Duration // 0: bounded by Requests only
	Requests    int64         // 0: bounded by Duration only
	Timeout     time.Duration // per request; 0 means a default
	Target      *Request      // a single request, or
	Scenario    Scenario      // a user journey (see package scenario)
	// SLO is the latency the run is judged against (0: none); the
	// generator's own lateness is judged by what it can do to the
	// latency p99 against it (see Result.GeneratorSaturated).
	SLO time.Duration
	// Users, if set, is the pool of users an open-loop run of a Scenario
	// spreads its requests over (see Users); nil: a user for each
	// request slot in flight. Closed loop has a user a slot by definition
	// and refuses a pool.
	Users *Users
	// MaxInFlight caps concurrent requests in open loop (0: a default of
	// 1,000). Requests beyond it wait in the generator, and that wait
	// counts in their latency.
	MaxInFlight int
	// Stages, if any, vary the load over time and set the run's length:
	// the open-loop rate, or with StagedUsers the closed-loop users,
	// ramps linearly from each stage's start to its Target.
	Stages      []Stage
	StagedUsers bool
	// Client picks the HTTP client (default fasthttp).
	Client Client
	// Progress, if set, is called about once per second from one goroutine.
	Progress func(Snapshot)
	// StartAt, if set, is when the load starts (Run waits for it after
	// its set-up): generators on several machines start together.
	StartAt time.Time
	// Interval, if set, is given each second of the series with the
	// histogram of its latencies (µs), from one goroutine; the histogram
	// is reused afterwards, so a caller that keeps it copies or encodes it.
	// Several generators' seconds merge exactly through these.
	Interval func(Second, *hdrhistogram.Histogram)
	// Sample, if set, sees every recorded latency as it is recorded, from
	// many goroutines: for a tool that keeps the raw samples (a test
	// holds merged percentiles against them).
	Sample func(endpoint int, latency time.Duration, succeeded bool)
	// Pause, if set, is how a user waits the time its session asked for
	// (a Retry-After), returning false when ctx ended first; nil: a
	// timer. A test observes the waits through it.
	Pause func(ctx context.Context, d time.Duration) bool
}

// Scenario produces the requests of one simulated user. The scenario
// package implements it; a Scenario is shared, a Session is per user.
type Scenario interface {
	NewSession() Session
	// Endpoints lists the endpoints its requests' Endpoint fields index.
	Endpoints() []EndpointInfo
}

// Session is one user's walk through a scenario.
type Session interface {
	// Next returns the user's next request. When it cannot be built, the
	// error says why and the request, if not nil, names its Endpoint.
	Next() (*Request, error)
	// Observe feeds the response back (to capture values such as tokens)
	// and returns how long the user waits before its next request (0:
	// none), such as a Retry-After it honours. The wait is the user's
	// own: in open loop the other users keep the schedule meanwhile.
	Observe(req *Request, resp Response) (wait time.Duration)
}

// Response is what a session sees of an answer.
type Response struct {
	Status int    // 0: no answer (a transport failure)
	Body   []byte // when the session's requests ask for it; reused after Observe
	// RetryAfter is a failed answer's Retry-After header as a delay from
	// its arrival (RFC 9110's seconds or date, at most an hour), 0
	// without one.
	RetryAfter time.Duration
}

// Snapshot is the live state of a run, for a progress line.
type Snapshot struct {
	Elapsed   time.Duration
	Requests  int64
	Errors    int64
	RateRPS   float64       // completions per second over the last second
	P99       time.Duration // so far
	Saturated bool          // the generator cannot keep up (see Result)
}

// ErrorCounts counts failed requests by kind.
type ErrorCounts struct {
	Status4xx  int64 `json:"status_4xx"`
	Status5xx  int64 `json:"status_5xx"`
	Timeout    int64 `json:"timeout"`
	Connection int64 `json:"connection"`
	Other      int64 `json:"other"`
}

// Total is the number of failed requests.
func (e ErrorCounts) Total() int64 {
	return e.Status4xx + e.Status5xx + e.Timeout + e.Connection + e.Other
}

// String names the kinds that occurred with their counts ("4xx 1610,
// timeout 2"), so that a line saying how many requests failed also says
// how: a rate limit's 4xx and an overload's timeouts call for different
// fixes. It is "none" when nothing failed.
func (e ErrorCounts) String() string {
	var parts []string
	for _, k := range []struct {
		name string
		n    int64
	}{{"4xx", e.Status4xx}, {"5xx", e.Status5xx}, {"timeout", e.Timeout}, {"connection", e.Connection}, {"other", e.Other}} {
		if k.n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k.name, k.n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Latency summarises a latency distribution.
type Latency struct {
	Min  time.Duration `json:"min_ns"`
	Mean time.Duration `json:"mean_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
}

// Second is one second of a run, for time-series plots.
type Second struct {
	At       int           `json:"at_s"` // seconds since start
	Requests int64         `json:"requests"`
	Errors   int64         `json:"errors"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
}

// Result is what a run measured.
type Result struct {
	Model string `json:"model"` // "open" or "closed"
	// Start is when the load started (the first request's due time).
	Start         time.Time     `json:"start"`
	Rate          float64       `json:"rate,omitempty"`
	Concurrency   int           `json:"concurrency,omitempty"`
	Elapsed       time.Duration `json:"elapsed_ns"`
	Requests      int64         `json:"requests"` // completed, successful or not
	Errors        ErrorCounts   `json:"errors"`
	ThroughputRPS float64       `json:"throughput_rps"` // Requests / Elapsed
	Latency       Latency       `json:"latency"`
	// Succeeded counts the requests answered without error, GoodputRPS
	// them per second and SuccessLatency their latency: a service that
	// refuses fast looks fast and busy in the figures above, and only
	// these say what it served.
	Succeeded      int64    `json:"succeeded"`
	GoodputRPS     float64  `json:"goodput_rps"`
	SuccessLatency Latency  `json:"success_latency"`
	Series         []Second `json:"series"`
	// GeneratorSaturated is true when the generator, not the target, may
	// have limited the run or its latency figures: its CPU was saturated
	// or, in open loop, requests were never sent, waited for an in-flight
	// slot, or went out late enough to matter against the SLO (or the
	// measured p99) while it was busy. SaturationReasons says which, with
	// the figures.
	GeneratorSaturated bool     `json:"generator_saturated"`
	SaturationReasons  []string `json:"saturation_reasons,omitempty"`
	// Notes are what may colour the figures without being the generator's
	// limit: requests that went out late enough to matter while the
	// generator itself was idle, or a machine whose CPUs were saturated
	// (other work held the CPU).
	Notes []string `json:"notes,omitempty"`
	// SendDelayP99 is, in open loop, the 99th percentile of how late the
	// generator dispatched requests after their due time: the most the
	// generator itself can have added to the latency p99.
	SendDelayP99 time.Duration `json:"send_delay_p99_ns"`
	// Sent is, in open loop, how many requests the schedule dispatched.
	Sent int64 `json:"sent"`
	// GeneratorCPUCores is the CPU the generator's process used, in cores
	// (CPU seconds per second of the run).
	GeneratorCPUCores float64 `json:"generator_cpu_cores"`
	// Histogram holds every latency in microseconds; SuccessHistogram
	// those of the successful answers.
	Histogram        *hdrhistogram.Histogram `json:"-"`
	SuccessHistogram *hdrhistogram.Histogram `json:"-"`
	// Endpoints holds the results of each endpoint: each step of a
	// scenario, or the one method and path of a URL run.
	Endpoints []Endpoint `json:"endpoints"`
	// Stages holds each stage's results in a staged run.
	Stages []StageResult `json:"stages,omitempty"`
	// Agents holds, in a distributed run, what each agent measured of
	// itself: a saturated agent marks the whole result.
	Agents []AgentCheck `json:"agents,omitempty"`
}

// AgentCheck is one agent's part of a distributed run and its own
// saturation check.
type AgentCheck struct {
	Name        string  `json:"name"` // "agent 2 (10.0.0.7:7070)"
	Requests    int64   `json:"requests"`
	Sent        int64   `json:"sent,omitempty"`
	Rate        float64 `json:"rate,omitempty"`
	Concurrency int     `json:"concurrency,omitempty"`
	// ThroughputRPS, Errors and Latency are the agent's own part of the
	// merged figures: one agent slower or failing more than the others
	// (a far network, a busy machine) shows here, not in the merge.
	ThroughputRPS     float64       `json:"throughput_rps"`
	Errors            ErrorCounts   `json:"errors"`
	Latency           Latency       `json:"latency"`
	GeneratorCPUCores float64       `json:"generator_cpu_cores"`
	SendDelayP99      time.Duration `json:"send_delay_p99_ns"`
	// StartedLate is how long after its agreed instant the agent started.
	StartedLate        time.Duration `json:"started_late_ns"`
	GeneratorSaturated bool          `json:"generator_saturated"`
	SaturationReasons  []string      `json:"saturation_reasons,omitempty"`
	Notes              []string      `json:"notes,omitempty"`
}

// Endpoint is what one endpoint of a run measured.
type Endpoint struct {
	Name     string         `json:"name"`
	Request  string         `json:"request"`
	Requests int64          `json:"requests"` // completed, successful or not
	Errors   EndpointErrors `json:"errors"`
	Latency  Latency        `json:"latency"`
	// SuccessLatency is the latency of the endpoint's successful answers
	// alone: under overload, fast refusals pull Latency down, and this
	// says how the requests the service took were served.
	SuccessLatency Latency `json:"success_latency"`
	// Histogram holds the endpoint's latencies in microseconds;
	// SuccessHistogram those of its successful answers.
	Histogram        *hdrhistogram.Histogram `json:"-"`
	SuccessHistogram *hdrhistogram.Histogram `json:"-"`
}

// EndpointErrors counts an endpoint's failed requests by kind, by status
// code and by cause.
type EndpointErrors struct {
	Total int64 `json:"total"`
	ErrorCounts
	ByStatus map[string]int64 `json:"by_status"` // "429": 7841
	Causes   []Cause          `json:"causes"`    // most frequent first
}

// Cause is one reason requests failed, with the first message seen for it.
// The answers of one status are split by their kind, read from their
// bodies: a service's own refusals and a dependency's failures may share
// a status (503) and call for different fixes.
type Cause struct {
	Cause  string `json:"cause"`            // "429 Too Many Requests", "connection refused", "timeout after 5s"
	Status int    `json:"status,omitempty"` // for an HTTP status
	// Kind tells apart the answers of one status: the problem type of an
	// RFC 9457 document when it is not about:blank, else its title when
	// not merely the status's text, else its detail (or a JSON error's
	// "message" or "error", or a plain body's first line) with each run of
	// digits as "N"; "(other messages)" past 8 kinds of one status. Empty
	// for a transport cause or a body that named nothing (HTML, empty).
	Kind string `json:"kind,omitempty"`
	// Type is the problem type when the kind is one.
	Type  string `json:"type,omitempty"`
	Count int64  `json:"count"`
	// Sample is one message of this cause: the first line of a problem
	// document's detail, of another error body, or of the client's error.
	Sample string `json:"sample,omitempty"`
}

// Label is the cause with its kind when that says more than the status:
// `503 Service Unavailable (“the database is not answering…”)`, the kind
// cut to at most n runes (all of it when n is 0).
func (c Cause) Label(n int) string {
	if c.Kind == "" {
		return c.Cause
	}
	k := c.Kind
	if r := []rune(k); n > 0 && len(r) > n {
		k = string(r[:n-1]) + "…"
	}
	if c.Type != "" {
		return c.Cause + " (type " + k + ")"
	}
	return c.Cause + " (“" + k + "”)"
}
