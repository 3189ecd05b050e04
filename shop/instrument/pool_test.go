package instrument_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop/instrument"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/sqlite"
)

func TestPoolCollectorExposesEveryPool(t *testing.T) {
	stats := []instrument.PoolStats{
		{Shard: "1", Pool: "primary", Acquired: 7, Idle: 1, Total: 8, Max: 8, Waits: 12, WaitTime: 1500 * time.Millisecond},
		{Shard: "2", Pool: "primary", Acquired: 0, Idle: 2, Total: 2, Max: 8},
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(instrument.NewPoolCollector(func() []instrument.PoolStats { return stats }))
	want := `
# HELP shop_db_pool_acquired_connections Database connections in use.
# TYPE shop_db_pool_acquired_connections gauge
shop_db_pool_acquired_connections{pool="primary",shard="1"} 7
shop_db_pool_acquired_connections{pool="primary",shard="2"} 0
# HELP shop_db_pool_max_connections The pool's size: the most connections it opens.
# TYPE shop_db_pool_max_connections gauge
shop_db_pool_max_connections{pool="primary",shard="1"} 8
shop_db_pool_max_connections{pool="primary",shard="2"} 8
# HELP shop_db_pool_wait_seconds_total Time spent waiting for a free connection.
# TYPE shop_db_pool_wait_seconds_total counter
shop_db_pool_wait_seconds_total{pool="primary",shard="1"} 1.5
shop_db_pool_wait_seconds_total{pool="primary",shard="2"} 0
# HELP shop_db_pool_waits_total Acquisitions of a connection that found none free and waited.
# TYPE shop_db_pool_waits_total counter
shop_db_pool_waits_total{pool="primary",shard="1"} 12
shop_db_pool_waits_total{pool="primary",shard="2"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "shop_db_pool_acquired_connections",
		"shop_db_pool_max_connections", "shop_db_pool_waits_total", "shop_db_pool_wait_seconds_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(instrument.NewPoolCollector(func() []instrument.PoolStats { return stats })); n != 12 {
		t.Fatalf("%d series for two pools, want 6 each", n)
	}
}

// On SQLite's single writer a write that finds the connection taken
// waits, and is counted as it starts to wait.
func TestSQLPoolStatsCountAQueuedWrite(t *testing.T) {
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	writer := func() instrument.PoolStats {
		w, _ := db.Stats()
		return instrument.SQLPoolStats("", "write", w)
	}
	before := writer()
	held, err := db.WriteDB().Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		c, err := db.WriteDB().Conn(context.Background())
		if err == nil {
			err = c.Close()
		}
		got <- err
	}()
	testwait.Eventually(t, 10*time.Second, func() error {
		if s := writer(); s.Waits != before.Waits+1 {
			return fmt.Errorf("no queued write seen yet: %+v", s)
		}
		return nil
	})
	if s := writer(); s.Acquired != 1 || s.Max != 1 || s.Total != 1 || s.Pool != "write" {
		t.Fatalf("writer while held and awaited: %+v", s)
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if s := writer(); s.WaitTime <= before.WaitTime || s.Acquired != 0 || s.Idle != 1 {
		t.Fatalf("writer after the queued write: %+v (before %+v)", s, before)
	}
}

// On PostgreSQL an acquisition that finds no idle connection waits, for
// a free one or for a new one to open: a pool of two whose ping left one
// connection idle opens the second for the second acquisition.
func TestPgxPoolStatsCountAWaitForAConnection(t *testing.T) {
	db, err := postgres.Open(t.Context(), pgtest.NewDatabase(t), postgres.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pools := db.Pools()
	if len(pools) != 1 || pools[0].Role != "primary" {
		t.Fatalf("pools of a database without replicas: %+v", pools)
	}
	primary := func() instrument.PoolStats { return instrument.PgxPoolStats("", "primary", pools[0].Pool.Stat()) }
	before := primary()
	if before.Idle != 1 || before.Max != 2 {
		t.Fatalf("after the ping: %+v, want one idle connection of two", before)
	}
	first, err := pools[0].Pool.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	if s := primary(); s.Waits != before.Waits || s.Acquired != 1 {
		t.Fatalf("taking the idle connection: %+v (before %+v)", s, before)
	}
	second, err := pools[0].Pool.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Release()
	s := primary()
	if s.Waits != before.Waits+1 || s.WaitTime <= before.WaitTime || s.Acquired != 2 || s.Total != 2 || s.Idle != 0 {
		t.Fatalf("opening the second connection: %+v (before %+v)", s, before)
	}
}
