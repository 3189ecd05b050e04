package instrument

import (
	"database/sql"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolStats is one database connection pool's figures at one instant.
type PoolStats struct {
	// Shard is the shard's number ("1", "2", ...) on a sharded store,
	// empty otherwise; Pool is the pool's role: "primary", "replica-N"
	// on PostgreSQL, "write" (the single writer) or "read" on SQLite.
	Shard, Pool string
	// Acquired connections are in use, Idle ones wait in the pool, Total
	// is every open one (PostgreSQL also counts those being opened), Max
	// the pool's size.
	Acquired, Idle, Total, Max int
	// Waits is how many acquisitions found no connection free and waited
	// since the pool was opened, WaitTime how long they waited in all.
	Waits    int64
	WaitTime time.Duration
}

// PgxPoolStats are a pgxpool's figures: a wait is an acquisition that
// found the pool empty (pgxpool's EmptyAcquireCount and
// EmptyAcquireWaitTime).
func PgxPoolStats(shard, pool string, s *pgxpool.Stat) PoolStats {
	return PoolStats{Shard: shard, Pool: pool,
		Acquired: int(s.AcquiredConns()), Idle: int(s.IdleConns()), Total: int(s.TotalConns()), Max: int(s.MaxConns()),
		Waits: s.EmptyAcquireCount(), WaitTime: s.EmptyAcquireWaitTime()}
}

// SQLPoolStats are a database/sql pool's figures (on SQLite's single
// writer, a wait is a write queued behind another).
func SQLPoolStats(shard, pool string, s sql.DBStats) PoolStats {
	return PoolStats{Shard: shard, Pool: pool,
		Acquired: s.InUse, Idle: s.Idle, Total: s.OpenConnections, Max: s.MaxOpenConnections,
		Waits: s.WaitCount, WaitTime: s.WaitDuration}
}

// ShardLabel is the shard label of shard k (counted from 0) of a sharded
// store.
func ShardLabel(k int) string { return strconv.Itoa(k + 1) }

// PoolCollector exposes the database pools' saturation at each scrape,
// labelled by shard and pool:
//
//	shop_db_pool_acquired_connections, shop_db_pool_idle_connections,
//	shop_db_pool_connections, shop_db_pool_max_connections (gauges);
//	shop_db_pool_waits_total, shop_db_pool_wait_seconds_total (counters).
//
// A pool is saturated when acquired stays at max and the wait time grows:
// the rate of shop_db_pool_wait_seconds_total is how many requests wait
// for a connection on average.
type PoolCollector struct {
	stats                        func() []PoolStats
	acquired, idle, total, limit *prometheus.Desc
	waits, waitTime              *prometheus.Desc
}

// NewPoolCollector reads the pools' figures through stats at each scrape
// (reading them takes no database round trip).
func NewPoolCollector(stats func() []PoolStats) *PoolCollector {
	labels := []string{"shard", "pool"}
	desc := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, labels, nil) }
	return &PoolCollector{
		stats:    stats,
		acquired: desc("shop_db_pool_acquired_connections", "Database connections in use."),
		idle:     desc("shop_db_pool_idle_connections", "Database connections open and free."),
		total:    desc("shop_db_pool_connections", "Database connections open (on PostgreSQL also those being opened)."),
		limit:    desc("shop_db_pool_max_connections", "The pool's size: the most connections it opens."),
		waits:    desc("shop_db_pool_waits_total", "Acquisitions of a connection that found none free and waited."),
		waitTime: desc("shop_db_pool_wait_seconds_total", "Time spent waiting for a free connection."),
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.limit, c.waits, c.waitTime} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.stats() {
		gauge := func(d *prometheus.Desc, v int) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), s.Shard, s.Pool)
		}
		gauge(c.acquired, s.Acquired)
		gauge(c.idle, s.Idle)
		gauge(c.total, s.Total)
		gauge(c.limit, s.Max)
		ch <- prometheus.MustNewConstMetric(c.waits, prometheus.CounterValue, float64(s.Waits), s.Shard, s.Pool)
		ch <- prometheus.MustNewConstMetric(c.waitTime, prometheus.CounterValue, s.WaitTime.Seconds(), s.Shard, s.Pool)
	}
}
