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

// global-lock: writing requests on one replica wait while another
// replica holds the lock (here the test, as a third replica), and run
// once it is released; reads do not wait. Both of the replica's writes
// wait for the lock in PostgreSQL, as another replica's would, not one of
// them in the process: a queue in the process would add a round trip to
// each hand-over of the lock on one replica and not on two, and make the
// lock look as if it scaled out.
func TestGlobalLockBlocksAnotherReplicasWrite(t *testing.T) {
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
	unlock, err := holder.Lock(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	release := sync.OnceFunc(unlock)
	defer release() // on a failure too, so the replica's writes end
	done := make(chan int, len(tokens))
	for _, token := range tokens {
		put, err := http.NewRequest("PUT", b.url+"/v1/cart/items/1", strings.NewReader(`{"quantity": 1}`))
		if err != nil {
			t.Fatal(err)
		}
		put.Header.Set("Content-Type", "application/json")
		put.Header.Set("Authorization", "Bearer "+token)
		go func() {
			resp, err := http.DefaultClient.Do(put)
			if err != nil {
				done <- 0 // reported by the receiver
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	admin, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	// The replica's requests are waiting on the advisory lock.
	testwait.Eventually(t, 30*time.Second, func() error {
		var waiting int
		if err := admin.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting); err != nil {
			return err
		}
		if waiting != len(tokens) {
			return fmt.Errorf("%d of the replica's %d writes wait for the global lock in the database", waiting, len(tokens))
		}
		return nil
	})
	select {
	case code := <-done:
		t.Fatalf("a write answered %d while another replica held the lock", code)
	default:
	}
	if code, _, _ := call(t, "GET", b.url+"/v1/cart", tokens[0], nil); code != 200 {
		t.Fatalf("a read while the lock is held: %d", code)
	}
	release()
	for range tokens {
		if code := <-done; code != 200 {
			t.Fatalf("a write after the lock was released: %d", code)
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
