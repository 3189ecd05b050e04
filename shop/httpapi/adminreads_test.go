package httpapi_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/seed"
)

// adminReport is the body of GET /v1/admin/sales and /v1/admin/orders.
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

// The admin's reads over every order, on one database (the embedded
// default): one shard, always complete; the sharded store's partial
// answers are tested in shop/app (TestAdminReadsOverShardsNameTheShardThatDidNotAnswer).
func TestAdminReadsOnOneDatabase(t *testing.T) {
	a := newAPI(t, options{items: seed.Items(3), adminToken: adminToken})
	for _, path := range []string{"/v1/admin/sales", "/v1/admin/orders?status=placed"} {
		a.do(req{method: "GET", path: path}).problem(t, 401)
		a.do(req{method: "GET", path: path, token: a.session()}).problem(t, 403)
	}
	var empty adminReport
	a.do(req{method: "GET", path: "/v1/admin/sales", token: adminToken}).json(t, &empty)
	if len(empty.Items) != 0 || empty.Shards != 1 || !empty.Complete || empty.MissingShards == nil || len(empty.MissingShards) != 0 {
		t.Fatalf("sales with no orders: %+v", empty)
	}

	var ids []int64
	for i, lines := range [][2]int{{2, 1}, {0, 3}} { // units of items 1 and 2
		tok := a.session()
		for item, n := range lines {
			if n > 0 {
				a.add(tok, int64(item+1), n)
			}
		}
		r := a.checkout(tok, fmt.Sprint("k", i), ada)
		var o shop.Order
		r.json(t, &o)
		if r.status != 201 {
			t.Fatalf("checkout %d: %d %s", i, r.status, r.body)
		}
		ids = append(ids, o.ID)
	}

	var sales adminReport
	r := a.do(req{method: "GET", path: "/v1/admin/sales", token: adminToken})
	r.json(t, &sales)
	got := map[int64]int64{}
	for _, it := range sales.Items {
		got[it.ItemID] = it.Units
	}
	if r.status != 200 || !sales.Complete || sales.Shards != 1 || len(sales.MissingShards) != 0 {
		t.Fatalf("sales: %d %s", r.status, r.body)
	}
	if diff := cmp.Diff(map[int64]int64{1: 2, 2: 4}, got); diff != "" {
		t.Fatalf("units sold per item (-want +got):\n%s", diff)
	}

	var placed adminReport
	a.do(req{method: "GET", path: "/v1/admin/orders?status=placed&limit=5", token: adminToken}).json(t, &placed)
	var placedIDs []int64
	for _, o := range placed.Orders {
		placedIDs = append(placedIDs, o.ID)
	}
	if diff := cmp.Diff([]int64{ids[1], ids[0]}, placedIDs); diff != "" || !placed.Complete {
		t.Fatalf("placed orders, newest first (-want +got):\n%s\n%+v", diff, placed)
	}
	var one adminReport
	a.do(req{method: "GET", path: "/v1/admin/orders?status=placed&limit=1", token: adminToken}).json(t, &one)
	if len(one.Orders) != 1 || one.Orders[0].ID != ids[1] {
		t.Fatalf("limit=1: %+v, want order %d", one.Orders, ids[1])
	}
	var confirmed adminReport
	a.do(req{method: "GET", path: "/v1/admin/orders?status=confirmed", token: adminToken}).json(t, &confirmed)
	if confirmed.Orders == nil || len(confirmed.Orders) != 0 {
		t.Fatalf("confirmed orders (no worker runs): %+v", confirmed.Orders)
	}
}

func TestAdminReadsRefuseBadQueries(t *testing.T) {
	a := newAPI(t, options{items: seed.Items(1), adminToken: adminToken})
	for _, path := range []string{
		"/v1/admin/orders",                         // status is required
		"/v1/admin/orders?status=shipped",          // no such status
		"/v1/admin/orders?status=PLACED",           // statuses are lower case
		"/v1/admin/orders?status=placed&limit=0",   // below 1
		"/v1/admin/orders?status=placed&limit=101", // above the page size
		"/v1/admin/orders?status=placed&status=ready",
		"/v1/admin/orders?state=placed", // misspelt
		"/v1/admin/sales?item=1",        // sales take no filter
	} {
		t.Run(path, func(t *testing.T) {
			a.do(req{method: "GET", path: path, token: adminToken}).problem(t, 400)
		})
	}
	// Said with what is allowed; sales allow nothing, which read
	// "(allowed: )".
	for path, want := range map[string]string{
		"/v1/admin/sales?item=1":        `unknown query parameter "item": /v1/admin/sales takes no query parameters`,
		"/v1/admin/orders?state=placed": `unknown query parameter "state" (allowed: status, limit)`,
	} {
		if p := a.do(req{method: "GET", path: path, token: adminToken}).problem(t, 400); p["detail"] != want {
			t.Errorf("GET %s: detail %q, want %q", path, p["detail"], want)
		}
	}
}
