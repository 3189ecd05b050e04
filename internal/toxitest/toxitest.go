// Package toxitest puts Toxiproxy (github.com/Shopify/toxiproxy/v2, as a
// library) in a test's process between the code under test and a real
// server (PostgreSQL, Redis, NATS), so a test can make the server slow,
// reset its connections, swallow its bytes or refuse connections, and then
// make it well again, without touching the server other tests share.
package toxitest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Proxies is a Toxiproxy server in this process with one proxy per
// upstream, each on a port of its own on 127.0.0.1.
type Proxies struct {
	server  *toxiproxy.ApiServer
	proxies map[string]*toxiproxy.Proxy
}

// New starts a proxy for each name to its upstream host:port; t's cleanup
// stops them.
func New(t testing.TB, upstreams map[string]string) *Proxies {
	t.Helper()
	// The toxics log every interrupted pipe at trace level to the global
	// logger; a test says what matters.
	zerolog.SetGlobalLevel(zerolog.WarnLevel)
	px := &Proxies{
		server:  toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop()),
		proxies: map[string]*toxiproxy.Proxy{},
	}
	for name, upstream := range upstreams {
		p := toxiproxy.NewProxy(px.server, name, "127.0.0.1:0", upstream)
		if err := px.server.Collection.Add(p, true); err != nil {
			t.Fatalf("toxiproxy %s: %v", name, err)
		}
		px.proxies[name] = p
	}
	t.Cleanup(func() { _ = px.server.Collection.Clear() })
	return px
}

// Addr is the proxy's host:port, to connect to instead of the upstream.
func (px *Proxies) Addr(name string) string {
	_, port, _ := net.SplitHostPort(px.proxies[name].Listen)
	return "127.0.0.1:" + port
}

// Add puts a toxic of kind ("latency", "reset_peer", "timeout",
// "bandwidth"...) with the JSON attributes attrs on both directions of
// every connection through the proxy, those open and those to come.
func (px *Proxies) Add(t testing.TB, name, kind, attrs string) {
	t.Helper()
	for _, stream := range []string{"downstream", "upstream"} {
		body := fmt.Sprintf(`{"name": "fault-%s", "type": %q, "stream": %q, "toxicity": 1, "attributes": %s}`, stream, kind, stream, attrs)
		if _, err := px.proxies[name].Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
			t.Errorf("toxic %s on %s: %v", kind, name, err)
		}
	}
}

// Remove takes the toxic Add put on the proxy away.
func (px *Proxies) Remove(t testing.TB, name string) {
	t.Helper()
	for _, stream := range []string{"downstream", "upstream"} {
		if err := px.proxies[name].Toxics.RemoveToxic(context.Background(), "fault-"+stream); err != nil {
			t.Errorf("remove the toxic on %s: %v", name, err)
		}
	}
}

// Down closes the proxy's listener and every connection through it: the
// server is unreachable (connections refused) until Up.
func (px *Proxies) Down(name string) { px.proxies[name].Stop() }

// Up listens again on the same port.
func (px *Proxies) Up(t testing.TB, name string) {
	t.Helper()
	if err := px.proxies[name].Start(); err != nil {
		t.Fatalf("toxiproxy %s: listen again: %v", name, err)
	}
}
