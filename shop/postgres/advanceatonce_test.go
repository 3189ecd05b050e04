package postgres_test

import (
	"context"
	"reflect"
	"testing"
	"time"

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

// TestReadyStepAtOnceCompletesItsJob: on PostgreSQL the worker's "ready"
// step is one round trip (MarkOrderReadyAtOnce: a pgx batch of the plans'
// setting and one statement, where MarkOrderReady's transaction took
// four): the order moves to ready with its event and the step's running
// River job is completed at the time given, as River's JobCompleteTx would
// have in the transaction. A retry moves nothing, writes no event and
// leaves the job as it is; a job no longer running is left as it is.
func TestReadyStepAtOnceCompletesItsJob(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	if _, err := backend.Migrate(ctx, backend.Config{DatabaseURL: url}); err != nil {
		t.Fatal(err)
	}
	rt := &pgtest.RoundTrips{}
	cfg := backend.Config{DatabaseURL: url}
	cfg.Postgres.MaxConns = 1 // every statement on the one connection whose trips are counted
	cfg.Postgres.ConnConfig = func(c *pgx.ConnConfig) { c.DialFunc = rt.Dial }
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Seed(ctx, seed.Items(10)); err != nil {
		t.Fatal(err)
	}
	confirmed := func(key, jobState string) (orderID, jobID int64) {
		t.Helper()
		s, err := b.Store.CreateSession(ctx, "hash-"+key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Store.SetCartItem(ctx, s.ID, 3, 1); err != nil {
			t.Fatal(err)
		}
		o, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: s.ID, IdempotencyKey: key,
			Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Store.ConfirmOrder(ctx, o.ID, jobs.ConfirmationMail, nil); err != nil {
			t.Fatal(err)
		}
		err = b.Postgres.Pool().QueryRow(ctx, `INSERT INTO river_job (args, kind, max_attempts, priority, queue, state, attempt, attempted_at)
			VALUES (jsonb_build_object('order_id', $1::bigint), 'order_ready', 25, 1, 'default', $2::river_job_state, 1, now()) RETURNING id`,
			o.ID, jobState).Scan(&jobID)
		if err != nil {
			t.Fatal(err)
		}
		return o.ID, jobID
	}
	job := func(id int64) string {
		t.Helper()
		var state string
		var finalized *time.Time
		if err := b.Postgres.Pool().QueryRow(ctx, `SELECT state::text, finalized_at FROM river_job WHERE id = $1`, id).Scan(&state, &finalized); err != nil {
			t.Fatal(err)
		}
		if finalized != nil {
			state += " at " + finalized.UTC().Format(time.RFC3339Nano)
		}
		return state
	}
	events := func(orderID int64) int {
		t.Helper()
		var n int
		if err := b.Postgres.Pool().QueryRow(ctx, `SELECT count(*) FROM order_events WHERE order_id = $1`, orderID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	ready := func(orderID, jobID int64, at time.Time) int {
		t.Helper()
		before := rt.Count()
		handled, err := b.Store.MarkOrderReadyAtOnce(ctx, orderID, shop.JobDone{ID: jobID, At: at})
		if err != nil || !handled {
			t.Fatalf("ready at once: handled %v, %v", handled, err)
		}
		return rt.Count() - before
	}
	// The first prepares the statements on the connection.
	warm, warmJob := confirmed("warm", "running")
	ready(warm, warmJob, time.Now())

	id, jobID := confirmed("order", "running")
	at := time.Date(2026, 12, 7, 13, 0, 0, 123000, time.UTC)
	done := "completed at " + at.Format(time.RFC3339Nano)
	if trips := ready(id, jobID, at); trips != 1 {
		t.Errorf("the ready step took %d round trips, want 1", trips)
	}
	if o, err := b.Store.OrderByID(ctx, id); err != nil || o.Status != shop.StatusReady || events(id) != 3 {
		t.Errorf("after the ready step: %+v (%v), %d events; want ready, 3 events", o, err, events(id))
	}
	if got := job(jobID); got != done {
		t.Errorf("the step's job is %q, want %q", got, done)
	}
	ready(id, jobID, at.Add(time.Hour))
	if got := job(jobID); events(id) != 3 || got != done {
		t.Errorf("after a retried step: %d events, job %q; want 3, %q", events(id), got, done)
	}
	other, otherJob := confirmed("other", "retryable")
	ready(other, otherJob, at)
	if got := job(otherJob); got != "retryable" {
		t.Errorf("a job no longer running is %q after the step, want it left retryable", got)
	}
}
