package instrument

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/shop/jobs"
)

// QueueCollector exposes the job queue's backlog at each scrape:
// shop_jobs_waiting (jobs ready to run and not yet taken) and
// shop_jobs_oldest_waiting_seconds (how long the oldest of them has been
// ready). Confirmations keep up when both stay near zero under load.
type QueueCollector struct {
	backlog func(ctx context.Context) (jobs.Backlog, error)
	timeout time.Duration
	waiting *prometheus.Desc
	oldest  *prometheus.Desc
	errors  prometheus.Counter
}

// NewQueueCollector reads the backlog through backlog, each read bounded
// by timeout, so a slow database cannot hold a scrape.
func NewQueueCollector(backlog func(ctx context.Context) (jobs.Backlog, error), timeout time.Duration) *QueueCollector {
	return &QueueCollector{
		backlog: backlog, timeout: timeout,
		waiting: prometheus.NewDesc("shop_jobs_waiting", "Background jobs ready to run and not yet taken by a worker.", nil, nil),
		oldest:  prometheus.NewDesc("shop_jobs_oldest_waiting_seconds", "How long the oldest job ready to run has waited for a worker (0 when none waits).", nil, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_jobs_backlog_read_errors_total",
			Help: "Scrapes at which the job backlog could not be read.",
		}),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.waiting
	ch <- c.oldest
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	b, err := c.backlog(ctx)
	if err != nil {
		c.errors.Inc()
	} else {
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(b.Waiting))
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, b.OldestAge.Seconds())
	}
	c.errors.Collect(ch)
}
