package clustertest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/internal/toxitest"
	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/nats/natstest"
	"github.com/perfscale/perfscale/shop/redis/redistest"
	"github.com/perfscale/perfscale/shop/shard"
)

// The fault matrix (issue 19 part 5): a cluster of two replicas whose
// PostgreSQL, Redis and NATS are reached through Toxiproxy (in this
// process), Redis and NATS servers of the test's own (so they can be
// killed), one checkout storm through nginx with two browsers whose reads
// the read replica serves, and one fault after another: each of 1 s
// latency, connections reset, a blackhole for 10 s and a bandwidth of
// 8 KB/s between the replicas and each service; latency, reset and a
// blackhole between the replicas and the read replica (a standby of the
// matrix's PostgreSQL); kill -9 of a replica, the worker, PostgreSQL (a
// server of a second cluster's own, with its backends), its standby,
// Redis and NATS (started again 5 s later); the standby paused (SIGSTOP,
// 10 s); and an nginx reload. Per fault: the storm's failed tries by status while it
// lasted, the longest try, and the time from the fault's end to the last
// failure after it (recovery). At the end, the checker of the fault proof
// (checkShards) reads the database: every acknowledged order exists exactly
// once, stock taken = quantities ordered, every order confirmed exactly
// once and ready.
//
// On shards (PERFSCALE_FAULTS_SHARDS=S): every shard's server is a
// cluster's own behind a proxy of its own; the four toxics hurt shard 1
// alone, kill -9 each shard's server in turn, and each row counts every
// shard's sessions' tries apart, so it shows whether the other shards'
// customers were served while one shard was hurt.
//
// It runs only when asked: PERFSCALE_FAULTS=all (scripts/faults.sh, which
// writes docs/reliability.md's table) or a comma-separated list of fault
// names; PERFSCALE_FAULTS_OUT names a file for the table.
func TestFaultMatrix(t *testing.T) {
	which := os.Getenv("PERFSCALE_FAULTS")
	if which == "" {
		t.Skip("the fault matrix runs with PERFSCALE_FAULTS=all or a list of faults (scripts/faults.sh); CI's time has no room for it")
	}
	if which != "all" && !slices.ContainsFunc(strings.Split(which, ","), func(name string) bool {
		return !slices.Contains(otherTestsFaults, strings.TrimSpace(name))
	}) {
		t.Skip("PERFSCALE_FAULTS names no fault of the cluster's")
	}
	requireServices(t)
	rds, nts := redistest.Start(t), natstest.Start(t)
	shards := faultShards(t)
	const (
		shoppers  = 6
		browsers  = 2
		scarce    = 3
		items     = 8
		scarceQty = 40
	)
	var c, dbc *cluster
	var tox *toxitest.Proxies
	if shards == 1 {
		c, dbc, tox = unshardedFaultCluster(t, rds, nts)
	} else {
		c, dbc, tox = shardedFaultCluster(t, rds, nts, shards)
	}
	_, urls := c.databases()
	for id := 1; id <= items; id++ {
		stock := 100000
		if id <= scarce {
			stock = scarceQty
		}
		c.must("PUT", fmt.Sprintf("/v1/admin/items/%d", id), adminToken, map[string]int{"stock": stock}, 200)
	}
	initial := stockBefore(t, urls, scarce, scarceQty)

	faults := faultList(t, c, dbc, tox, rds, nts, shards)
	if which != "all" {
		var chosen []fault
		for _, name := range strings.Split(which, ",") {
			name = strings.TrimSpace(name)
			i := slices.IndexFunc(faults, func(f fault) bool { return f.name == name })
			switch {
			case slices.Contains(otherTestsFaults, name):
			case i < 0:
				t.Fatalf("PERFSCALE_FAULTS: no fault %q", name)
			default:
				chosen = append(chosen, faults[i])
			}
		}
		if len(chosen) == 0 {
			t.Skip("PERFSCALE_FAULTS names no fault of the cluster's")
		}
		faults = chosen
	}

	obs := observations{shardOf: shardOfSession(t, shards)}
	// Shopper i's session is on shard i mod S + 1, so a killed or
	// poisoned shard holds some of them and the others none.
	s := startStorm(c, sessionsOverShards(c, shoppers, shards), items, obs.add)
	defer s.stop()
	for range browsers {
		s.browse(c.session())
	}
	s.underWay(t, stormUnderWay) // before the first fault
	var rows []faultRow
	for _, f := range faults {
		if err := s.failed(); err != nil {
			t.Fatalf("before %s: %v", f.name, err)
		}
		rows = append(rows, runFault(t, f, &obs))
		t.Logf("%s", rows[len(rows)-1])
	}
	s.stop()
	if err := s.failed(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d orders acknowledged, %d refused as out of stock, %d tries failed and were retried",
		s.acked.Load(), s.soldOut.Load(), s.failures.Load())
	checkShards(t, urls, initial, s.orders())
	table := faultTable(rows, s, shards, !t.Failed())
	t.Logf("\n%s", table)
	appendTable(t, table)
}

// otherTestsFaults are the faults PERFSCALE_FAULTS may name that other
// tests run: TestDiskFullOnTheEmbeddedDefault's and
// TestAddShardKilledAtEachStepAndRunAgainLosesNoOrder's.
var otherTestsFaults = []string{"disk full", "add-shard killed"}

// faultShards is the number of shards the matrix's cluster runs on:
// PERFSCALE_FAULTS_SHARDS (scripts/faults.sh --shards), or 1, one
// PostgreSQL server with a read replica.
func faultShards(t *testing.T) int {
	v := os.Getenv("PERFSCALE_FAULTS_SHARDS")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("PERFSCALE_FAULTS_SHARDS=%q: want a number of shards, 1 or more", v)
	}
	return n
}

func redisHost(rds *redistest.Server) string {
	return strings.TrimSuffix(strings.TrimPrefix(rds.URL(), "redis://"), "/0")
}

func natsHost(nts *natstest.Server) string { return strings.TrimPrefix(nts.URL(), "nats://") }

// unshardedFaultCluster is the matrix's cluster on one database: its
// PostgreSQL is a server of a cluster's own (dbc), with a streaming
// standby (the read replica), so that both can be killed (cluster.sh
// kill-db 1, kill-db standby) and started again without touching the
// machine's shared server; dbc's replica and worker are not used and are
// stopped at once. The cluster (c) reaches both, Redis and NATS through
// Toxiproxy (tox).
func unshardedFaultCluster(t *testing.T, rds *redistest.Server, nts *natstest.Server) (c, dbc *cluster, tox *toxitest.Proxies) {
	t.Helper()
	dbc = startCluster(t, nil, "1", "--db-replica")
	dbc.mustScript("kill-replica", "1")
	dbc.mustScript("kill-replica", "worker")
	_, dbURLs := dbc.databases()
	server, err := url.Parse(dbURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	standby, err := url.Parse(dbc.statusValue("read replica"))
	if err != nil {
		t.Fatal(err)
	}
	tox = toxitest.New(t, map[string]string{
		"postgres": server.Host,
		"standby":  standby.Host,
		"redis":    redisHost(rds),
		"nats":     natsHost(nts),
	})
	c = startCluster(t, map[string]string{
		"SHOP_REDIS_URL": "redis://" + tox.Addr("redis") + "/0",
		"SHOP_NATS_URL":  "nats://" + tox.Addr("nats"),
	}, "2", "--pg-url", "postgres://postgres@"+tox.Addr("postgres")+"/postgres",
		"--pg-replica-url", "postgres://postgres@"+tox.Addr("standby")+"/postgres")
	return c, dbc, tox
}

// shardedFaultCluster is the matrix's cluster on shards: each shard's
// PostgreSQL is a server of a cluster's own (dbc, up 1 --shards S, whose
// replica and worker are stopped at once), so that kill-db K crashes
// shard K's server; the matrix's cluster (c, up 2 --shards S with a
// --pg-url per shard) reaches every shard's server, Redis and NATS
// through Toxiproxy (tox: proxies "shard1".."shardS", "redis", "nats").
func shardedFaultCluster(t *testing.T, rds *redistest.Server, nts *natstest.Server, shards int) (c, dbc *cluster, tox *toxitest.Proxies) {
	t.Helper()
	dbc = startCluster(t, nil, "1", "--shards", strconv.Itoa(shards))
	dbc.mustScript("kill-replica", "1")
	dbc.mustScript("kill-replica", "worker")
	_, dbURLs := dbc.databases()
	upstreams := map[string]string{"redis": redisHost(rds), "nats": natsHost(nts)}
	for k, u := range dbURLs {
		server, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		upstreams[shardProxy(k+1)] = server.Host
	}
	tox = toxitest.New(t, upstreams)
	args := []string{"2", "--shards", strconv.Itoa(shards)}
	for k := 1; k <= shards; k++ {
		args = append(args, "--pg-url", "postgres://postgres@"+tox.Addr(shardProxy(k))+"/postgres")
	}
	c = startCluster(t, map[string]string{
		"SHOP_REDIS_URL": "redis://" + tox.Addr("redis") + "/0",
		"SHOP_NATS_URL":  "nats://" + tox.Addr("nats"),
	}, args...)
	return c, dbc, tox
}

// shardProxy is the Toxiproxy proxy in front of shard k's server.
func shardProxy(k int) string { return "shard" + strconv.Itoa(k) }

// shardOfSession is the shard of a session token on a cluster of shards
// (the balanced map, which the matrix never changes); nil on one.
func shardOfSession(t *testing.T, shards int) func(token string) int {
	if shards < 2 {
		return nil
	}
	m, err := shard.Balanced(shards)
	if err != nil {
		t.Fatal(err)
	}
	return func(token string) int {
		b, err := shard.BucketOfTokenHash(shop.HashToken(token))
		if err != nil {
			return 0
		}
		return m.Owner(b) + 1
	}
}

// appendTable adds a table to the file PERFSCALE_FAULTS_OUT names, if any.
func appendTable(t *testing.T, table string) {
	out := os.Getenv("PERFSCALE_FAULTS_OUT")
	if out == "" {
		return
	}
	f, err := os.OpenFile(out, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err == nil {
		_, err = f.WriteString(table + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Error(err)
	}
}

// fault is one row of the matrix: inject starts it, heal ends it (nil:
// the fault is over when inject returns).
type fault struct {
	name, target string
	inject, heal func()
	hold         time.Duration // between inject and heal
}

func faultList(t *testing.T, c, dbc *cluster, tox *toxitest.Proxies, rds *redistest.Server, nts *natstest.Server, shards int) []fault {
	var fs []fault
	type proxied struct{ name, proxy string }
	targets := []proxied{{"postgres", "postgres"}, {"standby", "standby"}, {"redis", "redis"}, {"nats", "nats"}}
	if shards > 1 {
		// One shard hurt, the others' customers served meanwhile.
		targets = []proxied{{"shard 1", shardProxy(1)}, {"redis", "redis"}, {"nats", "nats"}}
	}
	for _, target := range targets {
		for _, tx := range []struct {
			name, kind string
			attrs      string
		}{
			{"latency 1 s", "latency", `{"latency": 1000}`},
			{"reset", "reset_peer", `{"timeout": 0}`},
			{"blackhole", "timeout", `{"timeout": 0}`},
			{"bandwidth 8 KB/s", "bandwidth", `{"rate": 8}`},
		} {
			if target.name == "standby" && tx.kind == "bandwidth" {
				continue // a slow replica is the latency row's
			}
			fs = append(fs, fault{
				name: target.name + " " + tx.name, target: target.name, hold: 10 * time.Second,
				inject: func() { tox.Add(t, target.proxy, tx.kind, tx.attrs) },
				heal:   func() { tox.Remove(t, target.proxy) },
			})
		}
	}
	restartAfter := 5 * time.Second
	fs = append(fs,
		fault{name: "kill -9 replica", target: "replica-1", hold: restartAfter,
			inject: func() { c.mustScript("kill-replica", "1") }, heal: func() { c.mustScript("start-replica", "1") }},
		fault{name: "kill -9 worker", target: "worker", hold: restartAfter,
			inject: func() { c.mustScript("kill-replica", "worker") }, heal: func() { c.mustScript("start-replica", "worker") }},
	)
	fs = append(fs, databaseKills(t, dbc, shards, restartAfter)...)
	fs = append(fs,
		fault{name: "kill -9 redis", target: "redis", hold: restartAfter, inject: rds.Kill, heal: rds.Start},
		fault{name: "kill -9 nats", target: "nats", hold: restartAfter, inject: nts.Kill, heal: nts.Start},
		fault{name: "nginx reload", target: "nginx", inject: func() {
			pid, _, _, _ := c.status("nginx")
			if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
				t.Errorf("nginx reload: %v", err)
			}
		}},
	)
	return fs
}

// databaseKills are the database servers' faults: kill -9 of PostgreSQL,
// of its standby and the standby paused on one database; kill -9 of each
// shard's server on several.
func databaseKills(t *testing.T, dbc *cluster, shards int, restartAfter time.Duration) []fault {
	kill := func(name, server string) fault {
		// The server with its backends, at once, as a crash would; it
		// replays its WAL when started again.
		return fault{name: name, target: name, hold: restartAfter,
			inject: func() { dbc.mustScript("kill-db", server) }, heal: func() { dbc.mustScript("start-db", server) }}
	}
	if shards > 1 {
		var fs []fault
		for k := 1; k <= shards; k++ {
			fs = append(fs, kill(fmt.Sprintf("kill -9 shard %d", k), strconv.Itoa(k)))
		}
		return fs
	}
	return []fault{
		kill("kill -9 postgres", "1"),
		kill("kill -9 standby", "standby"),
		// The standby's postmaster and every process of it stopped: it
		// accepts connections (the kernel does) and answers nothing.
		{name: "standby paused", target: "standby", hold: 10 * time.Second,
			inject: func() { signalServer(t, dbc, "db-1-standby", syscall.SIGSTOP) },
			heal:   func() { signalServer(t, dbc, "db-1-standby", syscall.SIGCONT) }},
	}
}

// signalServer sends sig to a database server of c's and to each of its
// processes (the postmaster's children).
func signalServer(t *testing.T, c *cluster, name string, sig syscall.Signal) {
	t.Helper()
	pid, _, _, _ := c.status(name)
	pids := []int{pid}
	if children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
		for _, f := range strings.Fields(string(children)) {
			if child, err := strconv.Atoi(f); err == nil {
				pids = append(pids, child)
			}
		}
	}
	for _, p := range pids {
		if err := syscall.Kill(p, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s: signal %v to %d: %v", name, sig, p, err)
		}
	}
}

// browse starts a reader beside the storm's shoppers: a session that
// writes nothing reads its order list and an item, again and again (with
// the storm's retries), reads the API replicas send to the read replica
// (a session's own orders go to the primary only after it wrote; an
// item's page is not in nginx's edge cache).
func (s *storm) browse(token string) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for n := 0; !isClosed(s.done); n++ {
			for _, path := range []string{"/v1/orders", fmt.Sprintf("/v1/items/%d", 1+n%s.itemCount)} {
				r, err := s.send("GET", path, token, "", nil)
				if err == nil && r.status != 200 {
					err = fmt.Errorf("browser: GET %s: %d %s", path, r.status, r.body)
				}
				if err != nil {
					s.mu.Lock()
					if s.err == nil {
						s.err = err
					}
					s.mu.Unlock()
					return
				}
			}
		}
	}()
}

// try is one request of the storm.
type try struct {
	begun  time.Time
	took   time.Duration
	status int // 0: no answer
	err    error
	what   string // a failed try's request and cause (failedTry)
	token  string // the session's
	route  string // "POST /v1/orders"
}

var idSegment = regexp.MustCompile(`/[0-9]+`)

// failedTry names a try that failed (an error or a 5xx) by its route and
// cause, so that the matrix says why, not only how many: "POST
// /v1/orders: 503 the database is failing; retry later". "" for a try
// that did not fail.
func failedTry(method, path string, r reply, err error) string {
	route := routeOf(method, path)
	switch {
	case err != nil:
		return route + ": no answer: " + err.Error()
	case r.status < 500:
		return ""
	}
	var problem struct{ Detail string }
	if json.Unmarshal(r.body, &problem) != nil || problem.Detail == "" {
		problem.Detail = strings.TrimSpace(string(r.body))
		if len(problem.Detail) > 80 {
			problem.Detail = problem.Detail[:80]
		}
	}
	return fmt.Sprintf("%s: %d %s", route, r.status, problem.Detail)
}

// outcome is a try's route and status or error: "POST /v1/orders: 201".
func (tr try) outcome() string {
	if tr.err != nil {
		return tr.route + ": no answer"
	}
	return fmt.Sprintf("%s: %d", tr.route, tr.status)
}

// routeOf is a request's method and path with its ids as {id}.
func routeOf(method, path string) string {
	return method + " " + idSegment.ReplaceAllString(strings.SplitN(path, "?", 2)[0], "/{id}")
}

type observations struct {
	mu   sync.Mutex
	list []try
	// shardOf names a session's shard (nil: one database), so the
	// matrix counts each shard's customers' tries apart.
	shardOf func(token string) int
}

func (o *observations) add(tr try) {
	o.mu.Lock()
	o.list = append(o.list, tr)
	o.mu.Unlock()
}

// since is every try that ended after from.
func (o *observations) since(from time.Time) []try {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []try
	for _, tr := range o.list {
		if tr.begun.Add(tr.took).After(from) {
			out = append(out, tr)
		}
	}
	return out
}

type faultRow struct {
	name      string
	tries, ok int
	failed    map[string]int // "503", "502", "no answer"
	causes    map[string]int // by failedTry
	longest   time.Duration
	slowest   string        // the longest try's route and outcome
	recovery  time.Duration // from the heal to the end of the last failure after it
	recovered bool
	byShard   map[int]*shardTries // on shards: each shard's sessions' tries
}

// shardTries are one shard's sessions' tries during a fault.
type shardTries struct {
	tries, failed int
	recovery      time.Duration
}

func (r faultRow) String() string {
	byShard := ""
	for k := 1; k <= len(r.byShard); k++ {
		if st := r.byShard[k]; st != nil {
			byShard += fmt.Sprintf(" shard %d: %d of %d failed, recovery %v;", k, st.failed, st.tries, st.recovery.Round(time.Millisecond))
		}
	}
	return fmt.Sprintf("%s: %d tries, %d answered below 500, failed %v, longest %v (%s), recovery %v (recovered %v);%s causes %v",
		r.name, r.tries, r.ok, r.failed, r.longest.Round(time.Millisecond), r.slowest, r.recovery.Round(time.Millisecond), r.recovered, byShard, r.causes)
}

// runFault injects f, holds it, heals it, and watches the storm until 20
// tries in a row have succeeded after the heal (at most 60 s).
func runFault(t *testing.T, f fault, obs *observations) faultRow {
	t.Helper()
	begun := time.Now()
	f.inject()
	time.Sleep(f.hold)
	if f.heal != nil {
		f.heal()
	}
	healed := time.Now()
	row := faultRow{name: f.name, failed: map[string]int{}, causes: map[string]int{}, byShard: map[int]*shardTries{}}
	deadline := healed.Add(60 * time.Second)
	for {
		time.Sleep(250 * time.Millisecond)
		after := obs.since(healed)
		streak := 0
		for i := len(after) - 1; i >= 0 && after[i].err == nil && after[i].status < 500; i-- {
			streak++
		}
		if streak >= 20 || time.Now().After(deadline) {
			row.recovered = streak >= 20
			break
		}
	}
	for _, tr := range obs.since(begun) {
		end := tr.begun.Add(tr.took)
		row.tries++
		if tr.took > row.longest {
			row.longest, row.slowest = tr.took, tr.outcome()
		}
		sh := &shardTries{} // counted nowhere on one database
		cause := tr.what
		if obs.shardOf != nil {
			k := obs.shardOf(tr.token)
			cause = fmt.Sprintf("a shard %d session's %s", k, tr.what)
			if row.byShard[k] == nil {
				row.byShard[k] = &shardTries{}
			}
			sh = row.byShard[k]
		}
		sh.tries++
		switch {
		case tr.err != nil:
			row.failed["no answer"]++
		case tr.status >= 500:
			row.failed[fmt.Sprint(tr.status)]++
		default:
			row.ok++
			continue
		}
		sh.failed++
		row.causes[cause]++
		if end.After(healed) {
			row.recovery = max(row.recovery, end.Sub(healed))
			sh.recovery = max(sh.recovery, end.Sub(healed))
		}
	}
	return row
}

func faultTable(rows []faultRow, s *storm, shards int, checked bool) string {
	var b strings.Builder
	perShard, perShardRule := "", ""
	if shards > 1 {
		fmt.Fprintf(&b, "On %d shards; the shard 1 rows' toxics are between the replicas and worker and shard 1's server only. "+
			"Per shard: the tries of the sessions on that shard, how many failed, and their recovery after the fault's end.\n\n", shards)
		perShard, perShardRule = " failed of tries by shard (recovery) |", " --- |"
	}
	fmt.Fprintf(&b, "| fault | tries | answered < 500 | failed tries by status | longest try | recovery after the fault's end |%s\n", perShard)
	fmt.Fprintf(&b, "| --- | ---: | ---: | --- | ---: | ---: |%s\n", perShardRule)
	for _, r := range rows {
		var failed []string
		for k, n := range r.failed {
			failed = append(failed, fmt.Sprintf("%s: %d", k, n))
		}
		sort.Strings(failed)
		f := strings.Join(failed, ", ")
		if f == "" {
			f = "none"
		}
		rec := r.recovery.Round(10 * time.Millisecond).String()
		if !r.recovered {
			rec = "not within 60 s"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s |", r.name, r.tries, r.ok, f, r.longest.Round(10*time.Millisecond), rec)
		if shards > 1 {
			fmt.Fprintf(&b, " %s |", r.shardsText(shards))
		}
		b.WriteString("\n")
	}
	var causes []string
	for _, r := range rows {
		var lines []string
		for what, n := range r.causes {
			lines = append(lines, fmt.Sprintf("%d × %s", n, what))
		}
		sort.Strings(lines)
		for _, l := range lines {
			causes = append(causes, fmt.Sprintf("- %s: %s", r.name, l))
		}
	}
	if len(causes) > 0 {
		fmt.Fprintf(&b, "\nFailed tries by request and cause (the problem's detail):\n\n%s\n", strings.Join(causes, "\n"))
	}
	fmt.Fprintf(&b, "\nThe longest try of each fault (its request and status):\n\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "- %s: %s, %s\n", r.name, r.longest.Round(10*time.Millisecond), r.slowest)
	}
	verdict := "the checker found every acknowledged order exactly once, stock taken = quantities ordered, every order confirmed once and ready"
	if !checked {
		verdict = "THE CHECKER FAILED (see the test's log)"
	}
	fmt.Fprintf(&b, "\n%d orders acknowledged, %d checkouts refused as sold out, %d tries failed and were retried; %s.\n",
		s.acked.Load(), s.soldOut.Load(), s.failures.Load(), verdict)
	return b.String()
}

// shardsText is a row's tries by shard: "1: 40 of 300 (1.2s); 2: 0 of 310".
func (r faultRow) shardsText(shards int) string {
	var parts []string
	for k := 1; k <= shards; k++ {
		st := r.byShard[k]
		if st == nil {
			st = &shardTries{}
		}
		p := fmt.Sprintf("%d: %d of %d", k, st.failed, st.tries)
		if st.failed > 0 {
			p += fmt.Sprintf(" (%s)", st.recovery.Round(10*time.Millisecond))
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// stormUnderWay is how many orders the storm has acknowledged before the
// first fault: each shopper has checked out a few times, so the system is
// warm and the fault meets a storm, whatever the machine's load.
const stormUnderWay = 20

// underWay waits (bounded) until the storm has acknowledged n orders; it
// fails the test if the storm failed or had not by then.
func (s *storm) underWay(t *testing.T, n int64) {
	t.Helper()
	testwait.Eventually(t, 2*time.Minute, func() error {
		if err := s.failed(); err != nil {
			t.Fatalf("storm: %v", err)
		}
		if got := s.acked.Load(); got < n {
			return fmt.Errorf("%d of %d orders acknowledged", got, n)
		}
		return nil
	})
}
