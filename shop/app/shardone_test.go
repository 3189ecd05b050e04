package app

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/internal/toxitest"
	"github.com/perfscale/perfscale/shop/shard"
)

// Shard 1 (the catalog's home) stops answering (a blackhole between the
// replica and its server), and shard 2's customers are served:
//   - a checkout on shard 2 that must borrow stock held on shard 1 is a
//     503 with Retry-After naming shard 1, answered before the route's
//     deadline (its escrow calls go through shard 1's guards, within
//     sharded.EscrowWait); the old code waited for shard 1 until the
//     deadline and then answered "not enough stock";
//   - a checkout on shard 2 from its own quota is placed;
//   - an item page and a page of the listing no replica had cached are
//     answered from shard 2's copy of the catalog, marked stale
//     (Warning 110); the old code read them from shard 1 only and
//     answered 503.
func TestShardOneNotAnsweringLeavesShardTwosCustomersServed(t *testing.T) {
	urls := migratedShards(t, 2)
	u, err := url.Parse(urls[0])
	if err != nil {
		t.Fatal(err)
	}
	px := toxitest.New(t, map[string]string{"shard1": u.Host})
	u.Host = px.Addr("shard1")
	one := u.String()
	r := serve(t, Config{DatabaseURL: one, ShardURLs: []string{one, urls[1]}, Role: RoleAPI})
	// Item 1's one unit is on shard 1 (shard.Share gives the first shard
	// the remainder).
	if code, _, body := call(t, "PUT", r.url+"/v1/admin/items/1", "admin", map[string]int{"stock": 1}); code != 200 {
		t.Fatalf("set item 1's stock: %d %s", code, body)
	}
	m, err := shard.Balanced(2)
	if err != nil {
		t.Fatal(err)
	}
	borrower, local := r.sessionOnShard(t, m, 2), r.sessionOnShard(t, m, 2)
	for tok, item := range map[string]int{borrower: 1, local: 2} {
		if code, _, body := call(t, "PUT", fmt.Sprintf("%s/v1/cart/items/%d", r.url, item), tok, map[string]int{"quantity": 1}); code != 200 {
			t.Fatalf("cart: %d %s", code, body)
		}
	}

	px.Add(t, "shard1", "timeout", `{"timeout": 0}`)
	defer px.Remove(t, "shard1")

	code, h, body := call(t, "POST", r.url+"/v1/orders", borrower,
		map[string]any{"customer_name": "Ada", "email": "ada@example.com"}, "Idempotency-Key", "borrow")
	t.Logf("shard 2's checkout borrowing from shard 1: %d %s", code, body)
	if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(string(body), "shard 1") || strings.Contains(string(body), "took too long") {
		t.Fatalf("shard 2's checkout borrowing from a blackholed shard 1: %d (Retry-After %q) %s; want a 503 naming shard 1 before the deadline",
			code, h.Get("Retry-After"), body)
	}
	if code, body := r.checkout(t, local, "local"); code != 201 {
		t.Fatalf("shard 2's checkout from its own quota with shard 1 blackholed: %d %s", code, body)
	}
	// Item 4 is read from shard 1's copy first (items spread over the
	// copies by id: 4 mod 2), so shard 2's copy answers it as the
	// fallback; item 5 is shard 2's own, read after it.
	for _, path := range []string{"/v1/items/4", "/v1/items?limit=3", "/v1/items/5"} {
		code, h, body := call(t, "GET", r.url+path, "", nil)
		t.Logf("GET %s with shard 1 blackholed: %d Warning %q", path, code, h.Get("Warning"))
		if code != 200 || h.Get("Warning") == "" {
			t.Fatalf("GET %s with shard 1 blackholed: %d (Warning %q) %s; want 200 from shard 2's copy, marked stale", path, code, h.Get("Warning"), body)
		}
	}
}
