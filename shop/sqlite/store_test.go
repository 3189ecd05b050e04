package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/sqlite"
	"github.com/perfscale/perfscale/shop/storetest"
)

func openStore(t *testing.T, items []shop.Item, now func() time.Time) *sqlite.Store {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := sqlite.NewStore(db, nil, now)
	t.Cleanup(func() { s.Close() })
	if _, err := s.SeedIfEmpty(ctx, items); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, items []shop.Item, now func() time.Time) shop.Store {
		return openStore(t, items, now)
	})
}
