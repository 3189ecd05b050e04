package nats

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// streamCollector exports the order-events stream as the NATS server
// reports it (JetStream's stream info), asked at each scrape: what a NATS
// exporter would read from the server's monitoring port, for a server
// that runs without one (scripts/services.sh's) or a Prometheus that
// cannot reach it.
type streamCollector struct {
	b                              *Bus
	up, messages, bytes, consumers *prometheus.Desc
	lastSeq                        *prometheus.Desc
}

// StreamCollector is the order-events stream's collector: registered by
// the process that publishes the outbox (the worker), so one series per
// stream.
func (b *Bus) StreamCollector() prometheus.Collector {
	labels := prometheus.Labels{"stream": b.cfg.Stream}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, nil, labels)
	}
	return &streamCollector{
		b:         b,
		up:        desc("shop_nats_stream_up", "1 when the NATS server answered for the order-events stream at this scrape, else 0 (and no other shop_nats_stream_ series)"),
		messages:  desc("shop_nats_stream_messages", "order events the stream holds (the NATS server's count)"),
		bytes:     desc("shop_nats_stream_bytes", "bytes the stream holds, of its limit (MaxBytes)"),
		consumers: desc("shop_nats_stream_consumers", "consumers of the stream: one per order event stream being followed"),
		lastSeq:   desc("shop_nats_stream_last_sequence", "sequence of the last event stored: its rate is the events stored per second"),
	}
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.messages, c.bytes, c.consumers, c.lastSeq} {
		ch <- d
	}
}

// Collect asks the server, within the bus's call timeout: a server that
// does not answer makes the scrape say so (up 0), not hang.
func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.b.cfg.CallTimeout)
	defer cancel()
	s, err := c.b.js.Stream(ctx, c.b.cfg.Stream)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	st := s.CachedInfo().State
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.messages, prometheus.GaugeValue, float64(st.Msgs))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(c.consumers, prometheus.GaugeValue, float64(st.Consumers))
	ch <- prometheus.MustNewConstMetric(c.lastSeq, prometheus.CounterValue, float64(st.LastSeq))
}
