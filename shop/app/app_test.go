package app

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// When a step fails, New releases what the steps before it built: here
// the order events' NATS URL is refused, after the listener, the store,
// the worker lock and the queue were built, and the lock is free again
// afterwards.
func TestNewReleasesWhatItBuiltWhenAStepFails(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Addr: "127.0.0.1:0", DataDir: dir, Role: RoleAll, SeedItems: 3, Workers: 1, NATSURL: "nats://127.0.0.1:port"}
	if _, err := New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "nats nats://127.0.0.1:port") {
		t.Fatalf("New with a bad NATS URL: %v, want the NATS error", err)
	}
	assertLockFree(t, dir)

	cfg.NATSURL = ""
	a, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := tryLock(filepath.Join(dir, "shop.db.worker-lock")); ok {
		t.Fatal("a built worker does not hold the worker lock")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	assertLockFree(t, dir)
	if err := a.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
}

func assertLockFree(t *testing.T, dir string) {
	t.Helper()
	unlock, ok, err := tryLock(filepath.Join(dir, "shop.db.worker-lock"))
	if err != nil || !ok {
		t.Fatalf("the worker lock is still held (%v)", err)
	}
	unlock()
}

// An address in use fails New before anything else is built: no data
// directory is made, no catalog seeded (it used to bind after the store).
func TestAnAddressInUseFailsBeforeTheStore(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, cfg := range []Config{
		{Addr: taken.Addr().String()},
		{Addr: "127.0.0.1:0", AdminAddr: taken.Addr().String()},
	} {
		cfg.DataDir, cfg.Role, cfg.SeedItems, cfg.Workers = filepath.Join(t.TempDir(), "data"), RoleAll, 3, 1
		if _, err := New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "listen on "+taken.Addr().String()) {
			t.Fatalf("New on a taken address: %v, want the listen error", err)
		}
		if _, err := os.Stat(cfg.DataDir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the data directory exists after New failed to listen (stat: %v)", err)
		}
	}
}
