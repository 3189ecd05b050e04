package postgres_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
)

// TestTheWorkersStepsCommitSynchronously: every write of the journey,
// the worker's confirmation and "ready" step (the at-once statements the
// worker runs on PostgreSQL) included, commits with synchronous_commit on.
// The steps were measured with it off (docs/postgres.md, "The two levers
// counted") and it was not kept: a step's commit lost in a crash of the
// server is lost for good, since River's completer, retrying its own
// completion of the job for about 7 s, marks the job completed once the
// server is back (the job was still running there), so nothing runs the
// step again. Triggers of the test's own record the setting each row of
// cart_items and order_events was written with, in the writing
// transaction: what the server committed with, not what the code sent.
func TestTheWorkersStepsCommitSynchronously(t *testing.T) {
	ctx := context.Background()
	b := openBackend(t, backend.Config{}) // items seeded
	pool := b.Postgres.Pool()
	if _, err := pool.Exec(ctx, `
		CREATE TABLE commit_setting (n SERIAL PRIMARY KEY, what TEXT NOT NULL, setting TEXT NOT NULL);
		CREATE FUNCTION record_commit_setting() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE kind TEXT := 'cart';
		BEGIN
			IF TG_TABLE_NAME LIKE 'order_events%' THEN -- a month's partition
				kind := NEW.status;
			END IF;
			INSERT INTO commit_setting (what, setting) VALUES (kind, current_setting('synchronous_commit'));
			RETURN NEW;
		END $$;
		CREATE TRIGGER record_commit_setting AFTER INSERT OR UPDATE ON cart_items
			FOR EACH ROW EXECUTE FUNCTION record_commit_setting();
		CREATE TRIGGER record_commit_setting AFTER INSERT ON order_events
			FOR EACH ROW EXECUTE FUNCTION record_commit_setting();`); err != nil {
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
	done, err := b.Store.ConfirmOrderAtOnce(ctx, shop.ConfirmAtOnce{OrderID: o.ID, Mail: jobs.ConfirmationMail, Next: next,
		Done: shop.JobDone{ID: 1, At: time.Now()}})
	if err != nil || !done.Handled || !done.Mailed {
		t.Fatalf("confirmation at once: %+v, %v", done, err)
	}
	if handled, err := b.Store.MarkOrderReadyAtOnce(ctx, o.ID, shop.JobDone{ID: 2, At: time.Now()}); err != nil || !handled {
		t.Fatalf("ready at once: handled %v, %v", handled, err)
	}
	rows, _ := pool.Query(ctx, `SELECT what || ' ' || setting FROM commit_setting ORDER BY n`)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cart on", "placed on", "confirmed on", "ready on"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("written with synchronous_commit %q, want %q", got, want)
	}
}
