package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"

	"github.com/perfscale/perfscale/internal/pgserver"
	"github.com/perfscale/perfscale/internal/supervise"

	"github.com/perfscale/perfscale/internal/testwait"
)

const adminToken = "cluster-test-token"

// binaries are shop and the cluster command, built once for all the
// clusters of this package.
var binaries struct {
	once          sync.Once
	shop, cluster string
	err           error
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// .ci/run runs the suite twice, the second time -race -short. The
		// clusters run shop and cluster binaries built without the race
		// detector, so it would watch only these tests' own HTTP clients,
		// at the cost of starting every cluster again; the first run has
		// proved the clusters.
		fmt.Println("clustertest: the cluster tests run without -short")
		os.Exit(0)
	}
	code := m.Run()
	if binaries.cluster != "" {
		os.RemoveAll(filepath.Dir(binaries.cluster))
	}
	os.Exit(code)
}

// build returns the shop and cluster binaries.
func build(t *testing.T, root string) (shop, cluster string) {
	t.Helper()
	binaries.once.Do(func() {
		dir, err := os.MkdirTemp("", "clustertest-bin-")
		if err != nil {
			binaries.err = err
			return
		}
		binaries.shop, binaries.cluster = filepath.Join(dir, "shop"), filepath.Join(dir, "cluster")
		build := map[string]string{binaries.shop: "./cmd/shop", binaries.cluster: "./cmd/cluster"}
		if shop := os.Getenv("PERFSCALE_CLUSTERTEST_SHOP"); shop != "" {
			// A shop built elsewhere (another branch's), run by this
			// branch's cluster command and tests.
			binaries.shop = shop
			delete(build, binaries.shop)
			delete(build, filepath.Join(dir, "shop"))
		}
		for bin, pkg := range build {
			cmd := exec.Command("go", "build", "-o", bin, pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				binaries.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.shop, binaries.cluster
}

// sharedServer is the machine's PostgreSQL server, for --pg-url.
const sharedServer = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// requireServices skips the test when PostgreSQL (the server binaries
// for the cluster's own server, the machine's server for --pg-url) or
// nginx is missing, and fails it under CI=true, where .ci/run provides
// them.
func requireServices(t *testing.T) {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; under CI=true .ci/run must provide it", why)
		}
		t.Skip(why + "; skipping the cluster test (scripts/services.sh starts PostgreSQL; apt-get install postgresql-15 nginx-light)")
	}
	if _, err := pgserver.Bin(); err != nil {
		missing(err.Error())
		return
	}
	conn, err := net.DialTimeout("tcp", "127.0.0.1:5432", 2*time.Second)
	if err != nil {
		missing("PostgreSQL is not reachable at 127.0.0.1:5432")
		return
	}
	conn.Close()
	if _, err := exec.LookPath("psql"); err != nil {
		missing("psql is not installed")
		return
	}
	if _, err := exec.LookPath("nginx"); err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			missing("nginx is not installed")
		}
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

type cluster struct {
	t     *testing.T
	root  string
	state string
	env   []string
	url   string
}

// script runs scripts/cluster.sh on this cluster's state directory.
func (c *cluster) script(args ...string) (stdout, stderr string, err error) {
	return c.scriptEnv(nil, args...)
}

// scriptEnv runs scripts/cluster.sh with extra environment variables
// (NAME=value), which the processes it starts inherit.
func (c *cluster) scriptEnv(env []string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(filepath.Join(c.root, "scripts/cluster.sh"), append([]string{"--state-dir", c.state}, args...)...)
	cmd.Dir = c.root
	cmd.Env = append(append([]string(nil), c.env...), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func (c *cluster) mustScript(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.script(args...)
	if err != nil {
		c.t.Fatalf("cluster.sh %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// startCluster runs cluster.sh up with args and registers down (and, when
// the test failed, a dump of the logs) for the end of the test.
func startCluster(t *testing.T, env map[string]string, args ...string) *cluster {
	t.Helper()
	return startClusterIn(t, filepath.Join(t.TempDir(), "cluster"), env, args...)
}

// startClusterIn is startCluster with the state directory given, for a
// test that puts something there first.
func startClusterIn(t *testing.T, state string, env map[string]string, args ...string) *cluster {
	t.Helper()
	requireServices(t)
	c := &cluster{t: t, root: repoRoot(t), state: state}
	shop, bin := build(t, c.root)
	c.env = append(os.Environ(), "SHOP_ADMIN_TOKEN="+adminToken, "SHOP_PREP_TIME=300ms", "SHOP_LOG_LEVEL=warn",
		"PERFSCALE_CLUSTER_SHOP="+shop, "PERFSCALE_CLUSTER_BIN="+bin)
	for k, v := range env {
		c.env = append(c.env, k+"="+v)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"replica-1", "replica-2", "worker", "nginx", "db-1"} {
				if b, err := os.ReadFile(filepath.Join(c.state, name+".log")); err == nil {
					t.Logf("%s.log (last 2 KB):\n%s", name, tail(b, 2048))
				}
			}
		}
		if out, errOut, err := c.script("down"); err != nil {
			t.Errorf("cluster.sh down: %v\n%s%s", err, out, errOut)
		}
	})
	out := c.mustScript(append([]string{"up"}, args...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	c.url = lines[len(lines)-1]
	if !strings.HasPrefix(c.url, "http://127.0.0.1:") {
		t.Fatalf("the last line of up is %q, want the load balancer's URL", c.url)
	}
	return c
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// statusLine returns the fields of the status row of name (pid, url, cpu,
// state), failing the test if there is none.
func (c *cluster) status(name string) (pid int, url, cpu, state string) {
	c.t.Helper()
	for _, line := range strings.Split(c.mustScript("status"), "\n") {
		f := strings.Fields(line)
		if len(f) == 7 && f[0] == name {
			pid, _ = strconv.Atoi(f[2])
			return pid, f[3], f[5], f[6]
		}
	}
	c.t.Fatalf("status lists no %s", name)
	return
}

type reply struct {
	status     int
	replica    string
	retryAfter string // the Retry-After header
	body       []byte
}

// shed is an answer a live replica gave on purpose, having done nothing:
// a 503 "unavailable" with Retry-After (admission control, or checkout's
// backpressure while confirmations are behind). It says nothing about
// whether a request reached a dead replica.
func (r reply) shed() bool {
	return r.status == http.StatusServiceUnavailable && r.replica != "" && r.retryAfter != "" &&
		bytes.Contains(r.body, []byte(`"code":"unavailable"`))
}

// final says whether a client of the API stops trying with r: an answer
// below 500 other than 429. A 429 (nginx holding this client to its limits)
// and a 5xx say nothing was done; a client tries again after backoff.
func (r reply) final(err error) bool {
	return err == nil && r.status < 500 && r.status != http.StatusTooManyRequests
}

// backoff is how long a well-behaved client waits before it tries again
// after r: the Retry-After of a 429 or a 503 (at most 2 s), else a short
// jittered pause. Without it the shoppers' retries of a shed checkout went
// out back to back and nginx held them to the per-client rate with 429s.
func (r reply) backoff() time.Duration {
	if secs, err := strconv.Atoi(r.retryAfter); err == nil && secs > 0 {
		return min(time.Duration(secs)*time.Second, 2*time.Second)
	}
	return time.Duration(20+rand.IntN(80)) * time.Millisecond
}

// client talks to the cluster through nginx with keep-alive connections.
var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// do sends one request; header is name, value pairs.
func (c *cluster) do(method, path, token, key string, body any, header ...string) (reply, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.url+path, rd)
	if err != nil {
		return reply{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return reply{status: res.StatusCode, replica: res.Header.Get("X-Replica"), retryAfter: res.Header.Get("Retry-After"), body: b}, err
}

func (c *cluster) must(method, path, token string, body any, want int) reply {
	c.t.Helper()
	r, err := c.do(method, path, token, "", body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.status != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

func (c *cluster) session() string {
	c.t.Helper()
	var s struct{ Token string }
	json.Unmarshal(c.must("POST", "/v1/sessions", "", nil, 201).body, &s)
	if s.Token == "" {
		c.t.Fatal("no session token")
	}
	return s.Token
}

type order struct {
	ID         int64  `json:"id"`
	Status     string `json:"status"`
	TotalCents int64  `json:"total_cents"`
}

// The curl walk-through of docs/shop.md through nginx, with a session made on one
// replica used on the others: nothing request-related lives in a replica.
func TestTwoReplicasShareTheWorkBehindNginx(t *testing.T) {
	t.Parallel()
	c := startCluster(t, nil, "2")
	for _, name := range []string{"nginx", "replica-1", "replica-2", "worker"} {
		if _, _, _, state := c.status(name); state != "alive" {
			t.Fatalf("status: %s is %s", name, state)
		}
	}

	served := map[string]int{}
	for range 20 {
		served[c.must("GET", "/v1/items/1", "", nil, 200).replica]++
	}
	if served["replica-1"] == 0 || served["replica-2"] == 0 || len(served) != 2 {
		t.Fatalf("20 requests were served by %v, want both replicas", served)
	}

	menu := c.must("GET", "/v1/menu", "", nil, 200)
	if !json.Valid(menu.body) {
		t.Fatal("menu is not JSON")
	}
	journey := map[string]bool{}
	token := c.session()
	r := c.must("PUT", "/v1/cart/items/6", token, map[string]int{"quantity": 2}, 200)
	journey[r.replica] = true
	var cart struct {
		TotalCents int64 `json:"total_cents"`
	}
	json.Unmarshal(r.body, &cart)
	for range 4 { // the cart reads the same from every replica
		r := c.must("GET", "/v1/cart", token, nil, 200)
		journey[r.replica] = true
		if !bytes.Contains(r.body, []byte(`"item_id":6`)) {
			t.Fatalf("cart read from %s: %s", r.replica, r.body)
		}
	}
	r, err := c.do("POST", "/v1/orders", token, "walkthrough", map[string]any{
		"customer_name": "Ada Lovelace", "email": "ada@example.com", "expected_total_cents": cart.TotalCents,
	})
	if err != nil || r.status != 201 {
		t.Fatalf("checkout: %v %d %s", err, r.status, r.body)
	}
	var o order
	json.Unmarshal(r.body, &o)
	testwait.Eventually(t, 30*time.Second, func() error {
		r := c.must("GET", fmt.Sprintf("/v1/orders/%d", o.ID), token, nil, 200)
		journey[r.replica] = true
		json.Unmarshal(r.body, &o)
		if o.Status != "ready" {
			return fmt.Errorf("order %d is still %q: the worker did not take it", o.ID, o.Status)
		}
		return nil
	})
	if len(journey) != 2 {
		t.Fatalf("one session's journey was served by %v, want both replicas", journey)
	}
	c.must("PUT", "/v1/admin/items/6", adminToken, map[string]int{"price_cents": 1800}, 200)
	if r := c.must("GET", "/v1/items/6", "", nil, 200); !bytes.Contains(r.body, []byte(`"price_cents":1800`)) {
		t.Fatalf("the price change is not seen through nginx: %s", r.body)
	}
	if r := c.must("GET", "/v1/orders/999999", token, nil, 404); r.replica == "" {
		t.Fatal("a problem response names no replica")
	}
}

// A replica SIGKILLed in the middle of a checkout storm: clients retry what
// failed with the same Idempotency-Key, as the API asks of them; afterwards
// every acknowledged order exists exactly once. Once the kill is done, no
// request fails: the storm goes on until nginx has tried the dead replica
// again (its passive health check lets one request through after
// fail_timeout), and that request too must be answered, by the survivor.
func TestAReplicaKilledDuringACheckoutStormLosesNoAcknowledgedOrder(t *testing.T) {
	c := startCluster(t, nil, "2")
	const (
		shoppers       = 8
		killAfterAck   = 24 // acknowledged orders before the kill
		ordersPastKill = 5  // each shopper's orders begun after the kill, at least
	)
	_, deadURL, _, _ := c.status("replica-1")
	var (
		acked      atomic.Int64
		killed     = make(chan struct{})
		probed     = make(chan struct{}) // nginx tried the dead replica after the kill
		mu         sync.Mutex
		afterKill  = map[string]int{} // replica -> requests begun after the kill returned
		failsAfter []string
		shedAfter  int // answers a live replica shed on purpose (reply.shed)
		retries    atomic.Int64
		requestIDs atomic.Int64
	)
	tokens := make([]string, shoppers)
	for i := range tokens {
		tokens[i] = c.session()
	}
	// attempt sends a request until it gets an answer below 500, as a
	// client of the API should: a checkout again with its Idempotency-Key.
	// Requests begun after the kill carry an X-Request-Id nginx logs.
	attempt := func(send func(header ...string) (reply, error)) (reply, error) {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if !isClosed(killed) {
				r, err := send()
				if r.final(err) {
					return r, nil
				}
				retries.Add(1)
				time.Sleep(r.backoff()) // the client's backoff, not a synchronisation
				continue
			}
			r, err := send("X-Request-Id", fmt.Sprintf("after-kill-%d", requestIDs.Add(1)))
			mu.Lock()
			afterKill[r.replica]++
			switch {
			case err == nil && (r.shed() || r.status == http.StatusTooManyRequests):
				shedAfter++
			case err != nil || r.status >= 500:
				failsAfter = append(failsAfter, fmt.Sprintf("%v %d %s", err, r.status, r.body))
			}
			mu.Unlock()
			if r.final(err) {
				return r, nil
			}
			retries.Add(1)
			time.Sleep(r.backoff())
		}
		return reply{}, errors.New("no answer below 500 within 60s")
	}
	acknowledged := make([]map[int64]string, shoppers) // order id -> key, per shopper
	var wg sync.WaitGroup
	errs := make(chan error, shoppers)
	for s := range shoppers {
		acknowledged[s] = map[int64]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pastKill, deadline := 0, time.Now().Add(120*time.Second)
			for n := 0; pastKill < ordersPastKill || !isClosed(probed); n++ {
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("shopper %d: the storm ran 120s without the kill and a probe of the dead replica", s)
					return
				}
				if isClosed(killed) {
					pastKill++
				}
				key := fmt.Sprintf("storm-%d-%d", s, n)
				item := 1 + (s+n)%40
				r, err := attempt(func(header ...string) (reply, error) {
					return c.do("PUT", fmt.Sprintf("/v1/cart/items/%d", item), tokens[s], "", map[string]int{"quantity": 1}, header...)
				})
				if err != nil || r.status != 200 {
					errs <- fmt.Errorf("cart for %s: %v %d %s", key, err, r.status, r.body)
					return
				}
				r, err = attempt(func(header ...string) (reply, error) {
					return c.do("POST", "/v1/orders", tokens[s], key, map[string]any{"customer_name": "Storm", "email": "storm@example.com"}, header...)
				})
				if err != nil || (r.status != 201 && r.status != 200) {
					errs <- fmt.Errorf("checkout %s: %v %d %s", key, err, r.status, r.body)
					return
				}
				var o order
				if err := json.Unmarshal(r.body, &o); err != nil || o.ID == 0 {
					errs <- fmt.Errorf("checkout %s answered %s", key, r.body)
					return
				}
				acknowledged[s][o.ID] = key
				acked.Add(1)
			}
		}()
	}

	// The storm stops once nginx has been seen probing the dead replica,
	// or when a wait below fails.
	stopStorm := sync.OnceFunc(func() {
		close(probed)
		wg.Wait()
	})
	defer stopStorm()
	// The kill, once the storm is well under way (or a shopper failed).
	testwait.Eventually(t, 120*time.Second, func() error {
		if n := acked.Load(); n < killAfterAck && len(errs) == 0 {
			return fmt.Errorf("%d checkouts acknowledged, want %d before the kill", n, killAfterAck)
		}
		return nil
	})
	c.mustScript("kill-replica", "1")
	close(killed)
	// Wait for nginx to send a request begun after the kill to the dead
	// replica, as its access log shows.
	probe := ""
	testwait.Eventually(t, 60*time.Second, func() error {
		if len(errs) > 0 {
			return nil // reported below
		}
		log, _ := os.ReadFile(filepath.Join(c.state, "nginx-access.log"))
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "rid=after-kill-") && strings.Contains(line, strings.TrimPrefix(deadURL, "http://")) {
				probe = line
				return nil
			}
		}
		return errors.New("nginx has not tried the dead replica again since the kill")
	})
	stopStorm()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	t.Logf("nginx tried the dead replica: %s", probe)
	if len(failsAfter) > 0 {
		t.Errorf("%d requests begun after the kill failed, want nginx to route around it; first: %s", len(failsAfter), failsAfter[0])
	}
	if afterKill["replica-1"] > 0 || afterKill["replica-2"] == 0 {
		t.Errorf("requests begun after the kill were served by %v, want replica-2 only", afterKill)
	}
	t.Logf("%d orders acknowledged, %d attempts retried around the kill (%d after it shed by a live replica), after it served by %v",
		acked.Load(), retries.Load(), shedAfter, afterKill)

	// Exactly once: each shopper's own orders are exactly its acknowledged ones.
	for s := range shoppers {
		seen, stored := map[int64]int{}, 0
		for cursor := ""; ; {
			r := c.must("GET", "/v1/orders?limit=100"+cursor, tokens[s], nil, 200)
			var page struct {
				Orders     []order `json:"orders"`
				NextCursor string  `json:"next_cursor"`
			}
			if err := json.Unmarshal(r.body, &page); err != nil {
				t.Fatalf("orders of shopper %d: %v: %s", s, err, r.body)
			}
			for _, o := range page.Orders {
				seen[o.ID]++
				stored++
			}
			if page.NextCursor == "" {
				break
			}
			cursor = "&cursor=" + page.NextCursor
		}
		for id, key := range acknowledged[s] {
			if seen[id] != 1 {
				t.Errorf("acknowledged order %d (%s) is listed %d times", id, key, seen[id])
			}
		}
		if stored != len(acknowledged[s]) {
			t.Errorf("shopper %d: %d orders stored, %d acknowledged", s, stored, len(acknowledged[s]))
		}
	}
	if _, _, _, state := c.status("replica-1"); state != "dead" {
		t.Errorf("status says the killed replica is %s", state)
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// The worker killed while it mails a confirmation: the order stays placed
// while no worker runs, and the next worker confirms it, with one mail.
func TestAWorkerKilledMidJobIsTakenOverByTheNextOne(t *testing.T) {
	t.Parallel()
	// The first worker's mail provider takes 10 minutes, so the kill
	// certainly lands inside the job; its successor's answers at once.
	c := startCluster(t, map[string]string{"SHOP_MAIL_LATENCY": "10m", "SHOP_LOG_LEVEL": "info"}, "1")
	_, db := c.database()
	token := c.session()
	c.must("PUT", "/v1/cart/items/2", token, map[string]int{"quantity": 1}, 200)
	r, err := c.do("POST", "/v1/orders", token, "worker-kill", map[string]string{"customer_name": "Ada", "email": "ada@example.com"})
	if err != nil || r.status != 201 {
		t.Fatalf("checkout: %v %d %s", err, r.status, r.body)
	}
	var o order
	json.Unmarshal(r.body, &o)
	// Kill the worker once River has the job running.
	testwait.Eventually(t, 30*time.Second, func() error {
		if psqlURL(t, db, "SELECT count(*) FROM river_job WHERE state = 'running'") == "0" {
			return errors.New("the confirmation job is not running")
		}
		return nil
	})
	c.mustScript("kill-replica", "worker")
	json.Unmarshal(c.must("GET", fmt.Sprintf("/v1/orders/%d", o.ID), token, nil, 200).body, &o)
	if o.Status != "placed" {
		t.Fatalf("the worker was killed mid-mail, yet the order is %q, want placed", o.Status)
	}
	if out, errOut, err := c.scriptEnv([]string{"SHOP_MAIL_LATENCY=0s"}, "start-replica", "worker"); err != nil {
		t.Fatalf("start-replica worker: %v\n%s%s", err, out, errOut)
	}
	testwait.Eventually(t, 60*time.Second, func() error {
		json.Unmarshal(c.must("GET", fmt.Sprintf("/v1/orders/%d", o.ID), token, nil, 200).body, &o)
		if o.Status == "placed" {
			return fmt.Errorf("order %d still placed since a new worker started", o.ID)
		}
		return nil
	})
	if o.Status != "confirmed" && o.Status != "ready" {
		t.Fatalf("after the restart the order is %q", o.Status)
	}
	if n := psqlURL(t, db, fmt.Sprintf("SELECT count(*) FROM mail_outbox WHERE order_id = %d", o.ID)); n != "1" {
		t.Fatalf("%s confirmation mails for order %d, want 1", n, o.ID)
	}
}

// up --db-replica: a streaming read replica of the cluster's own server,
// read by the API replicas (not by the worker), serving the seeded menu as
// soon as up returns (the first process seeds the primary; the replicas
// used to start before the standby had replayed it, and one served an
// empty menu), and gone after down.
func TestReadReplicaServesTheAPIReplicasReads(t *testing.T) {
	t.Parallel()
	c := startCluster(t, nil, "1", "--db-replica")
	db, _ := c.database()
	replicaURL := c.statusValue("read replica")
	if got := psqlURL(t, replicaURL, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("%s is not a standby: pg_is_in_recovery() = %s", replicaURL, got)
	}
	// At once, no waiting: up returned only once every replica served it.
	if menu := c.must("GET", "/v1/menu", "", nil, 200); !bytes.Contains(menu.body, []byte(`"name":"Classic Margherita"`)) {
		t.Fatalf("menu through the cluster just after up: %.200s", menu.body)
	}
	for name, want := range map[string]bool{"replica-1": true, "worker": false} {
		pid, _, _, _ := c.status(name)
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Contains(cmdline, []byte("--db-replica\x00"+replicaURL)); got != want {
			t.Errorf("%s has --db-replica %s: %v, want %v", name, replicaURL, got, want)
		}
	}
	if n := psqlURL(t, replicaURL, "SELECT count(*) FROM pg_stat_activity WHERE datname = '"+db+"' AND pid <> pg_backend_pid()"); n == "0" {
		t.Fatal("no connection to the cluster's database on the standby: the API replica does not read there")
	}
	token := c.session()
	c.must("PUT", "/v1/cart/items/6", token, map[string]int{"quantity": 1}, 200)
	r, err := c.do("POST", "/v1/orders", token, "replica-1", map[string]string{"customer_name": "Ada", "email": "ada@example.com"})
	if err != nil || r.status != 201 {
		t.Fatalf("checkout: %v %d %s", err, r.status, r.body)
	}
	var o order
	json.Unmarshal(r.body, &o)
	c.must("GET", fmt.Sprintf("/v1/orders/%d", o.ID), token, nil, 200) // read-your-writes, whatever the lag

	standby, _, _, state := c.status("db-1-standby")
	if state != "alive" {
		t.Fatalf("db-1-standby is %s", state)
	}
	c.mustScript("down")
	if err := processGone(standby); err != nil {
		t.Errorf("the standby (pid %d) after down: %v", standby, err)
	}
	u := strings.TrimPrefix(replicaURL, "postgres://postgres@")
	if conn, err := net.DialTimeout("tcp", u[:strings.IndexByte(u, '/')], time.Second); err == nil {
		conn.Close()
		t.Errorf("the read replica still listens after down")
	}
}

func psqlURL(t *testing.T, url, query string) string {
	t.Helper()
	out, err := exec.Command("psql", "-X", "-tA", url, "-c", query).CombinedOutput()
	if err != nil {
		t.Fatalf("psql %s: %v: %s", url, err, out)
	}
	return strings.TrimSpace(string(out))
}

// up --pg-url keeps the cluster's database on an existing server (the
// machine's), as before the cluster had servers of its own. Two more
// things are proven on the same cluster: clusters started side by side
// can pick the same free port before either binds it (a fresh-clone CI run
// lost one this way: "bind: address already in use"), and the one that
// loses starts its process again on new ports, forced here by handing
// replica-1 a port this test holds; and behind nginx the service still
// sees each client's address, so the session rate limit applies per
// client, not to nginx as a whole. With --db-replica the read replica is
// one of the existing server (scripts/pg-replica.sh on a port of the
// cluster's), which the API replicas read and the worker does not. down
// drops the database and stops that replica, its directory gone.
func TestUpOnAnExistingServerAndAPortTakenMeanwhile(t *testing.T) {
	t.Parallel()
	requireServices(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	state := filepath.Join(t.TempDir(), "cluster")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	taken := ln.Addr().(*net.TCPAddr).Port
	rec := fmt.Sprintf(`{"name": "replica-1", "ports": {"http": %d}}`, taken)
	if err := os.WriteFile(filepath.Join(state, "replica-1.proc.json"), []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startClusterIn(t, state, map[string]string{"SHOP_SESSION_RATE": "0.001", "SHOP_SESSION_BURST": "2"},
		"1", "--pg-url", sharedServer, "--db-replica")
	if _, url, _, st := c.status("replica-1"); url == fmt.Sprintf("http://127.0.0.1:%d", taken) || st != "alive" {
		t.Fatalf("replica-1 at %s (%s); the port it was handed, %d, was taken", url, st, taken)
	}
	db, url := c.database()
	if !strings.Contains(url, "127.0.0.1:5432/"+db) {
		t.Fatalf("database %s at %s, want it on the existing server", db, url)
	}
	replicaURL := c.statusValue("read replica")
	if strings.Contains(replicaURL, ":5432/") || !strings.Contains(replicaURL, "/"+db) {
		t.Fatalf("read replica %s, want the cluster's database on a standby of its own port", replicaURL)
	}
	if got := psqlURL(t, replicaURL, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("%s is not a standby: pg_is_in_recovery() = %s", replicaURL, got)
	}
	for name, want := range map[string]bool{"replica-1": true, "worker": false} {
		pid, _, _, _ := c.status(name)
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Contains(cmdline, []byte("--db-replica\x00"+replicaURL)); got != want {
			t.Errorf("%s has --db-replica %s: %v, want %v", name, replicaURL, got, want)
		}
	}
	if menu := c.must("GET", "/v1/menu", "", nil, 200); !bytes.Contains(menu.body, []byte(`"name":"Classic Margherita"`)) {
		t.Fatalf("menu through the cluster on the standby: %.200s", menu.body)
	}
	var replicaDir string
	if b, err := os.ReadFile(filepath.Join(state, "cluster.json")); err == nil {
		var cfg struct {
			Databases []struct {
				PGReplicaDir string `json:"pg_replica_dir"`
			} `json:"databases"`
		}
		if json.Unmarshal(b, &cfg) == nil && len(cfg.Databases) > 0 {
			replicaDir = cfg.Databases[0].PGReplicaDir
		}
	}
	newSession := func(client string) int {
		r, err := c.do("POST", "/v1/sessions", "", "", nil, "X-Forwarded-For", client)
		if err != nil {
			t.Fatal(err)
		}
		return r.status
	}
	for i, want := range []int{201, 201, 429} {
		if got := newSession("203.0.113.5"); got != want {
			t.Fatalf("session %d of client 203.0.113.5: %d, want %d", i+1, got, want)
		}
	}
	if got := newSession("198.51.100.7"); got != 201 {
		t.Fatalf("first session of another client behind the same nginx: %d, want 201", got)
	}
	c.mustScript("down")
	if exists := psqlURL(t, sharedServer, "SELECT count(*) FROM pg_database WHERE datname = '"+db+"'"); exists != "0" {
		t.Errorf("database %s still exists after down", db)
	}
	u := strings.TrimPrefix(replicaURL, "postgres://postgres@")
	if conn, err := net.DialTimeout("tcp", u[:strings.IndexByte(u, '/')], time.Second); err == nil {
		conn.Close()
		t.Errorf("the read replica still listens after down")
	}
	if replicaDir == "" {
		t.Error("the cluster's state names no directory of scripts/pg-replica.sh")
	} else if _, err := os.Stat(replicaDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the read replica's directory %s is left after down (%v)", replicaDir, err)
	}
}

// statusValue is what status prints after "key: " on a line of its own.
func (c *cluster) statusValue(key string) string {
	c.t.Helper()
	out := c.mustScript("status")
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, key+": "); ok {
			return v
		}
	}
	c.t.Fatalf("status has no %q line:\n%s", key, out)
	return ""
}

// database is the cluster's database as status prints it:
// "database: NAME (URL)".
func (c *cluster) database() (name, url string) {
	c.t.Helper()
	v := c.statusValue("database")
	name, url, ok := strings.Cut(v, " (")
	if !ok || !strings.HasSuffix(url, ")") {
		c.t.Fatalf("status: database: %s, want NAME (URL)", v)
	}
	return name, strings.TrimSuffix(url, ")")
}

// down stops exactly what up started: no process left (the database
// server with its backends included), no cgroup, no data directory, no
// NATS stream, no Redis key; and a second down is harmless.
func TestDownLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	c := startCluster(t, nil, "1", "--cpu", "0.5", "--db-cpu", "0.5")
	type proc struct {
		name string
		pid  int
	}
	var procs []proc
	for _, name := range []string{"nginx", "replica-1", "worker", "db-1"} {
		pid, _, cpu, state := c.status(name)
		if state != "alive" {
			t.Fatalf("%s is %s before down", name, state)
		}
		if (name == "replica-1" || name == "db-1") && cpu != "0.50" {
			t.Fatalf("%s has a CPU quota of %s cores, want 0.50", name, cpu)
		}
		procs = append(procs, proc{name, pid})
	}
	cgroups := map[string]string{}
	for _, name := range []string{"replica-1", "db-1"} {
		var rec struct{ Cgroup string }
		b, err := os.ReadFile(filepath.Join(c.state, name+".proc.json"))
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil || rec.Cgroup == "" {
			t.Fatalf("%s's record names no cgroup: %v %s", name, err, b)
		}
		cgroups[name] = rec.Cgroup
	}
	// The quota'd processes' parent group has the highest CPU weight, so
	// that on a contended machine each gets its quota as a small server of
	// its own would, not a share of one thread's weight beside every
	// process outside a cgroup.
	parent := filepath.Dir(cgroups["db-1"])
	weight, err := os.ReadFile(filepath.Join(parent, "cpu.shares"))
	want := "102400"
	if errors.Is(err, os.ErrNotExist) {
		weight, err = os.ReadFile(filepath.Join(parent, "cpu.weight"))
		want = "10000"
	}
	if got := strings.TrimSpace(string(weight)); err != nil || got != want {
		t.Errorf("the cluster's parent cgroup %s has a CPU weight of %q (%v), want %s", parent, got, err, want)
	}
	// Each process runs in its cgroup; the database server's backends
	// (its children) with it.
	for i, name := range []string{"replica-1", "db-1"} {
		members, err := os.ReadFile(filepath.Join(cgroups[name], "cgroup.procs"))
		if err != nil || !strings.Contains("\n"+string(members), fmt.Sprintf("\n%d\n", procs[i*2+1].pid)) {
			t.Fatalf("%s (pid %d) is not in its cgroup %s: %q %v", name, procs[i*2+1].pid, cgroups[name], members, err)
		}
	}
	dbName, dbURL := c.database()
	if n := psqlURL(t, dbURL, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"); n != "1" {
		t.Errorf("pg_stat_statements is not created in the cluster's database")
	}
	if av := psqlURL(t, dbURL, "SHOW autovacuum"); av != "on" {
		t.Errorf("autovacuum is %s on the cluster's server", av)
	}
	// The migrations' dead catalog rows are vacuumed by up, not by the
	// first autovacuum cycle in the middle of a measurement.
	if v := psqlURL(t, dbURL, "SELECT count(*) FROM pg_stat_sys_tables WHERE relname IN ('pg_attribute', 'pg_class', 'pg_depend') AND last_vacuum IS NOT NULL"); v != "3" {
		t.Errorf("%s of pg_attribute, pg_class and pg_depend were vacuumed by up, want 3", v)
	}
	// The service's tables are not: vacuumed empty, they read as empty to
	// the planner, and its generic plans then scan order lines whole.
	if v := psqlURL(t, dbURL, "SELECT coalesce(string_agg(relname, ', ' ORDER BY relname), '') FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL OR last_analyze IS NOT NULL"); v != "" {
		t.Errorf("up vacuumed or analyzed the service's own tables (%s), want none: they would read as empty", v)
	}
	stream := strings.ToUpper(dbName) + "_ORDERS"
	if !streamExists(t, stream) {
		t.Fatalf("the cluster's order events stream %s does not exist before down", stream)
	}
	c.session() // a session, and the menu below, are Redis keys of the cluster
	c.must("GET", "/v1/menu", "", nil, 200)
	prefix := "shop:" + dbName + ":"
	if keys := redisKeys(t, prefix); len(keys) == 0 {
		t.Fatalf("no Redis keys %s* before down", prefix)
	}
	// nginx's workers and the server's backends are not recorded: they
	// must go with their parents.
	for _, p := range []proc{procs[0], procs[3]} {
		kids := children(t, p.pid)
		if len(kids) == 0 {
			t.Fatalf("%s (pid %d) has no child processes", p.name, p.pid)
		}
		for _, pid := range kids {
			procs = append(procs, proc{p.name + " child", pid})
		}
	}

	// The server's data directory: in the state directory, or (the state
	// directory under a private one, as here) one of its own it records.
	var made struct{ External []string }
	if b, err := os.ReadFile(filepath.Join(c.state, "cluster.json")); err != nil || json.Unmarshal(b, &made) != nil {
		t.Fatalf("cluster.json: %v", err)
	}

	out := c.mustScript("down")
	if !strings.Contains(out, "stopped") {
		t.Fatalf("down said %q", out)
	}
	for _, dir := range made.External {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the server's data directory %s after down: %v", dir, err)
		}
	}
	for _, p := range procs {
		if err := processGone(p.pid); err != nil {
			t.Errorf("%s (pid %d) after down: %v", p.name, p.pid, err)
		}
	}
	if _, err := os.Stat(filepath.Dir(cgroups["db-1"])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup %s after down: %v", filepath.Dir(cgroups["db-1"]), err)
	}
	if streamExists(t, stream) {
		t.Errorf("NATS stream %s still exists after down (JetStream keeps its storage reserved)", stream)
	}
	if keys := redisKeys(t, prefix); len(keys) > 0 {
		t.Errorf("Redis keys of the cluster after down: %v", keys)
	}
	if _, err := os.Stat(c.state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory after down: %v", err)
	}
	if out := c.mustScript("down"); !strings.Contains(out, "no cluster") {
		t.Errorf("a second down said %q", out)
	}
}

// redisKeys lists the shared Redis's keys under prefix.
func redisKeys(t *testing.T, prefix string) []string {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	keys, _, err := rdb.Scan(t.Context(), 0, prefix+"*", 100000).Result()
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	return keys
}

// A database server that fails to start fails up with a one-line reason,
// and up leaves nothing behind: no process, cgroup or state directory.
// The server binary here is a stand-in that fails as a real one does
// (shared memory refused); initdb is the real one. Not parallel: it
// counts the clusters' cgroups, which the other tests make.
func TestUpFailsCleanlyWhenTheDatabaseServerDoesNotStart(t *testing.T) {
	requireServices(t)
	real, err := pgserver.Bin()
	if err != nil {
		t.Fatal(err)
	}
	// Not under t.TempDir (0700): the server runs as the postgres user.
	bin, err := os.MkdirTemp("", "clustertest-pgbin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	os.Chmod(bin, 0o755)
	for _, tool := range []string{"initdb", "pg_basebackup"} {
		if err := os.Symlink(filepath.Join(real, tool), filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	fake := "#!/bin/sh\necho 'FATAL:  could not create shared memory segment: No space left on device' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "postgres"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	shop, clusterBin := build(t, repoRoot(t))
	c := &cluster{t: t, root: repoRoot(t), state: filepath.Join(t.TempDir(), "cluster"),
		env: append(os.Environ(), "PERFSCALE_PG_BIN="+bin, "PERFSCALE_CLUSTER_SHOP="+shop, "PERFSCALE_CLUSTER_BIN="+clusterBin)}
	before := perfscaleCgroups(t)
	_, stderr, err := c.script("up", "1", "--cpu", "0.5", "--db-cpu", "0.5")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("up with a failing server: %v, want exit 1\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "db-1 exited while starting") || !strings.Contains(last, "could not create shared memory segment") {
		t.Errorf("the last line of up's errors: %q, want the server's reason", last)
	}
	if _, err := os.Stat(c.state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state directory after a failed up: %v", err)
	}
	if after := perfscaleCgroups(t); len(after) != len(before) {
		t.Errorf("cgroups before %v, after a failed up %v", before, after)
	}
}

// perfscaleCgroups lists the clusters' parent cgroups present now.
func perfscaleCgroups(t *testing.T) []string {
	t.Helper()
	h, err := supervise.CPUHierarchy()
	if err != nil {
		return nil
	}
	dirs, _ := filepath.Glob(filepath.Join(h.Root, "perfscale-cluster-*"))
	return dirs
}

// children lists the pids whose parent is pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			kids = append(kids, child)
		}
	}
	return kids
}

// processGone reports whether pid no longer runs (a zombie counts as gone).
func processGone(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) > 0 && f[0] == "Z" {
		return nil
	}
	return fmt.Errorf("still runs: %s", b)
}

// Bad arguments get a one-line reason and a non-zero exit, and start nothing.
func TestBadArgumentsAreRefused(t *testing.T) {
	_, bin := build(t, repoRoot(t))
	c := &cluster{t: t, root: repoRoot(t), state: filepath.Join(t.TempDir(), "cluster"), env: append(os.Environ(), "PERFSCALE_CLUSTER_BIN="+bin)}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"up"}, "number of API replicas"},
		{[]string{"up", "0"}, "number of API replicas"},
		{[]string{"up", "two"}, "number of API replicas"},
		{[]string{"up", "2", "--cpu", "lots"}, "--cpu must be a number"},
		{[]string{"up", "2", "--cpu", "0.001"}, "at least 0.01"},
		{[]string{"up", "2", "--cpu"}, "--cpu needs"},
		{[]string{"up", "2", "--turbo"}, "unknown option --turbo"},
		{[]string{"scale", "3"}, "unknown command 'scale'"},
		{[]string{"kill-replica"}, "replica number"},
		{[]string{"kill-replica", "x"}, "replica number"},
		{[]string{"kill-replica", "1"}, "no cluster"},
		{[]string{"status", "now"}, "takes no argument"},
		{[]string{"down", "--cpu", "1"}, "belong to up"},
		{[]string{"status", "--db-cpu", "1"}, "belong to up"},
		{[]string{"up", "1", "--db-cpu", "half"}, "--db-cpu must be a number"},
		{[]string{"up", "1", "--db-cpu", "0"}, "at least 0.01"},
		{[]string{"up", "1", "--pg-url", "mysql://db"}, "--pg-url must be a postgres:// URL"},
		{[]string{"up", "1", "--pg-url", sharedServer, "--db-cpu", "1"}, "with --pg-url there is none"},
		{[]string{"up", "1", "--shards", "0"}, "--shards must be a whole number from 1 to 16"},
		{[]string{"up", "1", "--shards", "17"}, "--shards must be a whole number from 1 to 16"},
		{[]string{"up", "1", "--shards", "two"}, "--shards must be a whole number"},
		{[]string{"up", "1", "--shards"}, "--shards needs"},
		{[]string{"up", "1", "--shards", "2", "--pg-url", sharedServer}, "--pg-url is given once per shard"},
		{[]string{"up", "1", "--shards", "2", "--db-replica"}, "--db-replica with --shards above 1 is not built"},
		{[]string{"status", "--shards", "2"}, "belong to up"},
		{[]string{"kill-db"}, "database server number"},
		{[]string{"start-db", "x"}, "database server number"},
		{[]string{"kill-db", "1"}, "no cluster"},
		{[]string{"add-shard"}, "no cluster"},
		{[]string{"add-shard", "3"}, "add-shard takes no argument"},
		{[]string{"add-shard", "--shards", "3"}, "belong to up"},
		{[]string{"add-shard", "--db-cpu", "1"}, "belong to up"},
		// pgx's error spans lines: up's is one, the reason included.
		{[]string{"up", "1", "--pg-url", "postgres://postgres@127.0.0.1:1/postgres"}, "connection refused (scripts/services.sh starts"},
	} {
		_, stderr, err := c.script(tt.args...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Errorf("%v: exit %v, want non-zero", tt.args, err)
		}
		first := strings.SplitN(stderr, "\n", 2)[0]
		if !strings.Contains(first, tt.want) {
			t.Errorf("%v: first line of stderr %q, want it to mention %q", tt.args, first, tt.want)
		}
		if _, err := os.Stat(c.state); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%v created the state directory", tt.args)
		}
	}
}

// TestOrderEventsStreamThroughNginx: an order's event stream reaches the
// client through nginx as each event happens, not when the stream ends.
// The worker's mail provider takes 5 s, so the order stays placed that long:
// the "placed" event must arrive while the order is still placed (a proxy
// holding the stream back would deliver it after "ready"); then
// "confirmed" and "ready" follow and the server ends the stream. Tried
// with proxy_buffering on and X-Accel-Buffering ignored, nginx still
// passed each flushed event at once, so this proves the stream end to end,
// not that one setting.
func TestOrderEventsStreamThroughNginx(t *testing.T) {
	t.Parallel()
	c := startCluster(t, map[string]string{"SHOP_MAIL_LATENCY": "5s"}, "1")
	token := c.session()
	c.must("PUT", "/v1/cart/items/2", token, map[string]int{"quantity": 1}, 200)
	r, err := c.do("POST", "/v1/orders", token, "sse-through-nginx", map[string]string{"customer_name": "Ada", "email": "ada@example.com"})
	if err != nil || r.status != 201 {
		t.Fatalf("checkout: %v %d %s", err, r.status, r.body)
	}
	var o order
	json.Unmarshal(r.body, &o)
	path := fmt.Sprintf("/v1/orders/%d", o.ID)

	req, err := http.NewRequest("GET", c.url+path+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	res, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); res.StatusCode != 200 || !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("events: %d %q, want 200 text/event-stream", res.StatusCode, ct)
	}
	var statuses []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var e struct{ Status string }
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			t.Fatalf("event data %q: %v", data, err)
		}
		statuses = append(statuses, e.Status)
		if len(statuses) == 1 {
			var now order
			json.Unmarshal(c.must("GET", path, token, nil, 200).body, &now)
			if now.Status != "placed" {
				t.Fatalf("the first event (%s) arrived when the order was already %s: the stream was held back", e.Status, now.Status)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the stream: %v (events so far %v)", err, statuses)
	}
	if got := strings.Join(statuses, ","); got != "placed,confirmed,ready" {
		t.Fatalf("events %s, want placed,confirmed,ready and the end of the stream", got)
	}
}

// streamExists asks the shared NATS server whether a JetStream stream of
// that name exists.
func streamExists(t *testing.T, name string) bool {
	t.Helper()
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("nats: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return false
	case err != nil:
		t.Fatalf("stream %s: %v", name, err)
	}
	return true
}

// up on a running cluster rescales it: to more replicas and back to fewer
// on the same database, worker, nginx and shop binary (nothing rebuilt),
// nginx sending to exactly the replicas that run; a new --cpu restarts
// the replicas under the new quota. The URL stays the one printed first.
func TestUpOnARunningClusterRescalesIt(t *testing.T) {
	t.Parallel()
	c := startCluster(t, nil, "1", "--cpu", "0.5")
	database, _ := c.database()
	nginxPID, _, _, _ := c.status("nginx")
	worker, _, _, _ := c.status("worker")
	binary, err := os.Stat(filepath.Join(c.state, "shop"))
	if err != nil {
		t.Fatal(err)
	}
	// served asks enough times that least_conn reaches every upstream,
	// and returns the replicas that answered. The requests carry a
	// session: nginx's edge cache answers the menu and item pages itself
	// (with the X-Replica of the replica that filled it) unless a request
	// has an Authorization header.
	token := c.session()
	served := func() map[string]bool {
		seen := map[string]bool{}
		for range 40 {
			r := c.must("GET", "/v1/items/1", token, nil, http.StatusOK)
			seen[r.replica] = true
		}
		return seen
	}
	steps := []struct {
		args     []string
		replicas int
		cpu      string
	}{
		{[]string{"up", "3", "--cpu", "0.5"}, 3, "0.50"},
		{[]string{"up", "2", "--cpu", "0.25"}, 2, "0.25"},
	}
	for _, step := range steps {
		before, _, _, _ := c.status("replica-1")
		out := c.mustScript(step.args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if url := lines[len(lines)-1]; url != c.url {
			t.Fatalf("%v printed %q last, want the same URL %q", step.args, url, c.url)
		}
		for i := 1; i <= step.replicas; i++ {
			_, _, cpu, state := c.status(fmt.Sprintf("replica-%d", i))
			if state != "alive" || cpu != step.cpu {
				t.Fatalf("%v: replica-%d is %s at %s cores, want alive at %s", step.args, i, state, cpu, step.cpu)
			}
		}
		if status := c.mustScript("status"); strings.Contains(status, fmt.Sprintf("replica-%d ", step.replicas+1)) {
			t.Fatalf("%v: status still lists replica-%d:\n%s", step.args, step.replicas+1, status)
		}
		if after, _, _, _ := c.status("replica-1"); step.cpu == "0.25" && after == before {
			t.Fatalf("%v: replica-1 kept its process (%d) under a new quota", step.args, after)
		}
		// up returns once nginx serves from its new configuration alone
		// (its reload is asynchronous: up waits for it), so every replica
		// answers at once.
		if seen := served(); len(seen) != step.replicas {
			t.Fatalf("%v: right after up, answered by %v, want %d replicas", step.args, seen, step.replicas)
		}
	}
	if p, _, _, _ := c.status("nginx"); p != nginxPID {
		t.Errorf("nginx restarted (%d, was %d): want it reloaded", p, nginxPID)
	}
	if p, _, _, _ := c.status("worker"); p != worker {
		t.Errorf("the worker restarted (%d, was %d)", p, worker)
	}
	if db, _ := c.database(); db != database {
		t.Errorf("database %s, was %s: want the same", db, database)
	}
	if now, err := os.Stat(filepath.Join(c.state, "shop")); err != nil || !now.ModTime().Equal(binary.ModTime()) {
		t.Errorf("the shop binary was replaced while rescaling (%v)", err)
	}
	if _, errOut, err := c.script("up", "2", "--db-replica"); err == nil || !strings.Contains(errOut, "--db-replica cannot change") {
		t.Errorf("up --db-replica on a running cluster without one: %v %s", err, errOut)
	}
}
