package app

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// When a step fails, New releases what the steps before it built: here the
// listener cannot bind, after the store, the worker lock and the queue were
// built, and the lock is free again afterwards.
func TestNewReleasesWhatItBuiltWhenAStepFails(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	cfg := Config{Addr: taken.Addr().String(), DataDir: dir, Role: RoleAll, SeedItems: 3, Workers: 1}
	if _, err := New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Fatalf("New on a taken address: %v, want the listen error", err)
	}
	assertLockFree(t, dir)

	cfg.Addr = "127.0.0.1:0"
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
