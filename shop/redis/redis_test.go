package redis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop"
	shopredis "github.com/perfscale/perfscale/shop/redis"
	"github.com/perfscale/perfscale/shop/redis/redistest"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlite"
)

type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(msg string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), `"msg":"`+msg)
}

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := sqlite.NewStore(db, nil)
	t.Cleanup(func() { s.Close() })
	if _, err := s.SeedIfEmpty(ctx, seed.Items(20)); err != nil {
		t.Fatal(err)
	}
	return s
}

type harness struct {
	srv    *redistest.Server
	store  *sqlite.Store
	client *shopredis.Client
	layer  *shopredis.Store
	reg    *prometheus.Registry
	logs   *logBuffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{srv: redistest.Start(t), store: openStore(t), reg: prometheus.NewRegistry(), logs: &logBuffer{}}
	ctx := t.Context()
	c, err := shopredis.Open(ctx, shopredis.Config{URL: h.srv.URL(), Registerer: h.reg, Recheck: 20 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(h.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go c.Run(ctx)
	h.client, h.layer = c, shopredis.NewStore(h.store, c, nil)
	return h
}

func (h *harness) lookups(kind, result string) float64 {
	return testutil.ToFloat64(mustVec(h.reg, "shop_redis_lookups_total", kind, result))
}

// mustVec finds a counter's value by name and labels through the registry.
func mustVec(reg *prometheus.Registry, name string, labels ...string) prometheus.Collector {
	return counterFrom{reg: reg, name: name, labels: labels}
}

type counterFrom struct {
	reg    *prometheus.Registry
	name   string
	labels []string
}

func (c counterFrom) Describe(ch chan<- *prometheus.Desc) {}
func (c counterFrom) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := c.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != c.name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := true
			for i, l := range m.GetLabel() {
				if i < len(c.labels) && l.GetValue() != c.labels[i] {
					match = false
				}
			}
			if match {
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(c.name, "", nil, nil), prometheus.CounterValue, m.GetCounter().GetValue())
				return
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(c.name, "", nil, nil), prometheus.CounterValue, 0)
}

// TestSessionsAndCartsReadThroughRedis: reads are answered by Redis after
// the first, writes reach the store first, a catalog change makes a cached
// cart stale, and a Redis that lost everything loses nothing.
func TestSessionsAndCartsReadThroughRedis(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_, hash := shop.NewToken()
	sess, err := h.layer.CreateSession(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := h.layer.SessionByTokenHash(ctx, hash); err != nil || got.ID != sess.ID {
		t.Fatalf("session: %+v %v", got, err)
	}
	if hits := h.lookups("session", "hit"); hits != 1 {
		t.Fatalf("session hits %v, want 1 (written through at creation)", hits)
	}
	if _, err := h.layer.SetCartItem(ctx, sess.ID, 3, 2); err != nil {
		t.Fatal(err)
	}
	cart, err := h.layer.Cart(ctx, sess.ID)
	if err != nil || len(cart.Lines) != 1 || cart.Lines[0].Quantity != 2 {
		t.Fatalf("cart %+v %v", cart, err)
	}
	if hits := h.lookups("cart", "hit"); hits != 1 {
		t.Fatalf("cart hits %v, want 1", hits)
	}
	// The store is the record: its cart is the one Redis returned.
	if c, _ := h.store.Cart(ctx, sess.ID); c.Lines[0].Quantity != 2 {
		t.Fatalf("store cart %+v", c)
	}
	// A price change moves the catalog version: the cached cart is not used.
	price := int64(4242)
	if _, err := h.layer.UpdateItem(ctx, 3, shop.ItemUpdate{PriceCents: &price}); err != nil {
		t.Fatal(err)
	}
	if c, _ := h.layer.Cart(ctx, sess.ID); c.Lines[0].UnitPriceCents != price {
		t.Fatalf("cart after a price change: %+v", c)
	}

	// Redis restarted empty: nothing is lost.
	h.srv.Stop()
	h.srv.Start()
	waitUp(t, h.client)
	if got, err := h.layer.SessionByTokenHash(ctx, hash); err != nil || got.ID != sess.ID {
		t.Fatalf("session after Redis lost it: %+v %v", got, err)
	}
	if c, err := h.layer.Cart(ctx, sess.ID); err != nil || c.Lines[0].Quantity != 2 {
		t.Fatalf("cart after Redis lost it: %+v %v", c, err)
	}
	if _, err := h.layer.SessionByTokenHash(ctx, "unknown"); shop.ErrorCode(err) != shop.EUNAUTHORIZED {
		t.Fatalf("unknown token: %v", err)
	}
}

// waitUp waits (bounded: a real process has to come back) until the client
// uses Redis again. A call notices a Redis that went away; Run notices its
// return.
func waitUp(t *testing.T, c *shopredis.Client) {
	t.Helper()
	testwait.Eventually(t, 30*time.Second, func() error {
		if !c.Up() {
			return errors.New("Redis not back in use since it returned")
		}
		return nil
	})
}

// TestRedisStoppedAndStartedDuringTraffic: requests never fail while Redis
// goes away and comes back; the change is logged once each way, and Redis
// is used again without a restart.
func TestRedisStoppedAndStartedDuringTraffic(t *testing.T) {
	h := newHarness(t)
	tr := startTraffic(t, h.layer, 4)
	waitCalls := func(n int64) { t.Helper(); tr.wait(t, n) }
	waitCalls(50)
	h.srv.Stop()
	waitCalls(50) // served by the store alone
	if h.client.Up() {
		t.Fatal("Redis is stopped but still counted as up")
	}
	fellBack := testutil.ToFloat64(mustVec(h.reg, "shop_redis_fallbacks_total", "cart"))
	h.srv.Start()
	waitUp(t, h.client)
	hitsBefore := h.lookups("cart", "hit")
	waitCalls(50)
	if n := tr.stop(); n != 0 {
		t.Fatalf("%d calls failed", n)
	}
	if fellBack == 0 {
		t.Error("no cart call was counted as a fallback while Redis was down")
	}
	if h.lookups("cart", "hit") <= hitsBefore {
		t.Error("Redis not used for carts after it came back")
	}
	if n := h.logs.count("Redis unreachable"); n != 1 {
		t.Errorf("%d 'Redis unreachable' lines, want 1 (one per change, not per request):\n%s", n, h.logs.buf.String())
	}
	if n := h.logs.count("Redis in use"); n != 2 { // at start, and on return
		t.Errorf("%d 'Redis in use' lines, want 2", n)
	}
}

// TestCartWrittenDuringAPartitionIsNotServedStale: Redis frozen (its data
// kept, as in a network partition) while a cart changes; when it answers
// again, the stale copy is dropped before Redis is used.
func TestCartWrittenDuringAPartitionIsNotServedStale(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_, hash := shop.NewToken()
	sess, err := h.layer.CreateSession(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.layer.SetCartItem(ctx, sess.ID, 3, 1); err != nil {
		t.Fatal(err)
	}
	h.srv.Freeze()
	// The first call notices (after its time limit) and falls back; the
	// write reaches the store.
	if _, err := h.layer.SetCartItem(ctx, sess.ID, 3, 5); err != nil {
		t.Fatal(err)
	}
	if h.client.Up() {
		t.Fatal("a frozen Redis still counted as up")
	}
	h.srv.Thaw()
	waitUp(t, h.client)
	c, err := h.layer.Cart(ctx, sess.ID)
	if err != nil || c.Lines[0].Quantity != 5 {
		t.Fatalf("cart after the partition: %+v %v, want quantity 5", c, err)
	}
}

// traffic is workers that each, until stopped, create a session, read it,
// set a cart line and read the cart through a Redis layer; a failed call
// fails the test.
type traffic struct {
	calls, failures atomic.Int64
	cancel          context.CancelFunc
	wg              sync.WaitGroup
}

func startTraffic(t *testing.T, layer *shopredis.Store, workers int) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{cancel: cancel}
	for w := range workers {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				_, hash := shop.NewToken()
				sess, err := layer.CreateSession(ctx, hash)
				if err == nil {
					_, err = layer.SessionByTokenHash(ctx, hash)
				}
				if err == nil {
					_, err = layer.SetCartItem(ctx, sess.ID, int64(2+(w+i)%10), 1)
				}
				if err == nil {
					_, err = layer.Cart(ctx, sess.ID)
				}
				if err != nil && ctx.Err() == nil {
					tr.failures.Add(1)
					t.Errorf("call failed: %v", err)
				}
				tr.calls.Add(1)
			}
		}()
	}
	t.Cleanup(func() { tr.stop() })
	return tr
}

// wait waits (bounded) for n more calls.
func (tr *traffic) wait(t *testing.T, n int64) {
	t.Helper()
	target := tr.calls.Load() + n
	testwait.Eventually(t, 60*time.Second, func() error {
		if got := tr.calls.Load(); got < target {
			return fmt.Errorf("traffic stalled at %d calls, want %d", got, target)
		}
		return nil
	})
}

// stop ends the traffic and returns how many calls failed.
func (tr *traffic) stop() int64 {
	tr.cancel()
	tr.wg.Wait()
	return tr.failures.Load()
}
