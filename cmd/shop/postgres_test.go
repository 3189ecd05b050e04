package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop/postgres/pgtest"
)

// On PostgreSQL, migrating is a step of its own: the api and worker roles
// refuse an unmigrated database with a one-line error that says what to
// run, `shop migrate` migrates it, and then an api and a worker process
// share the work through it.
func TestPostgresRolesNeedShopMigrateThenShareTheWork(t *testing.T) {
	url := pgtest.NewDatabase(t)
	for _, role := range []string{"api", "worker", "all"} {
		err := run(context.Background(), []string{"--db", url, "--role", role, "--addr", "127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "run `shop migrate`") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("--role %s on an unmigrated database: %v, want a one-line error telling to run shop migrate", role, err)
		}
	}
	for range 2 { // migrating twice is harmless
		if err := run(context.Background(), []string{"migrate", "--db", url}, func(string) string { return "" }, io.Discard); err != nil {
			t.Fatalf("shop migrate: %v", err)
		}
	}
	// SHOP_DATABASE_URL works as --db does.
	env := func(k string) string {
		if k == "SHOP_DATABASE_URL" {
			return url
		}
		return ""
	}
	if err := run(context.Background(), []string{"migrate"}, env, io.Discard); err != nil {
		t.Fatalf("shop migrate with SHOP_DATABASE_URL: %v", err)
	}

	api := start(t, t.TempDir(), "--db", url, "--role", "api")
	start(t, t.TempDir(), "--db", url, "--role", "worker")
	_, body := call(t, "POST", api.api+"/v1/sessions", "", "", "")
	var sess struct{ Token string }
	json.Unmarshal(body, &sess)
	_, body = call(t, "PUT", api.api+"/v1/cart/items/1", sess.Token, "", `{"quantity": 2}`)
	var cart struct {
		TotalCents int64 `json:"total_cents"`
	}
	json.Unmarshal(body, &cart)
	code, body := call(t, "POST", api.api+"/v1/orders", sess.Token, "k",
		fmt.Sprintf(`{"customer_name": "Ada", "email": "ada@example.com", "expected_total_cents": %d}`, cart.TotalCents))
	if code != 201 {
		t.Fatalf("checkout: %d %s", code, body)
	}
	var order struct{ ID int64 }
	json.Unmarshal(body, &order)
	waitOrderReady(t, api.api, sess.Token, order.ID)
}
