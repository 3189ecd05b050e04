package sqlite_test

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlite"
)

// cpuTime is this process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStoreReads: the hot store reads with statements kept prepared
// per connection (the default) and prepared afresh on every call. Besides
// wall time it reports CPU time per read (cpu-ns/op), which other processes
// on a shared machine disturb much less. Compare with:
//
//	go test ./shop/sqlite -run '^$' -bench StoreReads -count 6 | benchstat -col /stmtcache -
func BenchmarkStoreReads(b *testing.B) {
	ctx := context.Background()
	for _, cached := range []bool{true, false} {
		opts := []sqlite.Option{}
		name := "stmtcache=on"
		if !cached {
			opts = append(opts, sqlite.WithoutStatementCache())
			name = "stmtcache=off"
		}
		db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "shop.db"), opts...)
		if err != nil {
			b.Fatal(err)
		}
		s := sqlite.NewStore(db, nil)
		if _, err := s.SeedIfEmpty(ctx, seed.Items(seed.DefaultItems)); err != nil {
			b.Fatal(err)
		}
		_, hash := shop.NewToken()
		sess, err := s.CreateSession(ctx, hash)
		if err != nil {
			b.Fatal(err)
		}
		for i := int64(1); i <= 5; i++ {
			if _, err := s.SetCartItem(ctx, sess.ID, i, 1); err != nil {
				b.Fatal(err)
			}
		}
		for _, read := range []struct {
			name string
			fn   func() error
		}{
			{"item", func() error { _, err := s.Item(ctx, 7); return err }},
			{"session", func() error { _, err := s.SessionByTokenHash(ctx, hash); return err }},
			{"cart", func() error { _, err := s.Cart(ctx, sess.ID); return err }},
			{"list", func() error { _, err := s.ListItems(ctx, shop.ItemFilter{Limit: 20}); return err }},
		} {
			b.Run(read.name+"/"+name, func(b *testing.B) {
				start := cpuTime(b)
				for b.Loop() {
					if err := read.fn(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
			})
		}
		db.Close()
	}
}
