package redis_test

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/internal/toxitest"
	shopredis "github.com/perfscale/perfscale/shop/redis"
	"github.com/perfscale/perfscale/shop/redis/redistest"
	"github.com/perfscale/perfscale/shop/resilience"
)

// Redis behind its guard, its connections reset (Toxiproxy) under
// traffic: no call fails (sessions and carts come from the store), the
// breaker opens, and once the resets stop Redis is taken back only
// through the breaker's trial call (the ping that finds it back is that
// call), not at its first answer; then Redis serves carts again.
func TestRedisBehindItsBreakerDegradesToTheStoreAndComesBack(t *testing.T) {
	srv := redistest.Start(t)
	px := toxitest.New(t, map[string]string{"redis": strings.TrimSuffix(strings.TrimPrefix(srv.URL(), "redis://"), "/0")})
	var mu sync.Mutex
	var states []string
	guard := resilience.NewMetrics(prometheus.NewRegistry()).Guard(resilience.Config{Name: "redis", OpenFor: 300 * time.Millisecond,
		OnState: func(s string) { mu.Lock(); states = append(states, s); mu.Unlock() }})
	seen := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(states) }
	reg := prometheus.NewRegistry()
	ctx := t.Context()
	c, err := shopredis.Open(ctx, shopredis.Config{URL: "redis://" + px.Addr("redis") + "/0", Registerer: reg, Recheck: 20 * time.Millisecond,
		Guard: guard, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go c.Run(ctx)
	h := &harness{store: openStore(t), client: c, reg: reg}
	h.layer = shopredis.NewStore(h.store, c, nil)

	tr := startTraffic(t, h.layer, 2)
	waitCalls := func(n int64) { t.Helper(); tr.wait(t, n) }
	waitCalls(20)
	px.Add(t, "redis", "reset_peer", `{"timeout": 0}`)
	testwait.Eventually(t, 30*time.Second, func() error {
		if !slices.Contains(seen(), resilience.StateOpen) {
			return errors.New("the Redis breaker has not opened under reset connections")
		}
		return nil
	})
	waitCalls(20) // served by the store
	px.Remove(t, "redis")
	waitUp(t, c)
	st := seen()
	if i := slices.Index(st, resilience.StateOpen); !slices.Contains(st[i:], resilience.StateHalfOpen) {
		t.Errorf("Redis was taken back without a trial call through its breaker: states %v", st)
	}
	hits := h.lookups("cart", "hit")
	testwait.Eventually(t, 30*time.Second, func() error {
		if h.lookups("cart", "hit") <= hits {
			return errors.New("Redis not serving carts since it came back")
		}
		return nil
	})
	if n := tr.stop(); n != 0 {
		t.Fatalf("%d calls failed", n)
	}
}
