package redis_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/internal/toxitest"
	"github.com/perfscale/perfscale/shop"
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

	tctx, stop := context.WithCancel(context.Background())
	var calls atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; tctx.Err() == nil; i++ {
				_, hash := shop.NewToken()
				sess, err := h.layer.CreateSession(tctx, hash)
				if err == nil {
					_, err = h.layer.SetCartItem(tctx, sess.ID, int64(2+(w+i)%10), 1)
				}
				if err == nil {
					_, err = h.layer.Cart(tctx, sess.ID)
				}
				if err != nil && tctx.Err() == nil {
					t.Errorf("call failed: %v", err)
				}
				calls.Add(1)
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()
	waitCalls := func(n int64) {
		t.Helper()
		target := calls.Load() + n
		testwait.Eventually(t, 60*time.Second, func() error {
			if got := calls.Load(); got < target {
				return fmt.Errorf("traffic stalled at %d calls, want %d", got, target)
			}
			return nil
		})
	}
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
}
