package httpapi

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/perfscale/perfscale/shop"
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
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status class.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shop_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern and status class.",
			Buckets: latencyBuckets,
		}, []string{"route", "code"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shop_http_requests_in_flight",
			Help: "HTTP requests being served, by route pattern.",
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight)
	return m
}

// routeMetrics are one route's series, resolved once at registration so
// the request path does no label lookups.
type routeMetrics struct {
	m       *httpMetrics
	route   string
	flight  prometheus.Gauge
	byClass [6]struct {
		count prometheus.Counter
		dur   prometheus.Observer
	}
}

func (m *httpMetrics) route(pattern string) *routeMetrics {
	rm := &routeMetrics{m: m, route: pattern, flight: m.inFlight.WithLabelValues(pattern)}
	for c := 1; c <= 5; c++ {
		class := strconv.Itoa(c) + "xx"
		rm.byClass[c].count = m.requests.WithLabelValues(pattern, class)
		rm.byClass[c].dur = m.duration.WithLabelValues(pattern, class)
	}
	return rm
}

// begin counts a request in flight; the returned func ends it.
func (rm *routeMetrics) begin() func(status int, d time.Duration) {
	rm.flight.Inc()
	return func(status int, d time.Duration) {
		rm.flight.Dec()
		c := status / 100
		if c < 1 || c > 5 {
			c = 5
		}
		rm.byClass[c].count.Inc()
		rm.byClass[c].dur.Observe(d.Seconds())
	}
}

func (m *httpMetrics) unmatched(status int) {
	m.requests.WithLabelValues("unmatched", strconv.Itoa(status/100)+"xx").Inc()
}

// instrumentedStore times every store call, so a slow request can be told
// apart from a slow database.
type instrumentedStore struct {
	shop.Store
	dur *prometheus.HistogramVec
}

func instrumentStore(s shop.Store, reg prometheus.Registerer) shop.Store {
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "shop_store_call_duration_seconds",
		Help:    "Time spent in store calls, by operation and outcome.",
		Buckets: latencyBuckets,
	}, []string{"op", "outcome"})
	reg.MustRegister(dur)
	return &instrumentedStore{Store: s, dur: dur}
}

func (s *instrumentedStore) observe(op string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
		if c := shop.ErrorCode(err); c != shop.EINTERNAL {
			outcome = "refused" // a domain answer, not a store failure
		}
	}
	s.dur.WithLabelValues(op, outcome).Observe(time.Since(start).Seconds())
}

func timed[T any](s *instrumentedStore, op string, f func() (T, error)) (T, error) {
	start := time.Now()
	v, err := f()
	s.observe(op, start, err)
	return v, err
}

func (s *instrumentedStore) Menu(ctx context.Context) (*shop.Menu, error) {
	return timed(s, "menu", func() (*shop.Menu, error) { return s.Store.Menu(ctx) })
}

func (s *instrumentedStore) CatalogVersion(ctx context.Context) (int64, error) {
	return timed(s, "catalog_version", func() (int64, error) { return s.Store.CatalogVersion(ctx) })
}

func (s *instrumentedStore) Item(ctx context.Context, id int64) (*shop.Item, error) {
	return timed(s, "item", func() (*shop.Item, error) { return s.Store.Item(ctx, id) })
}

func (s *instrumentedStore) ListItems(ctx context.Context, f shop.ItemFilter) (*shop.ItemPage, error) {
	return timed(s, "list_items", func() (*shop.ItemPage, error) { return s.Store.ListItems(ctx, f) })
}

func (s *instrumentedStore) UpdateItem(ctx context.Context, id int64, u shop.ItemUpdate) (*shop.Item, error) {
	return timed(s, "update_item", func() (*shop.Item, error) { return s.Store.UpdateItem(ctx, id, u) })
}

func (s *instrumentedStore) CreateSession(ctx context.Context, hash string) (*shop.Session, error) {
	return timed(s, "create_session", func() (*shop.Session, error) { return s.Store.CreateSession(ctx, hash) })
}

func (s *instrumentedStore) SessionByTokenHash(ctx context.Context, hash string) (*shop.Session, error) {
	return timed(s, "session", func() (*shop.Session, error) { return s.Store.SessionByTokenHash(ctx, hash) })
}

func (s *instrumentedStore) Cart(ctx context.Context, session int64) (*shop.Cart, error) {
	return timed(s, "cart", func() (*shop.Cart, error) { return s.Store.Cart(ctx, session) })
}

func (s *instrumentedStore) SetCartItem(ctx context.Context, session, item int64, q int) (*shop.Cart, error) {
	return timed(s, "set_cart_item", func() (*shop.Cart, error) { return s.Store.SetCartItem(ctx, session, item, q) })
}

func (s *instrumentedStore) ClearCart(ctx context.Context, session int64) error {
	_, err := timed(s, "clear_cart", func() (struct{}, error) { return struct{}{}, s.Store.ClearCart(ctx, session) })
	return err
}

func (s *instrumentedStore) PlaceOrder(ctx context.Context, p shop.PlaceOrder) (*shop.Order, bool, error) {
	var created bool
	o, err := timed(s, "place_order", func() (o *shop.Order, err error) {
		o, created, err = s.Store.PlaceOrder(ctx, p)
		return o, err
	})
	return o, created, err
}

func (s *instrumentedStore) Order(ctx context.Context, session, id int64) (*shop.Order, error) {
	return timed(s, "order", func() (*shop.Order, error) { return s.Store.Order(ctx, session, id) })
}

func (s *instrumentedStore) ListOrders(ctx context.Context, session int64, f shop.OrderFilter) (*shop.OrderPage, error) {
	return timed(s, "list_orders", func() (*shop.OrderPage, error) { return s.Store.ListOrders(ctx, session, f) })
}

func (s *instrumentedStore) Ping(ctx context.Context) error {
	_, err := timed(s, "ping", func() (struct{}, error) { return struct{}{}, s.Store.Ping(ctx) })
	return err
}
