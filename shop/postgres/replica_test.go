package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
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

// replicaURL starts a streaming replica of the local PostgreSQL with
// scripts/pg-replica.sh, in a directory and on a port of this test's own,
// stops it after the test and returns its URL. (The script's default
// replica is shared: another test run stopping it in its cleanup cut this
// one off: "the database system is shutting down".)
func replicaURL(t *testing.T) string {
	t.Helper()
	pgtest.Admin(t).Close(context.Background()) // skips without PostgreSQL
	script := "../../scripts/pg-replica.sh"
	// Not t.TempDir: the replica runs as the postgres user, which must
	// reach its directory (the script makes it its owner).
	dir, err := os.MkdirTemp("", "perfscale-test-pg-replica.")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PG_REPLICA_DIR="+dir, fmt.Sprintf("PG_REPLICA_PORT=%d", testserver.FreePort(t)))
	t.Cleanup(func() {
		stop := exec.Command(script, "stop")
		stop.Env = env
		if out, err := stop.CombinedOutput(); err != nil {
			t.Errorf("scripts/pg-replica.sh stop: %v\n%s", err, out)
		}
		os.RemoveAll(dir)
	})
	start := exec.Command(script, "start")
	start.Env = env
	out, err := start.Output()
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
	caughtUp := func() {
		t.Helper()
		var target string
		if err := primary.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&target); err != nil {
			t.Fatal(err)
		}
		testwait.Eventually(t, 30*time.Second, func() error {
			var replayed string
			var ok bool
			err := replica.QueryRow(ctx, `SELECT pg_last_wal_replay_lsn()::text, pg_last_wal_replay_lsn() >= $1::pg_lsn`, target).Scan(&replayed, &ok)
			if err != nil || !ok {
				return fmt.Errorf("the replica has replayed to %s, want %s (%v)", replayed, target, err)
			}
			return nil
		})
	}
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
