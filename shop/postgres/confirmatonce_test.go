package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// TestAFailedConfirmationAtOnceWritesNothingAndKeepsItsConnection: the
// confirmation at once holds one connection across its two round trips,
// inside a transaction. When its statement fails on the server (the next
// step's arguments are no JSON) or the order is not there, nothing of it
// is kept (the order placed, its one event, no mail), and the transaction
// is rolled back, so the pool takes the connection back idle and the next
// confirmation runs on it: a pool of one connection opens no other.
func TestAFailedConfirmationAtOnceWritesNothingAndKeepsItsConnection(t *testing.T) {
	ctx := context.Background()
	cfg := backend.Config{DatabaseURL: pgtest.NewDatabase(t)}
	if _, err := backend.Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Postgres.MaxConns = 1
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Seed(ctx, seed.Items(5)); err != nil {
		t.Fatal(err)
	}
	s, err := b.Store.CreateSession(ctx, "hash")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Store.SetCartItem(ctx, s.ID, 2, 1); err != nil {
		t.Fatal(err)
	}
	o, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: s.ID, IdempotencyKey: "k",
		Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	next := shop.UniqueJobRow{Kind: "test_next", Args: fmt.Appendf(nil, `{"order_id": %d}`, o.ID), Queue: "test", Priority: 1,
		MaxAttempts: 1, ScheduledAt: time.Now().Add(time.Hour), UniqueKey: []byte("test next"), UniqueStates: 0xff}
	opened := b.Postgres.Pool().Stat().NewConnsCount()
	confirm := func(orderID int64, args []byte) (shop.ConfirmedAtOnce, error) {
		row := next
		row.Args = args
		return b.Store.ConfirmOrderAtOnce(ctx, shop.ConfirmAtOnce{OrderID: orderID, Mail: jobs.ConfirmationMail, Next: row})
	}
	if _, err := confirm(o.ID, []byte("no json")); err == nil {
		t.Fatal("a confirmation whose statement fails: no error")
	}
	if _, err := confirm(o.ID+1<<10, next.Args); shop.ErrorCode(err) != shop.ENOTFOUND {
		t.Fatalf("a confirmation of no such order: %v, want ENOTFOUND", err)
	}
	got, err := b.Store.OrderByID(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	mails, err := b.Store.Mails(ctx)
	if err != nil {
		t.Fatal(err)
	}
	events, err := b.Store.OrderEvents(ctx, s.ID, o.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != shop.StatusPlaced || len(mails) != 0 || len(events) != 1 {
		t.Fatalf("after the failed confirmations: %q, %d mails, %d events; want placed, none, 1", got.Status, len(mails), len(events))
	}
	if done, err := confirm(o.ID, next.Args); err != nil || !done.Mailed {
		t.Fatalf("the confirmation after the failed ones: %+v, %v", done, err)
	}
	if n := b.Postgres.Pool().Stat().NewConnsCount() - opened; n != 0 {
		t.Errorf("the pool of one opened %d connections after the failed confirmations, want none (each left its transaction rolled back)", n)
	}
}
