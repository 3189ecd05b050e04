package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
)

// TestOrderRowsNeverOutliveTheirOrder: the rows that name an order (its
// lines, events, idempotency key and mail) check no foreign key on insert
// (migration 00023: a check per row was a tenth of a checkout's work), so
// the store's statements must hold what the keys held: no such row without
// its order. After a checkout the database refuses half-way (a failure of
// the job's insert, the statement's last write), a checkout refused for
// stock, one placed, confirmed and made ready, and a confirmation of no
// such order, no line, event, key or mail names a missing order, and the
// failed checkout left no order either.
func TestOrderRowsNeverOutliveTheirOrder(t *testing.T) {
	ctx := context.Background()
	b := openBackend(t, backend.Config{}) // items seeded
	pool := b.Postgres.Pool()
	var keys int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND confrelid = 'orders'::regclass
		AND conrelid IN ('order_lines'::regclass, 'order_events'::regclass, 'idempotency_keys'::regclass, 'mail_outbox'::regclass)`).Scan(&keys); err != nil {
		t.Fatal(err)
	}
	if keys != 0 {
		t.Errorf("%d foreign keys from an order's rows to orders, want none (each costs a query per inserted row)", keys)
	}
	checkout := func(key string, item int64, qty int) (*shop.Order, error) {
		t.Helper()
		s, err := b.Store.CreateSession(ctx, "hash-"+key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Store.SetCartItem(ctx, s.ID, item, qty); err != nil {
			t.Fatal(err)
		}
		o, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: s.ID, IdempotencyKey: key,
			Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}})
		return o, err
	}
	ordersNow := func() (n int) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// A checkout whose statement fails at its last write: nothing of it stays.
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION refuse_job() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'the test refuses the job'; END $$;
		CREATE TRIGGER refuse_job BEFORE INSERT ON river_job FOR EACH ROW EXECUTE FUNCTION refuse_job();`); err != nil {
		t.Fatal(err)
	}
	if _, err := checkout("refused-job", 1, 1); err == nil {
		t.Error("a checkout whose job insert fails: no error")
	}
	if n := ordersNow(); n != 0 {
		t.Errorf("%d orders after the failed checkout, want 0", n)
	}
	if _, err := pool.Exec(ctx, `DROP TRIGGER refuse_job ON river_job`); err != nil {
		t.Fatal(err)
	}

	// A checkout refused for stock, then one that goes all the way.
	if _, err := pool.Exec(ctx, `UPDATE items SET stock = 1 WHERE id = 2`); err != nil {
		t.Fatal(err)
	}
	if _, err := checkout("no-stock", 2, 3); err == nil {
		t.Error("a checkout of 3 with a stock of 1: no error")
	}
	o, err := checkout("placed", 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	next := shop.UniqueJobRow{Kind: "test_next", Args: fmt.Appendf(nil, `{"order_id": %d}`, o.ID), Queue: "test", Priority: 1,
		MaxAttempts: 1, ScheduledAt: time.Now().Add(time.Hour), UniqueKey: []byte("test next"), UniqueStates: 0xff}
	for _, id := range []int64{o.ID, o.ID + 1<<10} { // the order, and one that is not there
		if _, err := b.Store.ConfirmOrderAtOnce(ctx, shop.ConfirmAtOnce{OrderID: id, Mail: jobs.ConfirmationMail, Next: next}); err != nil && id == o.ID {
			t.Fatal(err)
		}
		if _, err := b.Store.MarkOrderReadyAtOnce(ctx, id, shop.JobDone{ID: 1, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if n := ordersNow(); n != 1 {
		t.Errorf("%d orders, want the one placed", n)
	}
	for _, table := range []string{"order_lines", "order_events", "idempotency_keys", "mail_outbox"} {
		var rows, orphans int
		if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = r.order_id))
			FROM `+table+` r`).Scan(&rows, &orphans); err != nil {
			t.Fatal(err)
		}
		if rows == 0 || orphans != 0 {
			t.Errorf("%s: %d rows, %d of them naming no order; want some, none", table, rows, orphans)
		}
	}
}
