package clustertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
)

// edgeStaleness is how old, at most, a menu or item page served through
// the cluster's nginx edge cache may be (the README says so): a replica's
// catalog is up to 1 s behind, the edge keeps a copy fresh for max-age 1 s
// and serves it stale for stale-while-revalidate 1 s more, and nginx's
// clock counts those in whole seconds (up to 2 s more).
const edgeStaleness = 5 * time.Second

type edgeReply struct {
	status          int
	cache, encoding string
	body            []byte
}

// edgeGet reads path through nginx with the given headers (name, value...).
func (c *cluster) edgeGet(path string, header ...string) edgeReply {
	c.t.Helper()
	req, err := http.NewRequest("GET", c.url+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	// The transport must not ask for gzip itself nor decode it: the test
	// looks at the bytes the edge sends.
	res, err := (&http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return edgeReply{res.StatusCode, res.Header.Get("X-Cache-Status"), res.Header.Get("Content-Encoding"), b}
}

// The edge cache keeps the menu and the item pages, one copy per content
// coding, never serves or stores what carries a session, and shows a
// price change within the staleness the README states.
func TestTheEdgeCachesTheMenuAndShowsAPriceChangeInTime(t *testing.T) {
	t.Parallel()
	c := startCluster(t, nil, "1")
	// (The service compresses the menu only; an item page is plain JSON.)
	for path, coding := range map[string]string{"/v1/menu": "gzip", "/v1/items?limit=5": ""} {
		testwait.Eventually(t, 20*time.Second, func() error {
			if r := c.edgeGet(path, "Accept-Encoding", "gzip"); r.cache != "HIT" || r.encoding != coding {
				return fmt.Errorf("GET %s (gzip): %d %q coding %q, want a copy from the cache coded %q", path, r.status, r.cache, r.encoding, coding)
			}
			return nil
		})
	}
	// Another coding is another copy: a client without gzip never gets the
	// gzip bytes, whatever the cache holds.
	if r := c.edgeGet("/v1/menu"); r.encoding != "" || !json.Valid(r.body) {
		t.Fatalf("menu without Accept-Encoding: coding %q, JSON %v", r.encoding, json.Valid(r.body))
	}
	if r := c.edgeGet("/v1/menu", "Accept-Encoding", "br;q=1, gzip;q=0.5"); r.encoding != "br" {
		t.Fatalf("menu for a brotli client: coding %q", r.encoding)
	}
	token := c.session()
	for _, h := range [][]string{{"Authorization", "Bearer " + token}, {"Cookie", "session=x"}} {
		if r := c.edgeGet("/v1/menu", h...); r.status != 200 || r.cache != "BYPASS" {
			t.Errorf("menu with %s: %d %q, want BYPASS: a session's request never meets the cache", h[0], r.status, r.cache)
		}
	}
	if r := c.edgeGet("/v1/cart", "Authorization", "Bearer "+token); r.cache != "" {
		t.Errorf("the cart went through the cache (%q)", r.cache)
	}

	price := func() int64 {
		var m struct {
			Categories []struct {
				Items []struct {
					ID         int64 `json:"id"`
					PriceCents int64 `json:"price_cents"`
				} `json:"items"`
			} `json:"categories"`
		}
		r := c.edgeGet("/v1/menu")
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("menu: %v: %.200s", err, r.body)
		}
		for _, cat := range m.Categories {
			for _, it := range cat.Items {
				if it.ID == 6 {
					return it.PriceCents
				}
			}
		}
		t.Fatalf("item 6 is not on the menu: %.300s", r.body)
		return 0
	}
	old := price()
	want := old + 111
	c.must("PUT", "/v1/admin/items/6", adminToken, map[string]int64{"price_cents": want}, 200)
	changed := time.Now()
	for {
		sent := time.Now()
		got := price()
		if got == want {
			t.Logf("the new price showed through the edge %v after the change", time.Since(changed).Round(time.Millisecond))
			break
		}
		if sent.Sub(changed) > edgeStaleness {
			t.Fatalf("a menu read sent %v after the price change still shows %d, not %d: older than the %v the README states", sent.Sub(changed).Round(time.Millisecond), got, want, edgeStaleness)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := c.edgeGet("/v1/items/6"); !bytes.Contains(r.body, []byte(fmt.Sprintf(`"price_cents":%d`, want))) {
		t.Errorf("item 6 read after the menu showed the change: %s", r.body)
	}
}
