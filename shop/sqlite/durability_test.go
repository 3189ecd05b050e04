package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/perfscale/perfscale/shop/sqlite"
)

// An acknowledged write must survive an OS crash, not only a process
// crash: the write connection syncs the WAL on every commit
// (synchronous = FULL, 2), while WAL mode stays on.
func TestWriteConnectionSyncsEveryCommit(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var sync int
	var mode string
	if err := db.WriteDB().QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if err := db.WriteDB().QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if sync != 2 || mode != "wal" {
		t.Fatalf("write connection: synchronous %d, journal_mode %q; want 2 (FULL) and wal", sync, mode)
	}
}
