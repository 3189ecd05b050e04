package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
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
	s := sqlite.NewStore(db, now)
	t.Cleanup(func() { s.Close() })
	if _, err := s.SeedIfEmpty(ctx, items); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, items []shop.Item, now func() time.Time) shop.Store {
		return openStore(t, items, now)
	}, setNotes)
}

// setNotes writes through the transaction the store hands ConfirmOrder's
// callback, which on SQLite is a *sql.Tx.
func setNotes(ctx context.Context, tx shop.Tx, orderID int64, notes string) error {
	stx, ok := tx.(*sql.Tx)
	if !ok {
		return fmt.Errorf("the store's transaction is a %T, want *sql.Tx", tx)
	}
	_, err := stx.ExecContext(ctx, `UPDATE orders SET notes = ? WHERE id = ?`, notes, orderID)
	return err
}
