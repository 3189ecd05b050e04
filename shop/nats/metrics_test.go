package nats_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/perfscale/perfscale/shop"
	shopnats "github.com/perfscale/perfscale/shop/nats"
	"github.com/perfscale/perfscale/shop/nats/natstest"
)

// TestStreamCollectorReportsTheServersCounts: the collector says what the
// NATS server holds in the stream at each scrape (three events of two
// orders), and a server that is gone makes it say so (up 0) and nothing
// else.
func TestStreamCollectorReportsTheServersCounts(t *testing.T) {
	srv := natstest.Start(t)
	s := openStore(t)
	ctx := context.Background()
	bus, err := shopnats.Open(ctx, shopnats.Config{URL: srv.URL(), Stream: "COUNTED"})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(bus.StreamCollector())
	relay := shopnats.NewRelay(s, bus, shopnats.RelayConfig{})
	placeOrder(t, s)
	_, o := placeOrder(t, s)
	advance(t, s, o.ID, shop.StatusPlaced, shop.StatusConfirmed)
	if err := relay.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP shop_nats_stream_up 1 when the NATS server answered for the order-events stream at this scrape, else 0 (and no other shop_nats_stream_ series)
# TYPE shop_nats_stream_up gauge
shop_nats_stream_up{stream="COUNTED"} 1
# HELP shop_nats_stream_messages order events the stream holds (the NATS server's count)
# TYPE shop_nats_stream_messages gauge
shop_nats_stream_messages{stream="COUNTED"} 3
# HELP shop_nats_stream_consumers consumers of the stream: one per order event stream being followed
# TYPE shop_nats_stream_consumers gauge
shop_nats_stream_consumers{stream="COUNTED"} 0
# HELP shop_nats_stream_last_sequence sequence of the last event stored: its rate is the events stored per second
# TYPE shop_nats_stream_last_sequence counter
shop_nats_stream_last_sequence{stream="COUNTED"} 3
`
	names := []string{"shop_nats_stream_up", "shop_nats_stream_messages", "shop_nats_stream_consumers", "shop_nats_stream_last_sequence"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "shop_nats_stream_bytes"); err != nil || n != 1 {
		t.Fatalf("shop_nats_stream_bytes: %d series, %v", n, err)
	}

	srv.Stop()
	down := `
# HELP shop_nats_stream_up 1 when the NATS server answered for the order-events stream at this scrape, else 0 (and no other shop_nats_stream_ series)
# TYPE shop_nats_stream_up gauge
shop_nats_stream_up{stream="COUNTED"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(down)); err != nil {
		t.Fatal(err)
	}
}
