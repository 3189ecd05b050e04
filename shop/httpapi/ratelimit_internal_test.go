package httpapi

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

// The limiter's memory is bounded: buckets idle long enough to be full
// again are evicted (forgetting nothing), and past maxTrackedClients new
// addresses share one bucket instead of growing the table.
func TestClientLimiterEvictsIdleBucketsAndStaysBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newClientLimiter(SessionLimit{Rate: 1, Burst: 2}, func() time.Time { return now })
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	for i := range 1000 {
		if ok, _ := l.reserve(addr(i)); !ok {
			t.Fatalf("first session of client %d refused", i)
		}
	}
	if n := l.tracked(); n != 1000 {
		t.Fatalf("%d buckets, want 1000", n)
	}
	// Two more from one client: the second is over the burst of 2.
	l.reserve(addr(0))
	if ok, wait := l.reserve(addr(0)); ok || wait <= 0 || wait > time.Second {
		t.Fatalf("third session at once: ok %v, wait %v; want refused for up to 1s", ok, wait)
	}
	// After a sweep interval, buckets idle for their refill time are gone.
	now = now.Add(2 * time.Minute)
	l.reserve(addr(5000))
	if n := l.tracked(); n != 1 {
		t.Fatalf("%d buckets after the idle ones were swept, want 1", n)
	}
	// The table never grows past its bound.
	for i := range maxTrackedClients + 500 {
		l.reserve(addr(10000 + i))
	}
	if n := l.tracked(); n > maxTrackedClients {
		t.Fatalf("%d buckets, more than the bound %d", n, maxTrackedClients)
	}
}

func TestClientAddr(t *testing.T) {
	trusted, err := ParseTrustedProxies("127.0.0.1, 10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	c := clientAddr{trusted: trusted}
	tests := []struct {
		peer, xff, realIP, want string
	}{
		{"192.0.2.1:5000", "203.0.113.9", "", "192.0.2.1"},             // untrusted peer: headers ignored
		{"127.0.0.1:5000", "203.0.113.9", "", "203.0.113.9"},           // trusted proxy
		{"127.0.0.1:5000", "1.2.3.4, 203.0.113.9", "", "203.0.113.9"},  // forged left part ignored
		{"127.0.0.1:5000", "203.0.113.9, 10.1.2.3", "", "203.0.113.9"}, // chained trusted proxies
		{"127.0.0.1:5000", "", "203.0.113.7", "203.0.113.7"},           // X-Real-IP
		{"127.0.0.1:5000", "garbage", "", "127.0.0.1"},                 // malformed chain
		{"[::ffff:127.0.0.1]:5000", "203.0.113.9", "", "203.0.113.9"},
	}
	for _, tt := range tests {
		r := newRequest(tt.peer)
		if tt.xff != "" {
			r.Header.Set("X-Forwarded-For", tt.xff)
		}
		if tt.realIP != "" {
			r.Header.Set("X-Real-IP", tt.realIP)
		}
		if got := c.of(r).String(); got != tt.want {
			t.Errorf("peer %s xff %q real %q: %s, want %s", tt.peer, tt.xff, tt.realIP, got, tt.want)
		}
	}
	if _, err := ParseTrustedProxies("10.0.0.0/8, nonsense"); err == nil {
		t.Fatal("a bad proxy list was accepted")
	}
}

func newRequest(peer string) *http.Request {
	r := httptest.NewRequest("POST", "/v1/sessions", nil)
	r.RemoteAddr = peer
	return r
}
