package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// Clock is a settable clock for stores under test, so expiry is tested
// without waiting and without reading the wall clock.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock stopped at a fixed instant.
func NewClock() *Clock { return &Clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func testSessionExpiry(t *testing.T, newStore Factory) {
	ctx := context.Background()
	clock := NewClock()
	s := newStore(t, items(1), clock.Now)
	_, hash := shop.NewToken()
	sess := must(s.CreateSession(ctx, hash))(t)
	if !sess.ExpiresAt.Equal(clock.Now().Add(shop.SessionTTL)) {
		t.Fatalf("session expires at %v, want %v", sess.ExpiresAt, clock.Now().Add(shop.SessionTTL))
	}
	clock.Advance(shop.SessionTTL - time.Second)
	if got := must(s.SessionByTokenHash(ctx, hash))(t); got.ID != sess.ID {
		t.Fatalf("session a second before expiry = %d, want %d", got.ID, sess.ID)
	}
	clock.Advance(2 * time.Second)
	_, err := s.SessionByTokenHash(ctx, hash)
	wantCode(t, err, shop.EUNAUTHORIZED)
}

func testIdempotencyKeyExpiry(t *testing.T, newStore Factory) {
	ctx := context.Background()
	clock := NewClock()
	s := newStore(t, items(2), clock.Now)
	orders := shop.NewOrderDesk(s, nil, clock.Now)
	sess := newSession(t, s)
	c := checkout()
	placeK := func() (*shop.Order, bool, error) {
		return orders.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess, IdempotencyKey: "k", Checkout: c})
	}
	must(s.SetCartItem(ctx, sess, 1, 1))(t)
	first, _, err := placeK()
	if err != nil {
		t.Fatal(err)
	}
	// Within the retention the key answers with the first order, and
	// pruning keeps it.
	clock.Advance(shop.IdempotencyRetention - time.Minute)
	if n := must(s.PruneIdempotencyKeys(ctx))(t); n != 0 {
		t.Fatalf("pruned %d keys within their retention", n)
	}
	again, created, err := placeK()
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("retry within the retention: %+v created %v err %v, want order %d", again, created, err, first.ID)
	}
	// Past it, the key may be used for a new order (pruned or not).
	clock.Advance(2 * time.Minute)
	must(s.SetCartItem(ctx, sess, 2, 1))(t)
	second, created, err := placeK()
	if err != nil || !created || second.ID == first.ID {
		t.Fatalf("key past its retention: %+v created %v err %v, want a new order", second, created, err)
	}
	// The new use is kept; the old one is gone. Pruning later removes it.
	clock.Advance(shop.IdempotencyRetention - time.Minute)
	if n := must(s.PruneIdempotencyKeys(ctx))(t); n != 0 {
		t.Fatalf("pruned %d keys within their retention", n)
	}
	clock.Advance(2 * time.Minute)
	if n := must(s.PruneIdempotencyKeys(ctx))(t); n != 1 {
		t.Fatalf("pruned %d keys past their retention, want 1", n)
	}
}

func testWorkerMethods(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t, items(2), nil)
	sess := newSession(t, s)
	must(s.SetCartItem(ctx, sess, 2, 3))(t)
	o, _, err := place(ctx, s, sess, "k")
	if err != nil {
		t.Fatal(err)
	}
	// The worker reads any session's order, lines included.
	got := must(s.OrderByID(ctx, o.ID))(t)
	if got.ID != o.ID || got.SessionID != sess || len(got.Lines) != 1 || got.Lines[0].Quantity != 3 || got.Email != o.Email {
		t.Fatalf("OrderByID = %+v, want %+v", got, o)
	}
	_, err = s.OrderByID(ctx, o.ID+100)
	wantCode(t, err, shop.ENOTFOUND)

	// The status moves one step at a time, and only from where it is.
	steps := []struct {
		from, to shop.Status
		moved    bool
	}{
		{shop.StatusPlaced, shop.StatusConfirmed, true},
		{shop.StatusPlaced, shop.StatusConfirmed, false}, // a retried job
		{shop.StatusConfirmed, shop.StatusReady, true},
		{shop.StatusConfirmed, shop.StatusReady, false},
	}
	for _, st := range steps {
		if moved := must(s.AdvanceOrder(ctx, o.ID, st.from, st.to))(t); moved != st.moved {
			t.Fatalf("advance %s -> %s: moved %v, want %v", st.from, st.to, moved, st.moved)
		}
	}
	if _, err := s.AdvanceOrder(ctx, o.ID, shop.StatusPlaced, shop.StatusReady); err == nil {
		t.Fatal("placed -> ready (skipping a step) was accepted")
	}
	if moved := must(s.AdvanceOrder(ctx, o.ID+100, shop.StatusPlaced, shop.StatusConfirmed))(t); moved {
		t.Fatal("a missing order was advanced")
	}
	if got := must(s.Order(ctx, sess, o.ID))(t); got.Status != shop.StatusReady {
		t.Fatalf("status %q after the steps, want ready", got.Status)
	}
}

// concurrently runs fn(i) for i in [0, n) at once and waits for all.
func concurrently(n int, fn func(i int)) {
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			fn(i)
		}()
	}
	start.Done()
	done.Wait()
}

func testFiftyCheckoutsOfFiveUnits(t *testing.T, newStore Factory) {
	ctx := context.Background()
	its := items(1)
	its[0].Stock = 5
	s := newStore(t, its, nil)
	const buyers = 50
	sessions := make([]int64, buyers)
	for i := range sessions {
		sessions[i] = newSession(t, s)
		must(s.SetCartItem(ctx, sessions[i], 1, 1))(t)
	}
	errs := make([]error, buyers)
	concurrently(buyers, func(i int) {
		_, _, errs[i] = place(ctx, s, sessions[i], fmt.Sprintf("buyer-%d", i))
	})
	sold := 0
	for i, err := range errs {
		var oos *shop.OutOfStockError
		switch {
		case err == nil:
			sold++
		case !errors.As(err, &oos):
			t.Fatalf("buyer %d: %v, want an order or out of stock", i, err)
		}
	}
	orders := 0
	for _, sess := range sessions {
		orders += len(must(s.ListOrders(ctx, sess, shop.OrderFilter{}))(t).Orders)
	}
	if sold != 5 || orders != 5 {
		t.Fatalf("%d checkouts succeeded and %d orders exist; want exactly 5 of each", sold, orders)
	}
	if got := stockOf(t, s, 1); got != 0 {
		t.Fatalf("stock = %d, want 0", got)
	}
}

func testFiftyCheckoutsOneKey(t *testing.T, newStore Factory) {
	ctx := context.Background()
	its := items(1)
	s := newStore(t, its, nil)
	sess := newSession(t, s)
	must(s.SetCartItem(ctx, sess, 1, 1))(t)
	const n = 50
	ids := make([]int64, n)
	created := make([]bool, n)
	errs := make([]error, n)
	concurrently(n, func(i int) {
		var o *shop.Order
		o, created[i], errs[i] = place(ctx, s, sess, "one-key")
		if o != nil {
			ids[i] = o.ID
		}
	})
	creators := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("answer %d: %v", i, errs[i])
		}
		if ids[i] == 0 || ids[i] != ids[0] {
			t.Fatalf("answers name different orders: %v", ids)
		}
		if created[i] {
			creators++
		}
	}
	if creators != 1 {
		t.Fatalf("%d answers report creating the order, want 1", creators)
	}
	if p := must(s.ListOrders(ctx, sess, shop.OrderFilter{}))(t); len(p.Orders) != 1 {
		t.Fatalf("%d orders, want 1", len(p.Orders))
	}
	if got := stockOf(t, s, 1); got != its[0].Stock-1 {
		t.Fatalf("stock = %d, want %d: more than one reservation", got, its[0].Stock-1)
	}
}

func testOneKeyTwoSessions(t *testing.T, newStore Factory) {
	ctx := context.Background()
	s := newStore(t, items(2), nil)
	sessions := []int64{newSession(t, s), newSession(t, s)}
	must(s.SetCartItem(ctx, sessions[0], 1, 1))(t)
	must(s.SetCartItem(ctx, sessions[1], 2, 2))(t)
	const n = 40 // half from each session, interleaved
	got := make([]*shop.Order, n)
	errs := make([]error, n)
	concurrently(n, func(i int) {
		got[i], _, errs[i] = place(ctx, s, sessions[i%2], "shared-key")
	})
	var mine [2]int64
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("answer %d: %v", i, errs[i])
		}
		who := i % 2
		if got[i].SessionID != sessions[who] {
			t.Fatalf("session %d got order %d of session %d", sessions[who], got[i].ID, got[i].SessionID)
		}
		if mine[who] == 0 {
			mine[who] = got[i].ID
		}
		if got[i].ID != mine[who] {
			t.Fatalf("session %d got orders %d and %d for one key", sessions[who], mine[who], got[i].ID)
		}
	}
	if mine[0] == mine[1] {
		t.Fatalf("both sessions got order %d", mine[0])
	}
	_, err := s.Order(ctx, sessions[0], mine[1])
	wantCode(t, err, shop.ENOTFOUND)
}

func testSessionPruning(t *testing.T, newStore Factory) {
	ctx := context.Background()
	clock := NewClock()
	s := newStore(t, items(3), clock.Now)
	orders := shop.NewOrderDesk(s, nil, clock.Now)
	// idle: a cart and nothing else; buyer: an order, then a new cart.
	idle, buyer := newSession(t, s), newSession(t, s)
	must(s.SetCartItem(ctx, idle, 1, 2))(t)
	must(s.SetCartItem(ctx, buyer, 2, 1))(t)
	o, _, err := orders.PlaceOrder(ctx, shop.PlaceOrder{SessionID: buyer, IdempotencyKey: "k", Checkout: checkout()})
	if err != nil {
		t.Fatal(err)
	}
	must(s.SetCartItem(ctx, buyer, 3, 1))(t)

	clock.Advance(shop.SessionTTL - time.Minute)
	if n := must(s.PruneSessions(ctx))(t); n != 0 {
		t.Fatalf("pruned %d sessions before they expired", n)
	}
	if c := must(s.Cart(ctx, idle))(t); len(c.Lines) != 1 {
		t.Fatalf("a live session's cart was pruned: %+v", c)
	}
	_, freshHash := shop.NewToken()
	fresh := must(s.CreateSession(ctx, freshHash))(t)
	must(s.SetCartItem(ctx, fresh.ID, 1, 1))(t)

	clock.Advance(2 * time.Minute)
	if n := must(s.PruneSessions(ctx))(t); n != 1 {
		t.Fatalf("pruned %d sessions, want 1 (the expired one without orders)", n)
	}
	for _, sess := range []int64{idle, buyer} {
		if c := must(s.Cart(ctx, sess))(t); len(c.Lines) != 0 {
			t.Fatalf("the cart of expired session %d survived pruning: %+v", sess, c)
		}
	}
	if got := must(s.OrderByID(ctx, o.ID))(t); got.SessionID != buyer {
		t.Fatalf("the order of an expired session is %+v after pruning", got)
	}
	if got := must(s.SessionByTokenHash(ctx, freshHash))(t); got.ID != fresh.ID {
		t.Fatalf("the live session is %+v after pruning", got)
	}
	if c := must(s.Cart(ctx, fresh.ID))(t); len(c.Lines) != 1 {
		t.Fatalf("the live session's cart was pruned: %+v", c)
	}
	if n := must(s.PruneSessions(ctx))(t); n != 0 {
		t.Fatalf("a second pruning deleted %d sessions, want 0", n)
	}
}
