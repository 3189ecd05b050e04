package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlite"
)

// A seed that fails half-way leaves no items: the next start, finding the
// catalog empty, seeds it whole, instead of taking a half catalog as
// seeded (the seed used to commit 500 items at a time).
func TestSeedFailingHalfWayLeavesNoItems(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := sqlite.NewStore(db, nil)
	defer s.Close()
	items := seed.Items(1200)
	items[1100].ID = items[3].ID // the third batch fails on a duplicate id
	if n, err := s.SeedIfEmpty(ctx, items); err == nil {
		t.Fatalf("seeded %d items with a duplicate id", n)
	}
	var left int
	if err := db.WriteDB().QueryRowContext(ctx, `SELECT count(*) FROM items`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d items left by the failed seed, want none", left)
	}
	if n, err := s.SeedIfEmpty(ctx, seed.Items(1200)); err != nil || n != 1200 {
		t.Fatalf("the next seed: %d items, %v; want 1200", n, err)
	}
}

// The seed's one transaction does not leave the write-ahead log as large
// as the catalog: it is truncated once the items are in.
func TestSeedLeavesNoLargeLog(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shop.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s := sqlite.NewStore(db, nil)
	defer s.Close()
	if n, err := s.SeedIfEmpty(ctx, seed.Items(5000)); err != nil || n != 5000 {
		t.Fatalf("seeded %d, %v", n, err)
	}
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 0 {
		t.Fatalf("the write-ahead log is %d bytes after the seed, want it truncated", fi.Size())
	}
}
