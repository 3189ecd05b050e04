package nats_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/internal/toxitest"
	"github.com/perfscale/perfscale/shop"
	shopnats "github.com/perfscale/perfscale/shop/nats"
	"github.com/perfscale/perfscale/shop/nats/natstest"
	"github.com/perfscale/perfscale/shop/resilience"
	"github.com/perfscale/perfscale/shop/resilience/resiliencetest"
)

// TestAStuckNATSOpensItsBreakerAndEventsArePublishedWhenItIsBack: NATS
// connected but answering nothing (a Toxiproxy blackhole: the connection
// stays open, no byte passes), the bus's breaker (as shop/app composes it)
// opens after a few publishes have each waited out their timeout; from then
// on the relay's publishes and new order streams are refused at once,
// without a call to NATS, while orders still commit. When NATS answers
// again the breaker closes after a trial call, and the relay publishes
// every waiting event exactly once.
func TestAStuckNATSOpensItsBreakerAndEventsArePublishedWhenItIsBack(t *testing.T) {
	srv := natstest.Start(t)
	px := toxitest.New(t, map[string]string{"nats": strings.TrimPrefix(srv.URL(), "nats://")})
	s := openStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	bus, err := shopnats.Open(ctx, shopnats.Config{URL: "nats://" + px.Addr("nats"), CallTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	reg := prometheus.NewRegistry()
	states := resiliencetest.NewStates()
	// The stall detector is off: this test is about the breaker.
	guard := resilience.NewMetrics(reg).Guard(resilience.Config{Name: "nats", What: "NATS", OpenFor: time.Second, StallAfter: -1, OnState: states.Record})
	guarded := resilience.NewBus(bus, guard)
	relay := shopnats.NewRelay(s, guarded, shopnats.RelayConfig{Poll: 20 * time.Millisecond, PublishTimeout: 300 * time.Millisecond})

	_, first := placeOrder(t, s)
	want := []string{fmt.Sprintf("%d-placed", first.ID)}
	// The first publish creates the stream: at a load of 30 it took longer
	// than the 300 ms the relay below waits.
	healthy := shopnats.NewRelay(s, guarded, shopnats.RelayConfig{PublishTimeout: 30 * time.Second})
	if err := healthy.Drain(ctx); err != nil {
		t.Fatalf("relay with NATS answering: %v", err)
	}

	px.Add(t, "nats", "timeout", `{"timeout": 0}`)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()
	for range 5 {
		_, o := placeOrder(t, s) // commits although NATS does not answer
		want = append(want, fmt.Sprintf("%d-placed", o.ID))
	}
	states.Wait(t, resilience.StateOpen, time.Minute)

	// Open: a call is refused before it reaches NATS. (Should the breaker
	// have let a trial call through meanwhile, the trial fails and it
	// opens again: wait for that and try once more.)
	refusedNow := func(call func() error) {
		t.Helper()
		for {
			err := call()
			var refused *resilience.Refused
			if errors.As(err, &refused) {
				if shop.ErrorCode(err) != shop.EUNAVAILABLE {
					t.Errorf("a refusal is %q, want %q", shop.ErrorCode(err), shop.EUNAVAILABLE)
				}
				return
			}
			if err == nil {
				t.Fatal("a call to a stuck NATS succeeded")
			}
			states.Wait(t, resilience.StateOpen, time.Minute)
		}
	}
	refusedNow(func() error { _, _, err := guarded.WatchOrder(ctx, first.ID); return err })
	refusedNow(func() error {
		return guarded.Publish(ctx, shop.OrderEvent{OrderID: first.ID, Seq: 1, Status: shop.StatusPlaced})
	})
	if n := resiliencetest.Value(t, reg, "shop_breaker_refused_total", map[string]string{"dependency": "nats", "reason": "open"}); n < 2 {
		t.Errorf("shop_breaker_refused_total{dependency=nats,reason=open} = %v, want at least 2", n)
	}
	if n := resiliencetest.Value(t, reg, "shop_breaker_opened_total", map[string]string{"dependency": "nats"}); n < 1 {
		t.Errorf("shop_breaker_opened_total{dependency=nats} = %v, want at least 1", n)
	}

	px.Remove(t, "nats")
	states.Wait(t, resilience.StateClosed, time.Minute)
	waitPublished(t, s, cancel, relayDone)
	got := readStream(t, srv.URL(), bus.Config(), len(want))
	seen := map[string]int{}
	for _, d := range got {
		seen[d.Key]++
	}
	for _, k := range want {
		if seen[k] != 1 {
			t.Errorf("event %s is %d times in the stream, want once", k, seen[k])
		}
	}
}
