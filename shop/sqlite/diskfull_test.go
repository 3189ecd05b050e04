package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/sqlite"
)

// A database that cannot grow (here SQLite's own page limit, which fails
// a write with the same SQLITE_FULL a full disk gives) refuses writes as
// unavailable (503 with Retry-After), not as an internal error (500), and
// takes writes again once it can grow.
func TestAFullDatabaseIsUnavailableNotInternal(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := sqlite.NewStore(db, time.Now)
	t.Cleanup(func() { s.Close() })
	var pages int64
	if err := db.WriteDB().QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	// The write pool is one connection, so the limit holds for every write.
	if _, err := db.WriteDB().ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, pages)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100_000 && err == nil; i++ {
		_, err = s.CreateSession(ctx, fmt.Sprintf("full-%064d", i))
	}
	if err == nil {
		t.Fatal("100,000 sessions fitted in a database held to its size")
	}
	if code := shop.ErrorCode(err); code != shop.EUNAVAILABLE {
		t.Fatalf("a write to a full database: %s (%v), want %s", code, err, shop.EUNAVAILABLE)
	}
	if _, err := db.WriteDB().ExecContext(ctx, `PRAGMA max_page_count = 1073741823`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSession(ctx, "after-full"); err != nil {
		t.Fatalf("a write once the database may grow again: %v", err)
	}
}
