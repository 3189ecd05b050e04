package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop/redis/redistest"
)

// TestRunWithRedis: the wiring with --redis: the journey works and its
// sessions, carts and menu go through Redis (its metrics say so).
func TestRunWithRedis(t *testing.T) {
	srv := redistest.Start(t)
	s := start(t, t.TempDir(), "--redis", srv.URL())
	if code, _ := call(t, "GET", s.api+"/v1/menu", "", "", ""); code != 200 {
		t.Fatalf("menu: %d", code)
	}
	code, body := call(t, "POST", s.api+"/v1/sessions", "", "", "")
	var sess struct{ Token string }
	json.Unmarshal(body, &sess) //nolint:errcheck
	if code != 201 {
		t.Fatalf("session: %d %s", code, body)
	}
	if code, body := call(t, "PUT", s.api+"/v1/cart/items/3", sess.Token, "", `{"quantity": 2}`); code != 200 {
		t.Fatalf("cart: %d %s", code, body)
	}
	if code, body := call(t, "GET", s.api+"/v1/cart", sess.Token, "", ""); code != 200 || !strings.Contains(string(body), `"quantity":2`) {
		t.Fatalf("cart read: %d %s", code, body)
	}
	_, metrics := call(t, "GET", s.admin+"/metrics", "", "", "")
	for _, want := range []string{"shop_redis_up 1", `shop_redis_lookups_total{kind="cart",result="hit"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
