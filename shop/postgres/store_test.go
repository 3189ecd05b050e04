package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/storetest"
)

// openStore gives the test a fresh, migrated database with items.
func openStore(t *testing.T, items []shop.Item, now func() time.Time) shop.Store {
	t.Helper()
	ctx := context.Background()
	cfg := backend.Config{DatabaseURL: pgtest.NewDatabase(t), Now: now}
	if _, err := backend.Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Seed(ctx, items); err != nil {
		t.Fatal(err)
	}
	return b.Store
}

func TestStoreContract(t *testing.T) {
	storetest.Run(t, openStore, setNotes)
}

// setNotes writes through the transaction the store hands ConfirmOrder's
// callback, which on PostgreSQL is a pgx.Tx.
func setNotes(ctx context.Context, tx shop.Tx, orderID int64, notes string) error {
	ptx, ok := tx.(pgx.Tx)
	if !ok {
		return fmt.Errorf("the store's transaction is a %T, want pgx.Tx", tx)
	}
	_, err := ptx.Exec(ctx, `UPDATE orders SET notes = $1 WHERE id = $2`, notes, orderID)
	return err
}
