// Package instrument times every call into a shop.Store, so a slow request
// can be told apart from a slow database. The wrapper is built in shop/app
// and handed to the adapters (HTTP, jobs) as the narrow interfaces they
// define.
//
// Store implements shop.Store method by method and embeds nothing: a method
// added to shop.Store does not compile here until it is wrapped. The
// methods are generated from shop.Store (store_gen.go, `go generate`), and
// the package's tests fail when that file is not current, and call every
// method of shop.Store through the wrapper to check that each one was
// observed under its own operation name.
//
// It also exposes what is read at each scrape: the job queue's backlog
// (QueueCollector) and the database pools' saturation (PoolCollector).
package instrument

//go:generate go run ./internal/storegen/gen

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/shop"
)

// Buckets resolve the range the service's objectives live in (a few ms for
// reads, tens of ms for checkout) and its failure modes (seconds).
var Buckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Store is a shop.Store whose every call is observed in the histogram
// shop_store_call_duration_seconds{op, outcome}.
type Store struct {
	next shop.Store
	dur  *prometheus.HistogramVec
}

var _ shop.Store = (*Store)(nil)

// Metrics is the store-call histogram, registered once per registry and
// shared by every wrapper built from it.
type Metrics struct {
	dur *prometheus.HistogramVec
}

// NewMetrics registers the store-call histogram with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "shop_store_call_duration_seconds",
		Help:    "Time spent in store calls, by operation and outcome.",
		Buckets: Buckets,
	}, []string{"op", "outcome"})
	reg.MustRegister(dur)
	return &Metrics{dur: dur}
}

// Wrap returns next with every call timed.
func (m *Metrics) Wrap(next shop.Store) shop.Store {
	return &Store{next: next, dur: m.dur}
}

// Outcome classifies a store call's error: "ok", "refused" (a domain answer
// such as not found or out of stock, not a store failure) or "error".
func Outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case shop.ErrorCode(err) != shop.EINTERNAL:
		return "refused"
	}
	return "error"
}

func (s *Store) observe(op string, start time.Time, err error) {
	s.dur.WithLabelValues(op, Outcome(err)).Observe(time.Since(start).Seconds())
}

func timed[T any](s *Store, op string, f func() (T, error)) (T, error) {
	start := time.Now()
	v, err := f()
	s.observe(op, start, err)
	return v, err
}

func timedErr(s *Store, op string, f func() error) error {
	start := time.Now()
	err := f()
	s.observe(op, start, err)
	return err
}
