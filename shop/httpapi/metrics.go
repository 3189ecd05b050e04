package httpapi

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns a registry with the Go runtime and process
// collectors, to which the handler adds its own metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// latencyBuckets resolve the range the service's objectives live in
// (a few ms for reads, tens of ms for checkout) and its failure modes
// (seconds).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

type httpMetrics struct {
	requests  *prometheus.CounterVec
	abandoned *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	inFlight  *prometheus.GaugeVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: requestsTotal(reg),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shop_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern and status class (2xx...5xx).",
			Buckets: latencyBuckets,
		}, []string{"route", "code"}),
		abandoned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_http_requests_abandoned_total",
			Help: "HTTP requests whose client went away before the answer (logged as status 499), by route pattern. Not in shop_http_requests_total or the latency histogram, which count answered requests only.",
		}, []string{"route"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shop_http_requests_in_flight",
			Help: "HTTP requests being served, by route pattern.",
		}, []string{"route"}),
	}
	reg.MustRegister(m.abandoned, m.inFlight, m.duration)
	return m
}

// requestsTotal is shop_http_requests_total, registered once in reg and
// shared by the handler and the Server (which counts net/http's own
// refusals in it).
func requestsTotal(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shop_http_requests_total",
		Help: "HTTP requests answered, by route pattern and status code; route net/http counts the requests net/http refused itself before any handler (malformed, headers too large, unsupported transfer coding or HTTP version).",
	}, []string{"route", "code"})
	if err := reg.Register(c); err != nil {
		var have prometheus.AlreadyRegisteredError
		if errors.As(err, &have) {
			return have.ExistingCollector.(*prometheus.CounterVec)
		}
		panic(err)
	}
	return c
}

// routeMetrics are one route's series, resolved once at registration so
// the request path does no label lookups for the statuses it commonly
// sends; any other status is looked up when it first occurs.
type routeMetrics struct {
	m         *httpMetrics
	route     string
	flight    prometheus.Gauge
	abandoned prometheus.Counter
	byCode    map[int]prometheus.Counter // read-only after route()
	byClass   [6]prometheus.Observer
}

// commonStatuses are the statuses resolved ahead for every route.
var commonStatuses = []int{200, 201, 204, 304, 400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 500, 503}

func (m *httpMetrics) route(pattern string) *routeMetrics {
	rm := &routeMetrics{m: m, route: pattern, flight: m.inFlight.WithLabelValues(pattern),
		abandoned: m.abandoned.WithLabelValues(pattern), byCode: map[int]prometheus.Counter{}}
	for _, code := range commonStatuses {
		rm.byCode[code] = m.requests.WithLabelValues(pattern, strconv.Itoa(code))
	}
	for c := 1; c <= 5; c++ {
		rm.byClass[c] = m.duration.WithLabelValues(pattern, strconv.Itoa(c)+"xx")
	}
	return rm
}

// begin counts a request in flight; end, which every begin is followed
// by, counts it answered (or abandoned) after d. Methods, not a closure
// begin returns: that cost every request, refusals too, an allocation.
func (rm *routeMetrics) begin() { rm.flight.Inc() }

func (rm *routeMetrics) end(status int, d time.Duration) {
	rm.flight.Dec()
	if status == StatusClientClosedRequest {
		rm.abandoned.Inc()
		return
	}
	if c, ok := rm.byCode[status]; ok {
		c.Inc()
	} else {
		rm.m.requests.WithLabelValues(rm.route, strconv.Itoa(status)).Inc()
	}
	c := status / 100
	if c < 1 || c > 5 {
		c = 5
	}
	rm.byClass[c].Observe(d.Seconds())
}

func (m *httpMetrics) unmatched(status int) {
	m.requests.WithLabelValues("unmatched", strconv.Itoa(status)).Inc()
}
