package postgres_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// within fails t unless ch gives a value before the guard (a bound against
// a test that hangs, not a measured time).
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s in 30 s", what)
		panic("unreachable")
	}
}

// TestWritesNotifyTheirListeners: a checkout's order event wakes the
// outbox relay's listener, and the catalog version's move reaches a
// listener with the new version, so neither has to poll for them.
func TestWritesNotifyTheirListeners(t *testing.T) {
	ctx := t.Context()
	cfg := backend.Config{DatabaseURL: pgtest.NewDatabase(t)}
	if _, err := backend.Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	items := seed.Items(3)
	items[1].Stock = 1 // the checkout below sells it out
	if _, err := b.Seed(ctx, items); err != nil {
		t.Fatal(err)
	}

	written := b.OrderEventsWritten(ctx)
	within(t, written, "first wake-up (the listener's start)")
	versions := make(chan string, 10)
	go b.Postgres.Listen(ctx, postgres.CatalogVersionChannel, func(payload string, reconnected bool) {
		if !reconnected {
			versions <- payload
		}
	})
	// The listener's start is not signalled to the callback's caller here;
	// a second listener on the same channel says when LISTEN has run.
	started := make(chan struct{}, 1)
	go b.Postgres.Listen(ctx, postgres.CatalogVersionChannel, func(_ string, reconnected bool) {
		if reconnected {
			postgres.Poke(started)
		}
	})
	within(t, started, "catalog listener's start")

	_, hash := shop.NewToken()
	sess, err := b.Store.CreateSession(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Store.SetCartItem(ctx, sess.ID, 2, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-written:
		t.Fatal("woken before any order event was written")
	default:
	}
	o, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "k",
		Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}})
	if err != nil {
		t.Fatalf("checkout: %v", err)
	}
	within(t, written, "wake-up after the checkout's order event")
	if !o.SoldOut {
		t.Fatal("the checkout did not sell item 2 out")
	}
	v, err := b.Store.CatalogVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := within(t, versions, "catalog version notification"); got != strconv.FormatInt(v, 10) {
		t.Errorf("notified version %q, want %d", got, v)
	}
}

// TestAListenerComesBack: a listener whose connection is cut says so
// (reconnected), and notifications reach it again.
func TestAListenerComesBack(t *testing.T) {
	ctx := t.Context()
	cfg := backend.Config{DatabaseURL: pgtest.NewDatabase(t)}
	if _, err := backend.Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	starts := make(chan struct{}, 10)
	notes := make(chan string, 10)
	go b.Postgres.Listen(ctx, "shop_test_channel", func(p string, reconnected bool) {
		if reconnected {
			starts <- struct{}{}
			return
		}
		notes <- p
	})
	within(t, starts, "listener's start")
	pool := b.Postgres.Pool()
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'`); err != nil {
		t.Fatal(err)
	}
	within(t, starts, "listener's restart")
	if _, err := pool.Exec(ctx, `SELECT pg_notify('shop_test_channel', 'again')`); err != nil {
		t.Fatal(err)
	}
	if got := within(t, notes, "notification after the restart"); got != "again" {
		t.Errorf("payload %q, want again", got)
	}
}
