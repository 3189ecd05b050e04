package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/perfscale/perfscale/shop"
)

// testConfirmOrderAtOnce: a store either declines the confirmation at once
// (Handled false) and changes nothing, or does what ConfirmOrder does in
// one transaction: the mail composed from the order as it read it (and
// only for an order still placed), the order moved to confirmed with its
// one event and its mail, nothing of it visible before the commit
// (BeforeCommit looks from outside the transaction), and a retry that
// moves nothing, mails nothing and writes no second event. An order that
// is not there is ENOTFOUND. The next step's job and the completion are
// the queue's (a job no queue works, and a job id no row has); the jobs
// package checks the rows.
func testConfirmOrderAtOnce(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t, items(2), nil)
	sess := newSession(t, s)
	must(s.SetCartItem(ctx, sess, 2, 1))(t)
	o, _ := must3(place(ctx, s, sess, "k"))(t)
	composed := 0
	c := shop.ConfirmAtOnce{
		OrderID: o.ID,
		Mail: func(got *shop.Order) shop.Mail {
			composed++
			if got.ID != o.ID || got.Status != shop.StatusPlaced || len(got.Lines) != len(o.Lines) || got.TotalCents != o.TotalCents {
				t.Errorf("the mail was written from %+v, want placed order %+v", got, o)
			}
			return shop.Mail{OrderID: got.ID, To: got.Email, Subject: "Order confirmed", Body: "Hello"}
		},
		Next: shop.UniqueJobRow{Kind: "storetest_next", Args: fmt.Appendf(nil, `{"order_id": %d}`, o.ID), Queue: "storetest",
			Priority: 1, MaxAttempts: 1, ScheduledAt: time.Now().Add(time.Hour), UniqueKey: fmt.Appendf(nil, "storetest %d", o.ID), UniqueStates: 0xff},
		Done: shop.JobDone{ID: -1, At: time.Now()},
	}
	var before []bool
	c.BeforeCommit = func(moved bool) {
		before = append(before, moved)
		if got := must(s.OrderByID(ctx, o.ID))(t); moved && got.Status != shop.StatusPlaced {
			t.Errorf("before the commit another reader sees the order %q, want placed", got.Status)
		}
	}
	done := must(s.ConfirmOrderAtOnce(ctx, c))(t)
	if !done.Handled {
		if composed != 0 || len(before) != 0 || must(s.OrderByID(ctx, o.ID))(t).Status != shop.StatusPlaced {
			t.Fatalf("a store that declined the confirmation at once composed %d mails, ran BeforeCommit %v, or moved the order", composed, before)
		}
		return
	}
	again := must(s.ConfirmOrderAtOnce(ctx, c))(t)
	if want := (shop.ConfirmedAtOnce{Handled: true, Mailed: true}); done != want || again != (shop.ConfirmedAtOnce{Handled: true}) {
		t.Errorf("confirmed at once %+v, then again %+v; want %+v, then handled without a mail", done, again, want)
	}
	if composed != 1 || !cmp.Equal(before, []bool{true, false}) {
		t.Errorf("the mail composed %d times, BeforeCommit told %v; want once, and moved then not", composed, before)
	}
	if got := must(s.OrderByID(ctx, o.ID))(t); got.Status != shop.StatusConfirmed {
		t.Errorf("after the confirmation at once the order is %q, want confirmed", got.Status)
	}
	wantMail := []shop.Mail{{OrderID: o.ID, To: o.Email, Subject: "Order confirmed", Body: "Hello"}}
	if diff := cmp.Diff(wantMail, must(s.Mails(ctx))(t), cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".SentAt" }, cmp.Ignore())); diff != "" {
		t.Errorf("mails (-want +got):\n%s", diff)
	}
	var statuses []shop.Status
	for _, e := range must(s.OrderEvents(ctx, sess, o.ID, 0))(t) {
		statuses = append(statuses, e.Status)
	}
	if diff := cmp.Diff([]shop.Status{shop.StatusPlaced, shop.StatusConfirmed}, statuses); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	gone := c
	gone.OrderID = o.ID + 1<<10 // the same month and shard bucket, no such order
	if _, err := s.ConfirmOrderAtOnce(ctx, gone); shop.ErrorCode(err) != shop.ENOTFOUND {
		t.Errorf("confirming an order that is not there at once: %v, want ENOTFOUND", err)
	}
}
