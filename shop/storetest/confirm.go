package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/perfscale/perfscale/shop"
)

// TxWriter writes through a store's own transaction, as the job queue does
// in ConfirmOrder and MarkOrderReady: it sets an order's notes with tx, the
// shop.Tx the store handed its callback. The contract reads the notes back
// through the store, to see the callback's write commit or roll back with
// the store's.
type TxWriter func(ctx context.Context, tx shop.Tx, orderID int64, notes string) error

// testConfirmOrder: a confirmation is one transaction. The status change
// with its event, the mail and the callback's writes (the job queue's)
// commit together or not at all; a retry changes nothing of the order and
// sends no second mail, but its callback still runs and commits. The same
// holds for the step to ready.
func testConfirmOrder(t *testing.T, newStore Factory, setNotes TxWriter) {
	ctx := context.Background()
	s := newStore(t, items(2), nil)
	sess := newSession(t, s)
	must(s.SetCartItem(ctx, sess, 2, 1))(t)
	o, _ := must3(place(ctx, s, sess, "k"))(t)
	// mail writes the order's mail from the order the store read in its
	// transaction; composed counts its calls (only for an order it moves).
	composed := 0
	mail := func(got *shop.Order) shop.Mail {
		composed++
		if got.ID != o.ID || got.Email != o.Email || len(got.Lines) != len(o.Lines) || got.TotalCents != o.TotalCents {
			t.Errorf("the mail was written from %+v, want order %+v", got, o)
		}
		return shop.Mail{OrderID: got.ID, To: got.Email, Subject: "Order confirmed", Body: "Hello"}
	}
	want := shop.Mail{OrderID: o.ID, To: o.Email, Subject: "Order confirmed", Body: "Hello"}

	// check reads back what committed.
	check := func(step string, status shop.Status, mails int, events []shop.Status, notes string) {
		t.Helper()
		got := must(s.OrderByID(ctx, o.ID))(t)
		if got.Status != status || got.Notes != notes {
			t.Fatalf("%s: status %q, notes %q; want %q, %q", step, got.Status, got.Notes, status, notes)
		}
		if n := len(must(s.Mails(ctx))(t)); n != mails {
			t.Fatalf("%s: %d mails, want %d", step, n, mails)
		}
		var statuses []shop.Status
		for _, e := range must(s.OrderEvents(ctx, sess, o.ID, 0))(t) {
			statuses = append(statuses, e.Status)
		}
		if diff := cmp.Diff(events, statuses); diff != "" {
			t.Fatalf("%s: events (-want +got):\n%s", step, diff)
		}
	}
	// write returns a callback that sets the notes through the store's
	// transaction and then returns ret.
	calls := 0
	write := func(notes string, ret error) func(context.Context, shop.Tx) error {
		return func(ctx context.Context, tx shop.Tx) error {
			calls++
			if tx == nil {
				return errors.New("the callback got no transaction")
			}
			if err := setNotes(ctx, tx, o.ID, notes); err != nil {
				return err
			}
			return ret
		}
	}
	boom := errors.New("the queue refused")
	placed := []shop.Status{shop.StatusPlaced}
	confirmed := []shop.Status{shop.StatusPlaced, shop.StatusConfirmed}
	ready := []shop.Status{shop.StatusPlaced, shop.StatusConfirmed, shop.StatusReady}

	// A failing callback rolls back everything, its own write included.
	if _, err := s.ConfirmOrder(ctx, o.ID, mail, write("rolled back", boom)); !errors.Is(err, boom) {
		t.Fatalf("confirm with a failing callback: err %v, want the callback's", err)
	}
	check("after a failed confirmation", shop.StatusPlaced, 0, placed, "")

	if mailed := must(s.ConfirmOrder(ctx, o.ID, mail, write("confirmed", nil)))(t); !mailed {
		t.Fatal("the first confirmation did not record the mail")
	}
	check("after the confirmation", shop.StatusConfirmed, 1, confirmed, "confirmed")
	if m := must(s.Mails(ctx))(t)[0]; m.OrderID != o.ID || m.To != o.Email || m.Subject != want.Subject || m.Body != want.Body || m.SentAt.IsZero() {
		t.Fatalf("mail = %+v, want %+v with a time", m, want)
	}

	// A retried job: the order and the mail sink stay as they are, and the
	// callback's work still commits.
	if mailed := must(s.ConfirmOrder(ctx, o.ID, mail, write("retried", nil)))(t); mailed {
		t.Fatal("a second confirmation recorded a mail")
	}
	check("after a retried confirmation", shop.StatusConfirmed, 1, confirmed, "retried")

	// The step to ready, the same way.
	if _, err := s.MarkOrderReady(ctx, o.ID, write("ready rolled back", boom)); !errors.Is(err, boom) {
		t.Fatalf("ready with a failing callback: err %v, want the callback's", err)
	}
	check("after a failed step to ready", shop.StatusConfirmed, 1, confirmed, "retried")
	if moved := must(s.MarkOrderReady(ctx, o.ID, write("ready", nil)))(t); !moved {
		t.Fatal("confirmed -> ready did not move")
	}
	check("after the step to ready", shop.StatusReady, 1, ready, "ready")
	if moved := must(s.MarkOrderReady(ctx, o.ID, write("ready again", nil)))(t); moved {
		t.Fatal("a second step to ready moved the order")
	}
	check("after a retried step to ready", shop.StatusReady, 1, ready, "ready again")
	if calls != 6 {
		t.Fatalf("callbacks ran %d times, want once per call (6)", calls)
	}
	// A confirmation after the order went on changes nothing either.
	if mailed := must(s.ConfirmOrder(ctx, o.ID, mail, nil))(t); mailed {
		t.Fatal("confirming a ready order recorded a mail")
	}
	check("after a late confirmation", shop.StatusReady, 1, ready, "ready again")

	if composed != 2 {
		t.Fatalf("the mail was written %d times, want twice: each time the order moved to confirmed (the rolled-back call and the first committed one), never for one past placed", composed)
	}
	// An order confirmed without ConfirmOrder gets no mail from a late one:
	// the mail goes with the status change.
	must(s.SetCartItem(ctx, sess, 2, 1))(t)
	o2, _ := must3(place(ctx, s, sess, "k2"))(t)
	must(s.AdvanceOrder(ctx, o2.ID, shop.StatusPlaced, shop.StatusConfirmed))(t)
	other := func(o *shop.Order) shop.Mail { return shop.Mail{OrderID: o.ID, To: o.Email, Subject: "s", Body: "b"} }
	if mailed := must(s.ConfirmOrder(ctx, o2.ID, other, nil))(t); mailed {
		t.Fatal("confirming a confirmed order recorded a mail")
	}
	// An order that does not exist is not found, and nothing runs.
	if _, err := s.ConfirmOrder(ctx, o2.ID+100, other, write("missing", nil)); shop.ErrorCode(err) != shop.ENOTFOUND {
		t.Fatalf("confirming a missing order: %v, want %s", err, shop.ENOTFOUND)
	}
	if calls != 6 {
		t.Fatalf("the callback ran for a missing order")
	}
	if n := len(must(s.Mails(ctx))(t)); n != 1 {
		t.Fatalf("%d mails, want the first order's only", n)
	}
}
