package storetest

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/perfscale/perfscale/shop"
)

// eventSummary is what the contract pins of an event; ID and At are the
// store's own.
type eventSummary struct {
	OrderID, Seq int64
	Status       shop.Status
}

func summarise(events []shop.OrderEvent) []eventSummary {
	out := []eventSummary{}
	for _, e := range events {
		out = append(out, eventSummary{e.OrderID, e.Seq, e.Status})
	}
	return out
}

// testOrderEventsOutbox: every status change, and only a change, appends
// an event in the change's transaction; the relay's reads see them in
// outbox order until marked published.
func testOrderEventsOutbox(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t, items(3), nil)
	a, b := newSession(t, s), newSession(t, s)

	must(s.SetCartItem(ctx, a, 2, 1))(t)
	o1, _ := must3(place(ctx, s, a, "k1"))(t)
	must3(place(ctx, s, a, "k1"))(t) // a replay changes nothing
	_, _, err := place(ctx, s, a, "k-empty")
	wantCode(t, err, shop.ECONFLICT) // an empty cart orders nothing
	must(s.SetCartItem(ctx, b, 3, 1))(t)
	o2, _ := must3(place(ctx, s, b, "k2"))(t)

	if !must(s.AdvanceOrder(ctx, o1.ID, shop.StatusPlaced, shop.StatusConfirmed))(t) {
		t.Fatal("placed -> confirmed did not move")
	}
	if must(s.AdvanceOrder(ctx, o1.ID, shop.StatusPlaced, shop.StatusConfirmed))(t) {
		t.Fatal("a second placed -> confirmed moved the order")
	}
	must(s.AdvanceOrder(ctx, o1.ID, shop.StatusConfirmed, shop.StatusReady))(t)

	want := []eventSummary{
		{o1.ID, 1, shop.StatusPlaced},
		{o2.ID, 1, shop.StatusPlaced},
		{o1.ID, 2, shop.StatusConfirmed},
		{o1.ID, 3, shop.StatusReady},
	}
	pending := must(s.UnpublishedOrderEvents(ctx, 10))(t)
	if diff := cmp.Diff(want, summarise(pending)); diff != "" {
		t.Fatalf("unpublished events in outbox order (-want +got):\n%s", diff)
	}
	// Ids are distinct and ascend within an order: what the relay and a
	// consumer rely on. (Across orders a sharded store's ids name the
	// shard too, and its outbox is each shard's, merged by time.)
	seen, last := map[int64]bool{}, map[int64]int64{}
	for _, e := range pending {
		if seen[e.ID] || e.ID <= last[e.OrderID] {
			t.Fatalf("outbox ids repeated or not ascending within an order: %+v", pending)
		}
		seen[e.ID], last[e.OrderID] = true, e.ID
	}
	if got := must(s.UnpublishedOrderEvents(ctx, 2))(t); len(got) != 2 || got[0].ID != pending[0].ID {
		t.Fatalf("limit 2 gave %+v", got)
	}

	// The owner reads its order's events, resuming after a seq; another
	// session reads none.
	if diff := cmp.Diff(want[2:], summarise(must(s.OrderEvents(ctx, a, o1.ID, 1))(t))); diff != "" {
		t.Fatalf("order events after seq 1 (-want +got):\n%s", diff)
	}
	if got := must(s.OrderEvents(ctx, b, o1.ID, 0))(t); len(got) != 0 {
		t.Fatalf("session b reads session a's order events: %+v", got)
	}

	// Marked published, they leave the relay's queue; marking twice is harmless.
	ids := []int64{pending[0].ID, pending[2].ID}
	if err := s.MarkOrderEventsPublished(ctx, ids); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkOrderEventsPublished(ctx, ids); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkOrderEventsPublished(ctx, nil); err != nil {
		t.Fatal(err)
	}
	left := must(s.UnpublishedOrderEvents(ctx, 10))(t)
	if diff := cmp.Diff([]eventSummary{want[1], want[3]}, summarise(left)); diff != "" {
		t.Fatalf("unpublished after marking (-want +got):\n%s", diff)
	}
	// Published or not, the order's history is whole.
	if got := must(s.OrderEvents(ctx, a, o1.ID, 0))(t); len(got) != 3 {
		t.Fatalf("order history has %d events, want 3", len(got))
	}
}
