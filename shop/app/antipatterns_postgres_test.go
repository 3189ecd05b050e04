package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop/antipattern"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
)

// The switches whose behaviour depends on the store, on PostgreSQL.

// migratedDatabase is a fresh, migrated database. Each test using it
// starts two to four processes on PostgreSQL (about 5 s on the loaded
// 2-core machine), so it runs in the full suite, not under -short.
func migratedDatabase(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts several shop processes on PostgreSQL (about 5 s); runs without -short")
	}
	url := pgtest.NewDatabase(t)
	if _, err := backend.Migrate(t.Context(), backend.Config{DatabaseURL: url}); err != nil {
		t.Fatal(err)
	}
	return url
}

// local-sessions on PostgreSQL (the control, without the switch, runs on
// the embedded default).
func TestLocalSessionsOnPostgres(t *testing.T) {
	checkLocalSessions(t, true, Config{DatabaseURL: migratedDatabase(t)})
}

// global-lock is one read/write lock shared by every replica. While
// another replica (here the test, as a third replica) holds it for a
// write, one replica's writes and reads all wait for it in PostgreSQL;
// while another holds it for a read, a read shares it, a write waits, and
// a read after that waiting write waits behind it (PostgreSQL queues a
// shared request behind an exclusive one); all answer once it is
// released. Every request waits in the database, as another replica's
// would, not in the process: a queue in the process would add a round
// trip to each hand-over of the lock on one replica and not on two, and
// make the lock look as if it scaled out.
func TestGlobalLockBlocksAnotherReplicasRequests(t *testing.T) {
	url := migratedDatabase(t)
	cfg := Config{DatabaseURL: url, Antipatterns: antipattern.Of(antipattern.GlobalLock)}
	serve(t, cfg)
	cfg.Role = RoleAPI
	b := serve(t, cfg)
	tokens := []string{b.session(t), b.session(t)}
	holder, err := postgres.NewGlobalLock(url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	admin, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	put := func(token string) *http.Request {
		r := lockedRequest(t, "PUT", b.url+"/v1/cart/items/1", token, `{"quantity": 1}`)
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	get := func(token string) *http.Request { return lockedRequest(t, "GET", b.url+"/v1/cart", token, "") }

	t.Run("held for a write, writes and reads wait", func(t *testing.T) {
		release := holdGlobalLock(t, holder, true)
		done := sendAll(put(tokens[0]), put(tokens[1]), get(tokens[0]))
		waitForLockWaiters(t, admin, 3)
		notAnswered(t, done)
		release()
		allAnswer200(t, done, 3)
	})
	t.Run("held for a read, a read shares it, a write waits and the reads behind it", func(t *testing.T) {
		release := holdGlobalLock(t, holder, false)
		if code, _, _ := call(t, "GET", b.url+"/v1/cart", tokens[0], nil); code != 200 {
			t.Fatalf("a read while another replica reads under the lock: %d", code)
		}
		done := sendAll(put(tokens[1]))
		waitForLockWaiters(t, admin, 1)
		done2 := sendAll(get(tokens[0]))
		waitForLockWaiters(t, admin, 2)
		notAnswered(t, done)
		notAnswered(t, done2)
		release()
		allAnswer200(t, done, 1)
		allAnswer200(t, done2, 1)
	})
}

func lockedRequest(t *testing.T, method, url, token, body string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

// holdGlobalLock takes the lock as another replica would and returns its
// release, which also runs when the test ends (so that a failure does not
// leave the replica's requests waiting).
func holdGlobalLock(t *testing.T, holder *postgres.GlobalLock, write bool) func() {
	t.Helper()
	unlock, err := holder.Lock(t.Context(), write)
	if err != nil {
		t.Fatal(err)
	}
	release := sync.OnceFunc(unlock)
	t.Cleanup(release)
	return release
}

// sendAll sends the requests at once; each one's status arrives on the
// channel (0 when it got no answer).
func sendAll(reqs ...*http.Request) chan int {
	done := make(chan int, len(reqs))
	for _, r := range reqs {
		go func() {
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	return done
}

// waitForLockWaiters waits until n requests wait for the advisory lock in
// this database.
func waitForLockWaiters(t *testing.T, admin *pgx.Conn, n int) {
	t.Helper()
	testwait.Eventually(t, 30*time.Second, func() error {
		var waiting int
		if err := admin.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting); err != nil {
			return err
		}
		if waiting != n {
			return fmt.Errorf("%d requests wait for the global lock in the database, want %d", waiting, n)
		}
		return nil
	})
}

func notAnswered(t *testing.T, done chan int) {
	t.Helper()
	select {
	case code := <-done:
		t.Fatalf("a request answered %d while another replica held the lock against it", code)
	default:
	}
}

func allAnswer200(t *testing.T, done chan int, n int) {
	t.Helper()
	for range n {
		if code := <-done; code != 200 {
			t.Fatalf("a request after the lock was released: %d", code)
		}
	}
}

// no-pool: every read opens a connection of its own; the pool opens none
// for reads once warm.
func TestNoPoolOnPostgres(t *testing.T) {
	url := migratedDatabase(t)
	for _, on := range []bool{false, true} {
		cfg := Config{DatabaseURL: url, Antipatterns: antipattern.Of(antipattern.NoCache)}
		if on {
			cfg.Antipatterns = antipattern.Of(antipattern.NoCache, antipattern.NoPool)
		}
		r := serve(t, cfg)
		call(t, "GET", r.url+"/v1/items/1", "", nil) // warm
		before := r.backend.Postgres.Pool().Stat().NewConnsCount()
		const n = 5
		for range n {
			if code, _, _ := call(t, "GET", r.url+"/v1/items/1", "", nil); code != 200 {
				t.Fatal(code)
			}
		}
		opened := r.backend.Postgres.Pool().Stat().NewConnsCount() - before
		if (opened >= n) != on {
			t.Errorf("no-pool %v: %d connections opened for %d requests", on, opened, n)
		}
	}
}
