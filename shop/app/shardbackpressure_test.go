package app

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop/shard"
)

// Checkout backpressure judges each shard by its own confirmation queue:
// with shard 2's oldest confirmation waiting past the 5 s bound, shard 2's
// sessions are refused (503, Retry-After, naming shard 2) and shard 1's
// are served. Summed over every shard, as before, shard 2's backlog
// refused shard 1's checkouts too.
func TestABacklogOnOneShardRefusesOnlyThatShardsCheckouts(t *testing.T) {
	urls := migratedShards(t, 2)
	r := serve(t, Config{DatabaseURL: urls[0], ShardURLs: urls, Role: RoleAPI})
	m, err := shard.Balanced(2)
	if err != nil {
		t.Fatal(err)
	}
	one, two := r.sessionOnShard(t, m, 1), r.sessionOnShard(t, m, 2)
	for _, tok := range []string{one, two} {
		if code, _, body := call(t, "PUT", r.url+"/v1/cart/items/1", tok, map[string]int{"quantity": 1}); code != 200 {
			t.Fatalf("cart: %d %s", code, body)
		}
	}

	// A confirmation due a minute ago on shard 2 that no worker takes (an
	// api replica runs no jobs): shard 2's confirmations are behind.
	conn, err := pgx.Connect(t.Context(), urls[1])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), `INSERT INTO river_job (kind, args, state, scheduled_at, queue, priority, max_attempts)
VALUES ('backlog_test', '{}', 'available', now() - interval '1 minute', 'default', 1, 1)`); err != nil {
		t.Fatal(err)
	}

	var last string
	testwait.Eventually(t, 60*time.Second, func() error {
		code, h, body := call(t, "POST", r.url+"/v1/orders", two,
			map[string]any{"customer_name": "Ada", "email": "ada@example.com"}, "Idempotency-Key", "two")
		last = fmt.Sprintf("%d %s", code, body)
		if code == 503 && h.Get("Retry-After") != "" && strings.Contains(string(body), "confirmed more slowly") {
			return nil
		}
		return fmt.Errorf("shard 2's session's checkout: %s (Retry-After %q), want 503 refused by shard 2's backlog", last, h.Get("Retry-After"))
	})
	t.Logf("shard 2's session: %s", last)
	if code, body := r.checkout(t, one, "one"); code != 201 {
		t.Fatalf("shard 1's session's checkout with shard 2 behind: %d %s, want 201", code, body)
	}
	if !strings.Contains(last, "on shard 2") {
		t.Errorf("the refusal does not name shard 2: %s", last)
	}
}
