package app

import (
	"database/sql"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/perfscale/perfscale/internal/testwait"
)

// With the embedded database's writer blocked (another process holds the
// write lock), writes used to wait out the lock's 10 s busy timeout and
// /readyz stayed 200. Now, once writes have waited past the stall limit
// with none finishing, the write waiting is given up (a 503 then, not at
// its deadline), /readyz fails and a new write is a 503 with Retry-After
// (refused, or the guard's one probe given up in its turn); reads still
// answer, and when the lock goes, writes and readiness come back.
func TestABlockedWriterFailsReadinessAndWritesFast(t *testing.T) {
	dir := t.TempDir()
	r := serve(t, Config{DataDir: dir, StallAfter: 50 * time.Millisecond})
	tok := r.session(t)
	if code, _, body := call(t, "PUT", r.url+"/v1/cart/items/1", tok, map[string]int{"quantity": 1}); code != 200 {
		t.Fatalf("cart before the block: %d %s", code, body)
	}

	// Another process's connection takes the write lock and keeps it.
	other, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	locked := true
	unlock := func() {
		if locked {
			conn.ExecContext(t.Context(), "ROLLBACK") //nolint:errcheck
			locked = false
		}
	}
	defer unlock()

	// A write now waits for the lock.
	waiting := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("PUT", r.url+"/v1/cart/items/2", strings.NewReader(`{"quantity":1}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			waiting <- 0
			return
		}
		res.Body.Close()
		waiting <- res.StatusCode
	}()

	testwait.Eventually(t, 10*time.Second, func() error {
		if code, _, body := call(t, "GET", r.url+"/readyz", "", nil); code != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz %d %s while the writer is blocked", code, body)
		}
		return nil
	})
	if code := <-waiting; code != http.StatusServiceUnavailable {
		t.Fatalf("the write that waited for the lock: %d, want 503 (given up at the stall limit)", code)
	}
	code, h, body := call(t, "PUT", r.url+"/v1/cart/items/3", tok, map[string]int{"quantity": 1})
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("a write while the writer is blocked: %d (Retry-After %q) %s, want a 503", code, h.Get("Retry-After"), body)
	}
	if code, _, body := call(t, "GET", r.url+"/v1/items/1", "", nil); code != 200 {
		t.Fatalf("a read while the writer is blocked: %d %s", code, body)
	}

	unlock()
	testwait.Eventually(t, 10*time.Second, func() error {
		if code, _, body := call(t, "GET", r.url+"/readyz", "", nil); code != 200 {
			return fmt.Errorf("/readyz %d %s after the lock went", code, body)
		}
		return nil
	})
	if code, _, body := call(t, "PUT", r.url+"/v1/cart/items/3", tok, map[string]int{"quantity": 1}); code != 200 {
		t.Fatalf("a write after the lock went: %d %s", code, body)
	}
}
