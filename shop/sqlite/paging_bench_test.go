package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlite"
)

// A catalog of a million items, seeded once per benchmark process (about
// half a minute) and shared by the paging benchmarks.
var million struct {
	once  sync.Once
	dir   string
	store *sqlite.Store
	err   error
}

// TestMain removes the million-item catalog, which outlives the benchmark
// that made it (b.TempDir would remove it after the first benchmark).
func TestMain(m *testing.M) {
	code := m.Run()
	if million.dir != "" {
		if million.store != nil {
			million.store.Close()
		}
		os.RemoveAll(million.dir)
	}
	os.Exit(code)
}

func millionItems(b *testing.B) *sqlite.Store {
	b.Helper()
	million.once.Do(func() {
		dir, err := os.MkdirTemp("", "shop-million-")
		if err != nil {
			million.err = err
			return
		}
		million.dir = dir
		ctx := context.Background()
		db, err := sqlite.Open(ctx, filepath.Join(dir, "shop.db"))
		if err != nil {
			million.err = err
			return
		}
		million.store = sqlite.NewStore(db, nil)
		_, million.err = million.store.SeedIfEmpty(ctx, seed.Items(seed.MaxItems))
	})
	if million.err != nil {
		b.Fatal(million.err)
	}
	return million.store
}

// BenchmarkKeysetPaging reads page 1, 10, 100, 1,000 and 10,000 of a
// catalog of 1,000,000 items, 100 items a page, by keyset (id > last id):
// the time per page stays flat however deep the page, where OFFSET would
// grow with it. The category pages go as deep as one category reaches
// (83,333 items: page 833). Run with:
//
//	go test ./shop/sqlite -run '^$' -bench KeysetPaging -benchtime 2000x
func BenchmarkKeysetPaging(b *testing.B) {
	s := millionItems(b)
	ctx := context.Background()
	const limit = 100
	for _, page := range []int{1, 10, 100, 1_000, 10_000} {
		b.Run(fmt.Sprintf("all/page=%d", page), func(b *testing.B) {
			f := shop.ItemFilter{Limit: limit, After: int64((page - 1) * limit)}
			for b.Loop() {
				p, err := s.ListItems(ctx, f)
				if err != nil || len(p.Items) != limit {
					b.Fatalf("page %d: %d items, %v", page, len(p.Items), err)
				}
			}
		})
	}
	// Within a category, the cursor of page n is the last id of page n-1:
	// walk there once, then time the page.
	for _, page := range []int{1, 10, 100, 833} {
		b.Run(fmt.Sprintf("category/page=%d", page), func(b *testing.B) {
			f := shop.ItemFilter{Category: "pizza", Limit: limit}
			for range page - 1 {
				p, err := s.ListItems(ctx, f)
				if err != nil {
					b.Fatal(err)
				}
				f.After = p.Next
			}
			b.ResetTimer()
			for b.Loop() {
				p, err := s.ListItems(ctx, f)
				if err != nil || len(p.Items) == 0 {
					b.Fatalf("page %d: %d items, %v", page, len(p.Items), err)
				}
			}
		})
	}
}
