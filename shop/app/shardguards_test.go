package app

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop/shard"
)

// breakerState is shop_breaker_state of dependency (0 closed, 1
// half-open, 2 open; -1 when there is no such guard).
func (r *running) breakerState(t *testing.T, dependency string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "shop_breaker_state" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "dependency" && l.GetValue() == dependency {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

type readyAnswer struct {
	Status        any `json:"status"` // a word, or a problem's number
	MissingShards []struct {
		Shard  int    `json:"shard"`
		Detail string `json:"detail"`
	} `json:"missing_shards"`
}

func (r *running) readyz(t *testing.T) (int, readyAnswer) {
	t.Helper()
	code, _, body := call(t, "GET", r.url+"/readyz", "", nil)
	var a readyAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	return code, a
}

// Each shard has guards of its own: shard 2 cut off opens its breaker,
// and its sessions are refused at once naming it, while shard 1's breakers
// stay closed and its sessions are served (with one breaker for every
// shard, shard 2's failures refused shard 1's sessions too). Readiness
// stays 200, degraded, naming shard 2: every replica shares the shards,
// so taking replicas out would serve shard 1's sessions nowhere. With no
// shard answering, readiness fails naming both.
func TestAShardDownOpensItsOwnBreakerAndReadinessNamesIt(t *testing.T) {
	urls := migratedShards(t, 2)
	r := serve(t, Config{DatabaseURL: urls[0], ShardURLs: urls, Role: RoleAPI})
	m, err := shard.Balanced(2)
	if err != nil {
		t.Fatal(err)
	}
	one, two := r.sessionOnShard(t, m, 1), r.sessionOnShard(t, m, 2)
	if code, ready := r.readyz(t); code != 200 || ready.Status != "ready" || len(ready.MissingShards) != 0 {
		t.Fatalf("/readyz with both shards up: %d %+v", code, ready)
	}

	cutOff(t, urls[1])
	var last string
	testwait.Eventually(t, 60*time.Second, func() error {
		code, _, body := call(t, "PUT", r.url+"/v1/cart/items/1", two, map[string]int{"quantity": 1})
		last = fmt.Sprintf("%d %s", code, body)
		if code == 503 && strings.Contains(string(body), "shard 2's database is failing") {
			return nil
		}
		return fmt.Errorf("shard 2's session's cart: %s, want 503 refused by shard 2's breaker", last)
	})
	t.Logf("shard 2's session: %s", last)
	for _, dep := range []string{"database-read-shard-1", "database-write-shard-1"} {
		if st := r.breakerState(t, dep); st != 0 {
			t.Errorf("%s's breaker is %v, want 0 (closed)", dep, st)
		}
	}
	if r.breakerState(t, "database-read-shard-2") != 2 && r.breakerState(t, "database-write-shard-2") != 2 {
		t.Errorf("no breaker of shard 2 is open")
	}
	if code, _, body := call(t, "PUT", r.url+"/v1/cart/items/1", one, map[string]int{"quantity": 1}); code != 200 {
		t.Fatalf("shard 1's session's cart with shard 2 down: %d %s", code, body)
	}
	if code, body := r.checkout(t, one, "k"); code != 201 {
		t.Fatalf("shard 1's session's checkout with shard 2 down: %d %s", code, body)
	}
	code, ready := r.readyz(t)
	if code != 200 || ready.Status != "degraded" || len(ready.MissingShards) != 1 || ready.MissingShards[0].Shard != 2 {
		t.Fatalf("/readyz with shard 2 down: %d %+v", code, ready)
	}
	t.Logf("/readyz with shard 2 down: %+v", ready)

	cutOff(t, urls[0])
	code, ready = r.readyz(t)
	if code != 503 || len(ready.MissingShards) != 2 {
		t.Fatalf("/readyz with no shard up: %d %+v", code, ready)
	}
}
