package postgres_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// TestOrderStepsAtOnce: the worker's steps move an order's status and
// append its event in one statement, and the confirmation sends its read
// of the order with it. The general way sent the read, the update and the
// event one by one: a confirmation was six round trips (begin, the order's
// read, the update, the event, the mail, commit) and a "ready" step four
// (begin, the update, the event, commit); now four and three. A retried
// step that finds the order moved on writes nothing (no event, no mail);
// a confirmation of no such order is ENOTFOUND and writes nothing.
func TestOrderStepsAtOnce(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	if _, err := backend.Migrate(ctx, backend.Config{DatabaseURL: url}); err != nil {
		t.Fatal(err)
	}
	rt := &pgtest.RoundTrips{}
	cfg := backend.Config{DatabaseURL: url}
	cfg.Postgres.ConnConfig = func(c *pgx.ConnConfig) { c.DialFunc = rt.Dial }
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Seed(ctx, seed.Items(10)); err != nil {
		t.Fatal(err)
	}
	place := func(key string) int64 {
		t.Helper()
		s, err := b.Store.CreateSession(ctx, "hash-"+key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Store.SetCartItem(ctx, s.ID, 3, 2); err != nil {
			t.Fatal(err)
		}
		o, created, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: s.ID, IdempotencyKey: key,
			Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}})
		if err != nil || !created {
			t.Fatalf("checkout %s: created %v, %v", key, created, err)
		}
		return o.ID
	}
	events := func(orderID int64) []string {
		t.Helper()
		rows, _ := b.Postgres.Pool().Query(ctx, `SELECT seq || ' ' || status FROM order_events WHERE order_id = $1 ORDER BY seq`, orderID)
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	// The first of each step prepares its statements on the connection.
	warm := place("warm")
	if _, err := b.Store.ConfirmOrder(ctx, warm, jobs.ConfirmationMail, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Store.MarkOrderReady(ctx, warm, nil); err != nil {
		t.Fatal(err)
	}
	id := place("order")
	for _, step := range []struct {
		name   string
		run    func() (bool, error)
		done   bool // mailed or moved
		trips  int  // at most
		events []string
	}{
		{"confirmed", func() (bool, error) { return b.Store.ConfirmOrder(ctx, id, jobs.ConfirmationMail, nil) },
			true, 4, []string{"1 placed", "2 confirmed"}},
		{"confirmed again", func() (bool, error) { return b.Store.ConfirmOrder(ctx, id, jobs.ConfirmationMail, nil) },
			false, 3, []string{"1 placed", "2 confirmed"}},
		{"ready", func() (bool, error) { return b.Store.MarkOrderReady(ctx, id, nil) },
			true, 3, []string{"1 placed", "2 confirmed", "3 ready"}},
		{"ready again", func() (bool, error) { return b.Store.MarkOrderReady(ctx, id, nil) },
			false, 3, []string{"1 placed", "2 confirmed", "3 ready"}},
	} {
		t.Run(step.name, func(t *testing.T) {
			before := rt.Count()
			done, err := step.run()
			trips := rt.Count() - before
			if err != nil || done != step.done {
				t.Fatalf("got %v, %v; want %v", done, err, step.done)
			}
			if trips > step.trips {
				t.Errorf("%d round trips, want at most %d", trips, step.trips)
			}
			if got := events(id); !reflect.DeepEqual(got, step.events) {
				t.Errorf("the order's events are %q, want %q", got, step.events)
			}
		})
	}
	if _, err := b.Store.ConfirmOrder(ctx, id+1_000_000, jobs.ConfirmationMail, nil); shop.ErrorCode(err) != shop.ENOTFOUND {
		t.Errorf("confirming no such order: %v, want ENOTFOUND", err)
	}
	mails, err := b.Store.Mails(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(mails); n != 2 { // the warm order's and this one's
		t.Errorf("%d mails, want 2", n)
	}
	o, err := b.Store.OrderByID(ctx, id)
	if err != nil || o.Status != shop.StatusReady {
		t.Errorf("the order is %+v (%v), want ready", o, err)
	}
}
