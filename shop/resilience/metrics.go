package resilience

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the guards' series, registered once per registry; every
// guard built from it reports under its own dependency label.
type Metrics struct {
	opened, refused, retries *prometheus.CounterVec
	state, stalled           *prometheus.Desc

	mu     sync.Mutex
	guards []*Guard
	// now is the clock of the guards built from here (tests move it).
	now func() time.Time
	// after is their timer (tests fire it as they move the clock).
	after afterFunc
}

type guardMetrics struct {
	opened           prometheus.Counter
	refused, retries *prometheus.CounterVec
}

// NewMetrics registers the guards' metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_breaker_opened_total",
			Help: "Times a dependency's circuit breaker opened (its calls failed too often), by dependency.",
		}, []string{"dependency"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_breaker_refused_total",
			Help: "Calls to a dependency refused before they were made, by dependency and reason: open (the breaker), stalled (calls waited and none finished), budget (a retry past the retry budget).",
		}, []string{"dependency", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_dependency_retries_total",
			Help: "Retries of idempotent calls to a dependency, by dependency and outcome: retried, or budget_exceeded (not retried: retries were past 10% of the calls in flight).",
		}, []string{"dependency", "outcome"}),
		state: prometheus.NewDesc("shop_breaker_state",
			"A dependency's circuit breaker: 0 closed (calls go through), 1 half-open (a trial call), 2 open (calls refused).", []string{"dependency"}, nil),
		stalled: prometheus.NewDesc("shop_dependency_stalled",
			"1 while a dependency's calls have waited past the stall limit with none finishing (new calls are refused).", []string{"dependency"}, nil),
		now:   time.Now,
		after: realAfter,
	}
	reg.MustRegister(m.opened, m.refused, m.retries, m)
	return m
}

// Guard builds the guard of the dependency cfg names.
func (m *Metrics) Guard(cfg Config) *Guard {
	gm := &guardMetrics{
		opened:  m.opened.WithLabelValues(cfg.Name),
		refused: m.refused.MustCurryWith(prometheus.Labels{"dependency": cfg.Name}),
		retries: m.retries.MustCurryWith(prometheus.Labels{"dependency": cfg.Name}),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	g := newGuard(cfg, gm, m.now, m.after)
	m.guards = append(m.guards, g)
	return g
}

// UseClock makes the guards built from m after it read the time from now
// and set their timers with after (f called once d has passed on that
// clock), instead of the wall clock's: a test moves its own clock to say
// when calls have waited past the stall limit, so that a call a busy
// machine made slow is never taken for a stall.
func (m *Metrics) UseClock(now func() time.Time, after func(d time.Duration, f func())) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now, m.after = now, after
}

// Describe implements prometheus.Collector (the state gauges).
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.state
	ch <- m.stalled
}

// Collect implements prometheus.Collector: each guard's breaker state and
// stall, read at the scrape.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	guards := append([]*Guard(nil), m.guards...)
	m.mu.Unlock()
	for _, g := range guards {
		stalled := 0.0
		if g.Stalled() {
			stalled = 1
		}
		ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, g.state(), g.cfg.Name)
		ch <- prometheus.MustNewConstMetric(m.stalled, prometheus.GaugeValue, stalled, g.cfg.Name)
	}
}
