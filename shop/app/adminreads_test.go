package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/shard"
)

// migratedShards are n fresh databases migrated as the shards of one
// store.
func migratedShards(t *testing.T, n int) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a shop on PostgreSQL shards (a few seconds); runs without -short")
	}
	urls := make([]string, n)
	for k := range urls {
		urls[k] = pgtest.NewDatabase(t)
	}
	if _, err := backend.Migrate(t.Context(), backend.Config{ShardURLs: urls}); err != nil {
		t.Fatal(err)
	}
	return urls
}

// sessionOnShard is a new session whose token's bucket the map gives to
// shard k (from 1).
func (r *running) sessionOnShard(t *testing.T, m *shard.Map, k int) string {
	t.Helper()
	for range 200 {
		tok := r.session(t)
		b, err := shard.BucketOfTokenHash(shop.HashToken(tok))
		if err != nil {
			t.Fatal(err)
		}
		if m.Owner(b) == k-1 {
			return tok
		}
	}
	t.Fatalf("no session of 200 landed on shard %d", k)
	return ""
}

type adminReport struct {
	Items []struct {
		ItemID int64 `json:"item_id"`
		Units  int64 `json:"units"`
	} `json:"items"`
	Orders        []shop.Order `json:"orders"`
	Shards        int          `json:"shards"`
	Complete      bool         `json:"complete"`
	MissingShards []struct {
		Shard  int    `json:"shard"`
		Detail string `json:"detail"`
	} `json:"missing_shards"`
}

func (a adminReport) sales() map[int64]int64 {
	m := map[int64]int64{}
	for _, it := range a.Items {
		m[it.ItemID] = it.Units
	}
	return m
}

func (a adminReport) missing() string {
	var s []string
	for _, m := range a.MissingShards {
		s = append(s, fmt.Sprintf("%d: %s", m.Shard, m.Detail))
	}
	return strings.Join(s, "; ")
}

func (r *running) adminRead(t *testing.T, path string) (int, adminReport) {
	t.Helper()
	code, _, body := call(t, "GET", r.url+path, "admin", nil)
	var rep adminReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("%s: %d %s", path, code, body)
	}
	return code, rep
}

// The admin's reads over every shard, with one shard hanging (a lock
// holds its order lines: it answers nothing before the deadline), then
// refusing connections (cut off), then with no shard reachable: the
// answer is whole, then partial and says which shard is missing and why,
// then 503 naming both.
func TestAdminReadsOverShardsNameTheShardThatDidNotAnswer(t *testing.T) {
	urls := migratedShards(t, 2)
	// An API replica: no worker moves the orders on while they are read.
	r := serve(t, Config{DatabaseURL: urls[0], ShardURLs: urls, Role: RoleAPI})
	m, err := shard.Balanced(2)
	if err != nil {
		t.Fatal(err)
	}
	for k, units := range map[int]int{1: 2, 2: 3} { // item 1 on shard 1, item 2 on shard 2
		tok := r.sessionOnShard(t, m, k)
		if code, _, body := call(t, "PUT", fmt.Sprintf("%s/v1/cart/items/%d", r.url, k), tok, map[string]int{"quantity": units}); code != 200 {
			t.Fatalf("cart on shard %d: %d %s", k, code, body)
		}
		if code, body := r.checkout(t, tok, "k"); code != 201 {
			t.Fatalf("checkout on shard %d: %d %s", k, code, body)
		}
	}
	code, whole := r.adminRead(t, "/v1/admin/sales")
	if code != 200 || !whole.Complete || whole.Shards != 2 || len(whole.MissingShards) != 0 || whole.sales()[1] != 2 || whole.sales()[2] != 3 {
		t.Fatalf("sales over both shards: %d %+v", code, whole)
	}
	if code, placed := r.adminRead(t, "/v1/admin/orders?status=placed"); code != 200 || len(placed.Orders) != 2 || !placed.Complete {
		t.Fatalf("placed orders over both shards: %d %+v", code, placed)
	}

	// Shard 2 hangs: its order lines are locked, and its read waits. The
	// answer comes at the fan-out's deadline (2 s), before the route's
	// (5 s, which would have been a 503).
	hold, err := pgx.Connect(t.Context(), urls[1])
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close(context.Background())
	tx, err := hold.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), `LOCK TABLE order_lines IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, hung := r.adminRead(t, "/v1/admin/sales")
	took := time.Since(start)
	if code != 200 || hung.Complete || len(hung.MissingShards) != 1 || hung.MissingShards[0].Shard != 2 ||
		!strings.Contains(hung.MissingShards[0].Detail, "deadline") || hung.sales()[1] != 2 || hung.sales()[2] != 0 {
		t.Fatalf("sales with shard 2 hanging: %d %+v", code, hung)
	}
	t.Logf("shard 2 hanging: answered in %s, missing %s", took.Round(time.Millisecond), hung.missing())
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Shard 2 cut off: its connections ended, new ones refused.
	cutOff(t, urls[1])
	code, cut := r.adminRead(t, "/v1/admin/orders?status=placed")
	if code != 200 || cut.Complete || len(cut.Orders) != 1 || len(cut.MissingShards) != 1 || cut.MissingShards[0].Shard != 2 ||
		!strings.Contains(cut.MissingShards[0].Detail, "not reachable") {
		t.Fatalf("placed orders with shard 2 cut off: %d %+v", code, cut)
	}
	t.Logf("shard 2 cut off: missing %s", cut.missing())

	// Both cut off: nothing to answer with.
	cutOff(t, urls[0])
	code, hdr, body := call(t, "GET", r.url+"/v1/admin/sales", "admin", nil)
	var p struct {
		Status        int
		Code          string
		MissingShards []struct{ Shard int } `json:"missing_shards"`
	}
	if err := json.Unmarshal(body, &p); err != nil || code != 503 || hdr.Get("Content-Type") != "application/problem+json" ||
		hdr.Get("Retry-After") == "" || len(p.MissingShards) != 2 || p.MissingShards[0].Shard != 1 || p.MissingShards[1].Shard != 2 {
		t.Fatalf("sales with no shard reachable: %d %v %s", code, hdr, body)
	}
}

// cutOff makes url's database refuse new connections and ends those
// open, until the test ends.
func cutOff(t *testing.T, url string) {
	t.Helper()
	name := pgx.Identifier{pgtest.DatabaseName(url)}.Sanitize()
	pgtest.Exec(t, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS false`)
	t.Cleanup(func() { pgtest.Exec(t, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS true`) })
	pgtest.Exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, pgtest.DatabaseName(url))
}
