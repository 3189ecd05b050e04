package clustertest

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
)

// clientFrom is an HTTP client whose connections come from ip (any
// 127.0.0.0/8 address reaches nginx on 127.0.0.1): another client, as
// nginx's per-client limits see it.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func getFrom(t *testing.T, client *http.Client, url, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// A client holding as many requests as the replicas admit (per-client
// connection cap: 1 replica x (1 + 3) x 16 at GOMAXPROCS=1, cmd/cluster's
// clientLimits; sent at once, they also use up the burst of its rate
// limit, which refuses some of them) gets a 429 problem+json with
// Retry-After from nginx for its next one, while another client is served and its own health checks
// still pass; once it lets go, it is served again.
func TestAClientOverItsLimitGets429WhileAnotherIsServed(t *testing.T) {
	t.Parallel()
	const capacity = 1 * (1 + 3) * 16
	c := startCluster(t, map[string]string{"GOMAXPROCS": "1"}, "1")
	token := c.session()
	conf, err := os.ReadFile(filepath.Join(c.state, "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("limit_conn shop_client_conns %d;", capacity); !strings.Contains(string(conf), want) {
		t.Fatalf("nginx.conf has no %q", want)
	}

	// Requests whose body never comes: nginx has read their headers, so
	// each is one of the client's requests in progress, and stays so.
	// A few more than the cap: the rate limit's burst (as many) may refuse
	// a few sent at once, and one that nginx reads while a probe below is
	// in progress is refused; the others still fill the cap.
	held := make([]net.Conn, 0, capacity+8)
	t.Cleanup(func() {
		for _, conn := range held {
			conn.Close()
		}
	})
	host := strings.TrimPrefix(c.url, "http://")
	for range capacity + 8 {
		conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}}).Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, conn)
		fmt.Fprintf(conn, "PUT /v1/cart/items/1 HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n", host, token)
	}

	over, other := clientFrom("127.0.0.1"), clientFrom("127.0.0.2")
	var res *http.Response
	var body []byte
	testwait.Eventually(t, 30*time.Second, func() error {
		res, body = getFrom(t, over, c.url+"/v1/cart", token)
		if res.StatusCode != http.StatusTooManyRequests {
			return fmt.Errorf("a request past the cap: %d %s, want 429", res.StatusCode, body)
		}
		return nil
	})
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != "application/problem+json" {
		t.Errorf("429's Content-Type %q, want application/problem+json", res.Header.Get("Content-Type"))
	}
	if ra := res.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("429's Retry-After %q, want 1", ra)
	}
	var p struct {
		Status       int
		Code, Detail string
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Status != 429 || p.Code != "too_many_requests" || p.Detail == "" {
		t.Errorf("429's body %q (%v), want a problem with status 429, code too_many_requests and a detail", body, err)
	}
	if r := res.Header.Get("X-Replica"); r != "" {
		t.Errorf("the 429 came from %s: want nginx, before any replica", r)
	}

	// Meanwhile: another client is served, and the limited one's health
	// and readiness checks are not limited.
	if res, b := getFrom(t, other, c.url+"/v1/cart", token); res.StatusCode != 200 {
		t.Errorf("another client while the first is over its limit: %d %s, want 200", res.StatusCode, b)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if res, b := getFrom(t, over, c.url+path, ""); res.StatusCode != 200 {
			t.Errorf("%s from the limited client: %d %s, want 200 (never limited)", path, res.StatusCode, b)
		}
	}

	// The refused held requests were answered 429 at once; the others are
	// still waiting for their bodies. Letting go of them frees the client.
	for _, conn := range held {
		conn.Close()
	}
	held = held[:0]
	testwait.Eventually(t, 30*time.Second, func() error {
		if res, b := getFrom(t, over, c.url+"/v1/cart", token); res.StatusCode != 200 {
			return fmt.Errorf("after letting go: %d %s, want 200", res.StatusCode, b)
		}
		return nil
	})
}

// nginx's own answers for a replica that cannot be reached are
// problem+json too, with Retry-After, not nginx's HTML page.
func TestNginxOwnErrorsAreProblemJSON(t *testing.T) {
	t.Parallel()
	c := startCluster(t, nil, "1")
	c.mustScript("kill-replica", "1")
	var res *http.Response
	var body []byte
	testwait.Eventually(t, 30*time.Second, func() error {
		res, body = getFrom(t, clientFrom("127.0.0.1"), c.url+"/v1/cart", "")
		if res.StatusCode != http.StatusBadGateway {
			return fmt.Errorf("with its one replica killed: %d %s, want 502", res.StatusCode, body)
		}
		return nil
	})
	var p struct{ Status int }
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != "application/problem+json" || json.Unmarshal(body, &p) != nil || p.Status != 502 || res.Header.Get("Retry-After") == "" {
		t.Errorf("502: %q %q Retry-After %q, want problem+json with status 502 and Retry-After", res.Header.Get("Content-Type"), body, res.Header.Get("Retry-After"))
	}
}
