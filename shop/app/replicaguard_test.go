package app

import (
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/internal/toxitest"
	"github.com/perfscale/perfscale/shop/postgres"
)

// A read replica that is down (from the process's start, which it does
// not stop), then one that crawls (Toxiproxy between the service and it),
// costs catalog reads nothing but speed: each is
// answered, by the primary, and the replica's own breaker opens so later
// reads go to the primary at once; the primary's breakers stay closed.
// Before, a catalog read on a dead replica was a 503, and a replica down
// at the start stopped the process from starting. (The "replica" is
// the primary itself behind the proxy: what is under test is the routing
// around it, not replication.)
func TestADeadOrSlowReplicaFallsBackToThePrimary(t *testing.T) {
	primary, replica, px := primaryBehindAProxy(t)
	// Down from the start: the process starts all the same.
	px.Down("replica")
	r := serve(t, Config{DatabaseURL: primary, Role: RoleAPI,
		Postgres: postgres.Options{Replicas: []string{replica}, ConnectTimeout: 2 * time.Second}})

	// Each read asks for a page no earlier read asked for: the page cache
	// in memory does not answer it, the store does.
	reads := 0
	read := func() error {
		reads++
		code, _, body := call(t, "GET", fmt.Sprintf("%s/v1/items?q=probe-%d", r.url, reads), "", nil)
		if code != 200 {
			t.Fatalf("catalog read %d: %d %s, want 200 whatever the replica does\n%s", reads, code, body, r.logs.String())
		}
		return nil
	}
	breakerIs := func(want float64, why string) func() error {
		return func() error {
			read()
			if st := r.breakerState(t, "database-replica-1"); st != want {
				return fmt.Errorf("the replica's breaker is %v, want %v (%s)", st, want, why)
			}
			return nil
		}
	}
	testwait.Eventually(t, 30*time.Second, breakerIs(2, "the replica refuses connections"))
	px.Up(t, "replica")
	testwait.Eventually(t, 30*time.Second, breakerIs(0, "the replica is back"))

	px.Add(t, "replica", "latency", `{"latency": 10000}`)
	testwait.Eventually(t, 60*time.Second, breakerIs(2, "the replica takes 10 s to answer"))
	px.Remove(t, "replica")
	testwait.Eventually(t, 30*time.Second, breakerIs(0, "the replica is quick again"))

	for _, dep := range []string{"database-read", "database-write"} {
		if st := r.breakerState(t, dep); st != 0 {
			t.Errorf("%s's breaker is %v, want 0 (closed): the replica's faults are not the primary's", dep, st)
		}
	}
	t.Logf("%d catalog reads, every one answered", reads)
}

// A session's reads of its own orders fall back to the primary, as catalog
// reads do, when the replica fails them: they ran on a replica connection
// taken for the request outside the replica's guard and timeout, so a
// replica that stalled after the connection was taken cost them a 503
// after the route's 5 s (this test's second read, before the fix). The
// fault matrix's new standby rows showed it: under a blackhole of the
// standby, tries of 5 s and 503s.
func TestASessionsOwnReadsFallBackWhenTheReplicaFailsThem(t *testing.T) {
	primary, replica, px := primaryBehindAProxy(t)
	r := serve(t, Config{DatabaseURL: primary, Role: RoleAPI,
		Postgres: postgres.Options{Replicas: []string{replica}, ConnectTimeout: 2 * time.Second}})
	// A session that has written nothing reads its orders on the replica.
	token := r.session(t)
	ownOrders := func(why string) {
		t.Helper()
		if code, _, body := call(t, "GET", r.url+"/v1/orders", token, nil); code != 200 {
			t.Fatalf("own orders %s: %d %s, want 200 whatever the replica does\n%s", why, code, body, r.logs.String())
		}
	}
	// The pool now holds a connection just used, which it hands out again
	// without a ping (pgxpool pings one idle for more than a second).
	ownOrders("with the replica up")
	// The replica stalls: 10 s before anything it sends arrives.
	px.Add(t, "replica", "latency", `{"latency": 10000}`)
	ownOrders("with the replica stalled")
}

// An item page is answered while its item keeps being sold and the read
// replica is slow: the fault matrix's item pages got 503 after their 2 s
// deadline under 1 s of replica latency. A checkout drops the items it
// sold, or found sold out, from the cache in memory, and the cache
// refused to keep a load that such a drop had overtaken and loaded again,
// and again: with each load as slow as the replica and the item asked for
// more often than that, no load finished between two drops and the page
// waited out its deadline (this test's first page got the 503 before the
// fix). The replica answers here, slowly, so that every load is slow;
// checkouts of the sold-out item come as fast as the primary refuses them.
func TestAnItemPageIsAnsweredWhileItsItemSellsAndTheReplicaIsSlow(t *testing.T) {
	primary, replica, px := primaryBehindAProxy(t)
	r := serve(t, Config{DatabaseURL: primary, Role: RoleAPI,
		Postgres: postgres.Options{Replicas: []string{replica}, ConnectTimeout: 2 * time.Second, ReplicaTimeout: time.Second}})
	token := r.session(t)
	if code, _, body := call(t, "PUT", r.url+"/v1/cart/items/1", token, map[string]int{"quantity": 1}); code != 200 {
		t.Fatalf("cart: %d %s", code, body)
	}
	if code, _, body := call(t, "PUT", r.url+"/v1/admin/items/1", "admin", map[string]int{"stock": 0}); code != 200 {
		t.Fatalf("sell item 1 out: %d %s", code, body)
	}
	// 150 ms each way: a read on the replica takes 300 ms or more (600 ms
	// with the pool's ping), within the replica's timeout.
	px.Add(t, "replica", "latency", `{"latency": 150}`)

	stop, tried := make(chan struct{}), make(chan struct{}, 1)
	var shopper sync.WaitGroup
	shopper.Add(1)
	go func() {
		defer shopper.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if code, body := r.checkout(t, token, fmt.Sprintf("sold-out-%d", n)); code != 409 {
				t.Errorf("checkout %d of a sold-out item: %d %s, want 409", n, code, body)
				return
			}
			select {
			case tried <- struct{}{}:
			default:
			}
		}
	}()
	defer func() { close(stop); shopper.Wait() }()
	<-tried // the item is being asked for

	for i := range 5 {
		begun := time.Now()
		code, _, body := call(t, "GET", r.url+"/v1/items/1", "", nil)
		if code != 200 {
			t.Fatalf("item page %d while its item sells: %d %s after %v, want 200", i, code, body, time.Since(begun).Round(time.Millisecond))
		}
	}
	if st := r.breakerState(t, "database-replica-1"); st != 0 {
		t.Errorf("the replica's breaker is %v, want 0 (closed): the replica answered every read, slowly", st)
	}
}

// primaryBehindAProxy is a migrated database and its URL through a
// Toxiproxy proxy named "replica": the "replica" the tests route around.
func primaryBehindAProxy(t *testing.T) (primary, replica string, px *toxitest.Proxies) {
	t.Helper()
	primary = migratedDatabase(t)
	u, err := url.Parse(primary)
	if err != nil {
		t.Fatal(err)
	}
	px = toxitest.New(t, map[string]string{"replica": u.Host})
	u.Host = px.Addr("replica")
	return primary, u.String(), px
}
