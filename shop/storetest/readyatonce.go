package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/perfscale/perfscale/shop"
)

// testMarkOrderReadyAtOnce: a store either declines the step to ready in
// one statement (handled false) and changes nothing, or moves a confirmed
// order to ready with its one event, as MarkOrderReady does, and a retry
// moves nothing and writes no second event. The job it completes is the
// queue's (none here: a job id no row has); the jobs package checks the
// completion.
func testMarkOrderReadyAtOnce(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t, items(2), nil)
	sess := newSession(t, s)
	must(s.SetCartItem(ctx, sess, 2, 1))(t)
	o, _ := must3(place(ctx, s, sess, "k"))(t)
	if moved := must(s.AdvanceOrder(ctx, o.ID, shop.StatusPlaced, shop.StatusConfirmed))(t); !moved {
		t.Fatal("placed -> confirmed did not move")
	}
	events := func() []shop.Status {
		t.Helper()
		var statuses []shop.Status
		for _, e := range must(s.OrderEvents(ctx, sess, o.ID, 0))(t) {
			statuses = append(statuses, e.Status)
		}
		return statuses
	}
	done := shop.JobDone{ID: -1, At: time.Now()}
	handled := must(s.MarkOrderReadyAtOnce(ctx, o.ID, done))(t)
	want, status := []shop.Status{shop.StatusPlaced, shop.StatusConfirmed}, shop.StatusConfirmed
	if handled {
		want, status = append(want, shop.StatusReady), shop.StatusReady
		if again := must(s.MarkOrderReadyAtOnce(ctx, o.ID, done))(t); !again {
			t.Fatal("a store that took the step to ready at once declined its retry")
		}
	}
	if got := must(s.OrderByID(ctx, o.ID))(t); got.Status != status {
		t.Fatalf("after the step to ready at once (handled %v, then again): status %q, want %q", handled, got.Status, status)
	}
	if diff := cmp.Diff(want, events()); diff != "" {
		t.Fatalf("events after the step to ready at once (handled %v) (-want +got):\n%s", handled, diff)
	}
	if !handled {
		if moved := must(s.MarkOrderReady(ctx, o.ID, nil))(t); !moved {
			t.Fatal("a store that declined the step at once did not take it the general way")
		}
	}
}
