package app

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/toxitest"
	"github.com/perfscale/perfscale/shop/postgres"
)

// A primary that stops answering (a blackhole: connections stay open, no
// byte passes) while its read replica answers makes a session's order
// list a fast 503 from the guard, not a wait for the route's 5 s
// deadline. The fault matrix's order lists waited their deadline under
// PostgreSQL's latency and blackhole after the stall trip landed: the
// list asks the primary for the session's write position, and the read
// guard's stall detector counted the catalog reads the replica kept
// answering as the database's progress, so it never tripped. The order
// list here is sent while a browser's catalog reads are answered by the
// replica; before the fix it ended with the deadline's "took too long".
func TestAStalledPrimaryIsAFast503ForTheOrderListWhileTheReplicaAnswers(t *testing.T) {
	direct := migratedDatabase(t)
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	px := toxitest.New(t, map[string]string{"primary": u.Host})
	u.Host = px.Addr("primary")
	// The "replica" is the database itself, reached directly: what is
	// under test is the primary's guard, not replication.
	r := serve(t, Config{DatabaseURL: u.String(), Role: RoleAPI,
		Postgres: postgres.Options{Replicas: []string{direct}, ConnectTimeout: 2 * time.Second}})
	token := r.session(t)
	if code, _, body := call(t, "GET", r.url+"/v1/orders", token, nil); code != 200 {
		t.Fatalf("own orders with the primary up: %d %s", code, body)
	}

	// A browser whose catalog reads the replica answers, all along.
	stop, browsed := make(chan struct{}), make(chan struct{}, 1)
	var browser sync.WaitGroup
	browser.Add(1)
	go func() {
		defer browser.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			// A page no earlier read asked for: the store answers it.
			if code, _, body := call(t, "GET", fmt.Sprintf("%s/v1/items?q=browse-%d", r.url, n), "", nil); code != 200 {
				t.Errorf("catalog read %d with the primary stalled: %d %s, want 200 from the replica", n, code, body)
				return
			}
			select {
			case browsed <- struct{}{}:
			default:
			}
		}
	}()
	defer func() { close(stop); browser.Wait() }()

	px.Add(t, "primary", "timeout", `{"timeout": 0}`)
	defer px.Remove(t, "primary")
	<-browsed
	<-browsed // at least one catalog read answered with the primary stalled

	begun := time.Now()
	code, header, body := call(t, "GET", r.url+"/v1/orders", token, nil)
	took := time.Since(begun)
	t.Logf("own orders with the primary stalled: %d after %v: %s", code, took.Round(time.Millisecond), body)
	if code != 503 || header.Get("Retry-After") == "" || !strings.HasPrefix(header.Get("Content-Type"), "application/problem+json") {
		t.Fatalf("own orders with the primary stalled: %d %v %s, want a 503 problem with Retry-After", code, header, body)
	}
	if strings.Contains(string(body), "took too long") {
		t.Fatalf("own orders with the primary stalled waited out the route's deadline (%v): %s; want the guard's 503 once the primary's reads stalled", took, body)
	}
	// Generous: the stall limit is 2 s, the route's deadline 5 s.
	if took >= 4500*time.Millisecond {
		t.Errorf("own orders with the primary stalled took %v, want well under the route's 5 s deadline", took)
	}
}
