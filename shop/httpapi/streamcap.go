package httpapi

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Default caps on open order event streams per replica (StreamConfig).
const (
	DefaultStreamsPerSession = 8
	DefaultStreams           = 1000
)

// errTooManyStreams maps to 429: the session, or the replica, has as many
// event streams open as it may.
type errTooManyStreams struct{ detail string }

func (e errTooManyStreams) Error() string { return e.detail }

// streamCap counts the event streams open on this replica, by session.
type streamCap struct {
	perSession, total int // <= 0: no cap
	open              prometheus.Gauge
	refused           *prometheus.CounterVec

	mu        sync.Mutex
	n         int
	bySession map[int64]int
}

func newStreamCap(reg prometheus.Registerer, perSession, total int) *streamCap {
	c := &streamCap{
		perSession: perSession, total: total, bySession: map[int64]int{},
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shop_order_event_streams_open",
			Help: "Order event streams open on this replica.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_order_event_streams_refused_total",
			Help: "Order event streams refused with 429, by the cap reached (session or replica).",
		}, []string{"cap"}),
	}
	reg.MustRegister(c.open, c.refused)
	return c
}

// acquire counts a new stream of session, or refuses it past a cap;
// release uncounts it.
func (c *streamCap) acquire(session int64) (release func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.total > 0 && c.n >= c.total:
		c.refused.WithLabelValues("replica").Inc()
		return nil, errTooManyStreams{detail: fmt.Sprintf("this replica has %d order event streams open, its limit: retry after the time in Retry-After", c.n)}
	case c.perSession > 0 && c.bySession[session] >= c.perSession:
		c.refused.WithLabelValues("session").Inc()
		return nil, errTooManyStreams{detail: fmt.Sprintf("this session has %d order event streams open, its limit: close one before opening another", c.bySession[session])}
	}
	c.n++
	c.bySession[session]++
	c.open.Inc()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.n--
			if c.bySession[session]--; c.bySession[session] <= 0 {
				delete(c.bySession, session)
			}
			c.open.Dec()
		})
	}, nil
}
