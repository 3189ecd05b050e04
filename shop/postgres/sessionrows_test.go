package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/sqlstore"
)

// TestSessionRowsNeverOutliveTheirSession: the rows that name a session
// or an item (cart lines, orders, idempotency keys) check no foreign key
// on insert (migration 00024: four of a cart change and checkout's seven
// checks), so the store must hold what the keys held. Pruning deletes an
// expired session's cart lines with it; a cart change or checkout of a
// pruned session is refused and writes nothing; and a checkout that holds
// a session's lock while pruning looks at it keeps the session (pruning
// waits for the lock and sees the order), where without the lock pruning
// deleted the session its new order names.
func TestSessionRowsNeverOutliveTheirSession(t *testing.T) {
	ctx := context.Background()
	b := openBackend(t, backend.Config{}) // items seeded
	pool := b.Postgres.Pool()
	var keys int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conparentid = 0
		AND confrelid IN ('sessions'::regclass, 'items'::regclass)`).Scan(&keys); err != nil {
		t.Fatal(err)
	}
	if keys != 0 {
		t.Errorf("%d foreign keys to sessions or items, want none (each costs a query per inserted row)", keys)
	}
	newSession := func(name string) int64 {
		t.Helper()
		s, err := b.Store.CreateSession(ctx, "hash-"+name)
		if err != nil {
			t.Fatal(err)
		}
		return s.ID
	}
	expire := func(id int64) {
		t.Helper()
		if _, err := pool.Exec(ctx, `UPDATE sessions SET expires_at = 1 WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
	}
	orphans := func() {
		t.Helper()
		for _, table := range []string{"cart_items", "orders", "idempotency_keys"} {
			var n int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+table+` r
				WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = r.session_id)`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%d rows of %s name a missing session", n, table)
			}
		}
	}

	// A session with a cart and no order, expired and pruned: its cart
	// goes with it.
	gone := newSession("gone")
	for item := int64(1); item <= 2; item++ {
		if _, err := b.Store.SetCartItem(ctx, gone, item, 1); err != nil {
			t.Fatal(err)
		}
	}
	// A session with an order, expired: kept for its order.
	kept := newSession("kept")
	if _, err := b.Store.SetCartItem(ctx, kept, 1, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: kept, IdempotencyKey: "kept",
		Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}}); err != nil {
		t.Fatal(err)
	}
	expire(gone)
	expire(kept)
	if _, err := b.Store.PruneSessions(ctx); err != nil {
		t.Fatal(err)
	}
	orphans()
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE id = ANY($1)`, []int64{gone, kept}).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 1 {
		t.Errorf("%d of the two expired sessions left after pruning, want 1 (the one with an order)", left)
	}

	// The pruned session's cart change and checkout are refused and write
	// nothing (the general way's lock finds no session).
	for _, qty := range []int{1, 3} {
		if _, err := b.Store.SetCartItem(ctx, gone, 3, qty); shop.ErrorCode(err) != shop.EUNAUTHORIZED {
			t.Errorf("cart change of a pruned session: %v, want %s", err, shop.EUNAUTHORIZED)
		}
	}
	if _, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: gone, IdempotencyKey: "gone",
		Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}}); err == nil {
		t.Error("checkout of a pruned session placed an order")
	}
	orphans()

	// A checkout holds a session's lock (as LockSession does) and places
	// its order while pruning waits for the lock: pruning must see the
	// order and keep the session.
	racing := newSession("racing")
	expire(racing)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var holder int
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid() FROM sessions WHERE id = $1 FOR UPDATE`, racing).Scan(&holder); err != nil {
		t.Fatal(err)
	}
	pruned := make(chan error, 1)
	go func() {
		_, err := b.Store.PruneSessions(ctx)
		pruned <- err
	}()
	// Wait until pruning waits for the lock (or has finished: without a
	// lock of its own it may not wait until its delete).
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for waiting := 0; waiting == 0; {
		select {
		case err := <-pruned:
			pruned <- err
			waiting = 1
			continue
		default:
		}
		if err := pool.QueryRow(waitCtx, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, holder).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	at := sqlstore.Micros(time.Now().UTC())
	if _, err := tx.Exec(ctx, `INSERT INTO orders (id, session_id, status, customer_name, email, total_cents, created_at, updated_at)
		VALUES (order_id_at($2), $1, 'placed', 'Ada', 'ada@example.com', 0, $2, $2)`, racing, at); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-pruned; err != nil {
		t.Fatal(err)
	}
	orphans()
}
