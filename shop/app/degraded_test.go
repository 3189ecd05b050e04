package app

import (
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop/resilience"
)

// With the embedded database's writer blocked (another process holds the
// write lock), writes used to wait out the lock's 10 s busy timeout and
// /readyz stayed 200. Now, once writes have waited past the stall limit
// with none finishing, the write waiting is given up (a 503 then, not at
// its deadline), /readyz fails and a new write is a 503 with Retry-After
// (refused, or the guard's one probe given up in its turn); reads still
// answer, and when the lock goes, writes and readiness come back.
//
// The guards run on the test's clock, which moves only once a write is
// waiting at the write guard: with a 50 ms limit on the wall clock, a
// write after the lock went, slowed past it on a machine at a load
// average of 75, was given up too.
func TestABlockedWriterFailsReadinessAndWritesFast(t *testing.T) {
	dir := t.TempDir()
	clock := &manualClock{t: time.Unix(1_000_000, 0)}
	const stallAfter = time.Second
	r := serve(t, Config{DataDir: dir, StallAfter: stallAfter, guardClock: clock})
	writes := r.guarded.Writes()
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

	// A write waits for the lock; once it is at the write guard, the
	// stall limit passes on the guards' clock and it is given up.
	if code, _, body := givenUp(t, clock, stallAfter, writes, r.url+"/v1/cart/items/2", tok); code != http.StatusServiceUnavailable {
		t.Fatalf("the write that waited for the lock: %d %s, want 503 (given up at the stall limit)", code, body)
	}
	if code, _, body := call(t, "GET", r.url+"/readyz", "", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d %s while the writer is blocked", code, body)
	}
	code, h, body := givenUp(t, clock, stallAfter, writes, r.url+"/v1/cart/items/3", tok)
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("a write while the writer is blocked: %d (Retry-After %q) %s, want a 503", code, h.Get("Retry-After"), body)
	}
	if code, _, body := call(t, "GET", r.url+"/v1/items/1", "", nil); code != 200 {
		t.Fatalf("a read while the writer is blocked: %d %s", code, body)
	}

	// The lock goes: the next write is the guard's probe, which finishes
	// and clears the stall, and readiness comes back with it.
	unlock()
	if code, _, body := call(t, "PUT", r.url+"/v1/cart/items/3", tok, map[string]int{"quantity": 1}); code != 200 {
		t.Fatalf("a write after the lock went: %d %s", code, body)
	}
	if code, _, body := call(t, "GET", r.url+"/readyz", "", nil); code != 200 {
		t.Fatalf("/readyz %d %s after the lock went", code, body)
	}
}

// givenUp sends a write that waits for the lock and, once a write is in
// flight at the write guard, moves the guards' clock past the stall
// limit, until the write is answered (a write the guard refuses is
// answered without it).
func givenUp(t *testing.T, clock *manualClock, stallAfter time.Duration, writes *resilience.Guard, url, tok string) (int, http.Header, []byte) {
	t.Helper()
	type answer struct {
		code int
		h    http.Header
		body []byte
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("PUT", url, strings.NewReader(`{"quantity":1}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		answered <- answer{res.StatusCode, res.Header, body, err}
	}()
	var a answer
	testwait.Eventually(t, 10*time.Second, func() error {
		select {
		case a = <-answered:
			return nil
		default:
		}
		if writes.InFlight() > 0 {
			clock.Add(stallAfter)
		}
		return fmt.Errorf("the write to %s is not answered", url)
	})
	if a.err != nil {
		t.Fatalf("the write to %s: %v", url, a.err)
	}
	return a.code, a.h, a.body
}

// manualClock is the guards' time, moved by hand; its timers fire, in
// the caller's goroutine, as Add moves it past them.
type manualClock struct {
	mu     sync.Mutex
	t      time.Time
	timers []manualTimer
}

type manualTimer struct {
	at time.Time
	f  func()
}

func (c *manualClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *manualClock) AfterFunc(d time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, manualTimer{at: c.t.Add(d), f: f})
}

// Add moves the clock by d and fires the timers due.
func (c *manualClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	var due []func()
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(c.t) {
			kept = append(kept, tm)
		} else {
			due = append(due, tm.f)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}
