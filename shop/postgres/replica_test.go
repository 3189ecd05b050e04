package postgres_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/internal/testserver"
	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/httpapi"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// pgReplica is a streaming replica of the local PostgreSQL made by
// scripts/pg-replica.sh, in a directory and on a port of this test's own,
// stopped after the test. (The script's default replica is shared: another
// test run stopping it in its cleanup cut this one off: "the database
// system is shutting down".)
type pgReplica struct {
	dir string
	env []string
}

const replicaScript = "../../scripts/pg-replica.sh"

func newPGReplica(t *testing.T) *pgReplica {
	t.Helper()
	pgtest.Admin(t).Close(context.Background()) // skips without PostgreSQL
	// Not t.TempDir: the replica runs as the postgres user, which must
	// reach its directory (the script makes it its owner).
	dir, err := os.MkdirTemp("", "perfscale-test-pg-replica.")
	if err != nil {
		t.Fatal(err)
	}
	r := &pgReplica{dir: dir, env: append(os.Environ(), "PG_REPLICA_DIR="+dir, fmt.Sprintf("PG_REPLICA_PORT=%d", testserver.FreePort(t)))}
	t.Cleanup(func() {
		if out, err := r.command("stop").CombinedOutput(); err != nil {
			t.Errorf("scripts/pg-replica.sh stop: %v\n%s", err, out)
		}
		os.RemoveAll(dir)
	})
	// Runs before the stop: a replica that fell behind says why in its log
	// (a WAL receiver refused by the primary, a recovery conflict).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if log, err := os.ReadFile(filepath.Join(dir, "replica.log")); err == nil {
			lines := strings.Split(strings.TrimSpace(string(log)), "\n")
			t.Logf("the replica's log, last lines:\n%s", strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
	})
	return r
}

func (r *pgReplica) command(verb string) *exec.Cmd {
	cmd := exec.Command(replicaScript, verb)
	cmd.Env = r.env
	return cmd
}

// replicaURL starts a replica of the test's own and returns its URL (the
// script's last line of output).
func replicaURL(t *testing.T) string {
	t.Helper()
	out, err := newPGReplica(t).command("start").Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		pgtest.Unavailable(t, "scripts/pg-replica.sh start: "+err.Error()+": "+strings.TrimSpace(stderr))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// waitReplayed waits until replica has replayed everything primary has
// written so far.
func waitReplayed(t *testing.T, primary, replica *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	var target string
	if err := primary.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	// The standby replays the whole shared server's WAL, and other tests'
	// bulk writes can put hundreds of MB ahead of the target: a CI run's
	// starved standby replayed 235 MB in 35 s and was 13 MB short at a
	// fixed 30 s. Slow is not stuck: the wait fails when replay stops
	// advancing for stalled, with a generous bound on the whole.
	const stalled = 30 * time.Second
	var last string
	lastMoved := time.Now()
	testwait.Eventually(t, 5*time.Minute, func() error {
		var replayed, receiver string
		var ok bool
		err := replica.QueryRow(ctx, `SELECT coalesce(pg_last_wal_replay_lsn()::text, ''), coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false),
			coalesce((SELECT status || ' from ' || sender_host FROM pg_stat_wal_receiver), 'none')`, target).Scan(&replayed, &ok, &receiver)
		if err == nil && ok {
			return nil
		}
		if replayed != last {
			last, lastMoved = replayed, time.Now()
		}
		if time.Since(lastMoved) > stalled {
			t.Fatalf("the replica's replay has not moved for %v: replayed to %s, want %s; its WAL receiver: %s (%v)", stalled, replayed, target, receiver, err)
		}
		return fmt.Errorf("the replica has replayed to %s, want %s; its WAL receiver: %s (%v)", replayed, target, receiver, err)
	})
}

// A replica started while another is being stopped streams. The stop,
// finding no other replica's server yet, removed the primary's replication
// line while the new one was between its base backup and its server's
// start, and the new standby's WAL receiver was refused from then on: its
// replay stayed at the segment the backup ended on, which is what made
// TestReadsGoToTheReplicaAndSessionsReadTheirWrites fail now and then on a
// machine where several test runs make replicas. The test holds the new
// replica's start (SIGSTOP) just after its base backup, stops the first
// replica, and lets the start go on once that stop has either finished or
// is waiting for the script's lock.
func TestAReplicaStartedWhileAnotherStopsStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("two base backups; the race detector has nothing to find in a shell script's race")
	}
	ctx := context.Background()
	first := newPGReplica(t)
	if out, err := first.command("start").CombinedOutput(); err != nil {
		pgtest.Unavailable(t, "scripts/pg-replica.sh start: "+err.Error()+": "+strings.TrimSpace(string(out)))
	}

	start := newPGReplica(t).command("start")
	var stdout, stderr bytes.Buffer
	stderrPipe, err := start.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	start.Stdout = &stdout
	if err := start.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderrPipe)
	for lines.Scan() {
		stderr.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "base backup done") {
			break
		}
	}
	if err := start.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			start.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()

	stopped := make(chan error, 1)
	go func() {
		out, err := first.command("stop").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%v: %s", err, out)
		}
		stopped <- err
	}()
	var stopErr error
	stopDone := false
	testwait.Eventually(t, 60*time.Second, func() error {
		select {
		case stopErr = <-stopped:
			stopDone = true
			return nil
		default:
		}
		if waitingForLock(t) {
			return nil
		}
		return errors.New("the first replica's stop has neither finished nor waited for the script's lock")
	})
	resume()
	io.Copy(&stderr, stderrPipe)
	if err := start.Wait(); err != nil {
		t.Fatalf("scripts/pg-replica.sh start: %v: %s", err, stderr.String())
	}
	url := strings.TrimSpace(stdout.String())
	url = url[strings.LastIndex(url, "\n")+1:]
	if !stopDone {
		stopErr = <-stopped
	}
	if stopErr != nil {
		t.Fatalf("scripts/pg-replica.sh stop: %v", stopErr)
	}

	primary := pgtest.Admin(t)
	defer primary.Close(ctx)
	replica, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close(ctx)
	// Past the segment the backup ended on.
	if _, err := primary.Exec(ctx, `SELECT pg_switch_wal(); CREATE TEMP TABLE wal_after_the_backup AS SELECT 1 AS one`); err != nil {
		t.Fatal(err)
	}
	waitReplayed(t, primary, replica)
}

// waitingForLock says whether a process waits for scripts/pg-replica.sh's
// lock (a "->" line of /proc/locks on the lock file's inode).
func waitingForLock(t *testing.T) bool {
	t.Helper()
	info, err := os.Stat("/tmp/perfscale-pg-replica.lock")
	if err != nil {
		return false
	}
	ino := fmt.Sprintf(":%d", info.Sys().(*syscall.Stat_t).Ino)
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(locks), "\n") {
		f := strings.Fields(line)
		if len(f) > 6 && f[1] == "->" && strings.HasSuffix(f[6], ino) {
			return true
		}
	}
	return false
}

// servedBy records, for each statement, whether the connection that ran it
// is a hot standby (in_hot_standby, which PostgreSQL reports to clients:
// pg_is_in_recovery() of the serving connection).
type servedBy struct {
	mu      sync.Mutex
	standby map[string][]bool
}

func (s *servedBy) TraceQueryStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.standby[d.SQL] = append(s.standby[d.SQL], conn.PgConn().ParameterStatus("in_hot_standby") == "on")
	return ctx
}

func (*servedBy) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (s *servedBy) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.standby = map[string][]bool{}
}

// where says where statements containing fragment ran: "replica",
// "primary", "both" or "none".
func (s *servedBy) where(fragment string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rep, pri bool
	for sql, on := range s.standby {
		if !strings.Contains(strings.Join(strings.Fields(sql), " "), fragment) {
			continue
		}
		for _, standby := range on {
			rep, pri = rep || standby, pri || !standby
		}
	}
	switch {
	case rep && pri:
		return "both"
	case rep:
		return "replica"
	case pri:
		return "primary"
	}
	return "none"
}

// A primary and a real streaming replica: the menu, item, listing and
// own-order reads are served by the replica (the connection that ran them
// is a hot standby); with replay paused, a session that just checked out
// reads its new order and its list from the primary (no 404 whatever the
// lag) while reads that need no session stay on the replica.
func TestReadsGoToTheReplicaAndSessionsReadTheirWrites(t *testing.T) {
	ctx := context.Background()
	rurl := replicaURL(t)
	url := pgtest.NewDatabase(t)
	name := pgtest.DatabaseName(url)
	if _, err := backend.Migrate(ctx, backend.Config{DatabaseURL: url}); err != nil {
		t.Fatal(err)
	}
	primary := pgtest.Admin(t)
	defer primary.Close(ctx)
	replica, err := pgx.Connect(ctx, rurl)
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close(ctx)
	caughtUp := func() { t.Helper(); waitReplayed(t, primary, replica) }
	caughtUp() // the test database exists on the replica too

	trace := &servedBy{standby: map[string][]bool{}}
	b, err := backend.Open(ctx, backend.Config{DatabaseURL: url, Postgres: postgres.Options{
		Replicas: []string{pgtest.WithDatabase(rurl, name)}, Tracer: trace,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Seed(ctx, seed.Items(20)); err != nil {
		t.Fatal(err)
	}
	s := b.Store
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Config{Catalog: s, Sessions: s, Carts: s, Ordering: b.Desk, Health: s}))
	defer srv.Close()

	var sess struct{ Token string }
	json.Unmarshal(do(t, "POST", srv.URL+"/v1/sessions", "", "", "").body, &sess)
	checkout := func(key string) int64 {
		t.Helper()
		if a := do(t, "PUT", srv.URL+"/v1/cart/items/2", sess.Token, "", `{"quantity": 1}`); a.status != 200 {
			t.Fatalf("cart: %d %s", a.status, a.body)
		}
		a := do(t, "POST", srv.URL+"/v1/orders", sess.Token, key, `{"customer_name": "Ada", "email": "ada@example.com"}`)
		var o struct{ ID int64 }
		json.Unmarshal(a.body, &o)
		if a.status != 201 {
			t.Fatalf("checkout: %d %s", a.status, a.body)
		}
		return o.ID
	}
	first := checkout("first")
	caughtUp()

	// Caught up: every read is the replica's.
	trace.reset()
	for _, path := range []string{"/v1/menu", "/v1/items/1", "/v1/items?limit=5", "/v1/orders", fmt.Sprintf("/v1/orders/%d", first)} {
		if a := do(t, "GET", srv.URL+path, sess.Token, "", ""); a.status != 200 {
			t.Fatalf("GET %s: %d %s", path, a.status, a.body)
		}
	}
	for _, q := range []string{
		"FROM items WHERE available AND stock > 0", // the menu
		"FROM items WHERE id = $1",                 // an item
		"FROM items WHERE id > $1",                 // a page of items
		"FROM orders WHERE session_id = $1",        // own orders
		"o.id = $1 AND o.session_id = $2",          // one own order
		"JOIN order_lines",                         // with the lines of each
	} {
		if got := trace.where(q); got != "replica" {
			t.Errorf("%q ran on %s, want the replica", q, got)
		}
	}

	// Replica lag: replay paused, the session checks out again.
	if _, err := replica.Exec(ctx, `SELECT pg_wal_replay_pause()`); err != nil {
		t.Fatal(err)
	}
	defer replica.Exec(ctx, `SELECT pg_wal_replay_resume()`)
	testwait.Eventually(t, 30*time.Second, func() error {
		var state string
		if err := replica.QueryRow(ctx, `SELECT pg_get_wal_replay_pause_state()`).Scan(&state); err != nil || state != "paused" {
			return fmt.Errorf("replay is %q, want paused (%v)", state, err)
		}
		return nil
	})
	second := checkout("second")
	lagged, err := pgx.Connect(ctx, pgtest.WithDatabase(rurl, name))
	if err != nil {
		t.Fatal(err)
	}
	defer lagged.Close(ctx)
	var seen int
	if err := lagged.QueryRow(ctx, `SELECT COUNT(*) FROM orders WHERE id = $1`, second).Scan(&seen); err != nil || seen != 0 {
		t.Fatalf("the paused replica has order %d (%d, %v): the test does not exercise lag", second, seen, err)
	}

	trace.reset()
	if a := do(t, "GET", fmt.Sprintf("%s/v1/orders/%d", srv.URL, second), sess.Token, "", ""); a.status != 200 {
		t.Fatalf("the order the client was just told exists: %d %s", a.status, a.body)
	}
	var list struct{ Orders []struct{ ID int64 } }
	json.Unmarshal(do(t, "GET", srv.URL+"/v1/orders", sess.Token, "", "").body, &list)
	if len(list.Orders) != 2 || list.Orders[0].ID != second {
		t.Fatalf("own orders under lag: %+v, want %d first", list.Orders, second)
	}
	if got := trace.where("FROM orders WHERE"); got != "primary" {
		t.Errorf("own-order reads under lag ran on %s, want the primary", got)
	}
	// Reads that need no session stay on the lagging replica.
	trace.reset()
	if a := do(t, "GET", srv.URL+"/v1/items/3", "", "", ""); a.status != 200 {
		t.Fatalf("item under lag: %d", a.status)
	}
	if got := trace.where("FROM items WHERE id = $1"); got != "replica" {
		t.Errorf("an item read under lag ran on %s, want the replica", got)
	}
	// Another session that has written nothing since reads from the replica.
	var other struct{ Token string }
	json.Unmarshal(do(t, "POST", srv.URL+"/v1/sessions", "", "", "").body, &other)
	trace.reset()
	if a := do(t, "GET", srv.URL+"/v1/orders", other.Token, "", ""); a.status != 200 {
		t.Fatalf("other session's orders: %d %s", a.status, a.body)
	}
	if got := trace.where("FROM orders WHERE session_id = $1"); got != "replica" {
		t.Errorf("a session without writes read its orders on %s, want the replica", got)
	}
}
