package postgres_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
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

// TestAnOrdersLifeNotifiesOnlyTheCatalogVersion: of an order's writes
// (its checkout, confirmation and "ready" step) only the catalog
// version's move, when the checkout sells an item out, notifies, and it
// reaches a listener with the new version, so no process polls for it.
// The order events notify nobody: PostgreSQL signals every listening
// connection of the database at each notifying commit, whatever its
// channel, and each reads the queue in a transaction of its own, so a
// notification per event cost each order a commit per listener (the
// worker's relay is woken by its own jobs instead: shop/jobs). A sentinel
// sent last on the channel the old trigger notified (migration 00019,
// dropped by 00021) says that nothing came before it, without a wait.
func TestAnOrdersLifeNotifiesOnlyTheCatalogVersion(t *testing.T) {
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
	const orderEvents = "shop_order_events" // the channel of the dropped trigger
	conn, err := pgx.ConnectConfig(ctx, b.Postgres.Pool().Config().ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	for _, ch := range []string{postgres.CatalogVersionChannel, orderEvents} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			t.Fatal(err)
		}
	}

	_, hash := shop.NewToken()
	sess, err := b.Store.CreateSession(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Store.SetCartItem(ctx, sess.ID, 2, 1); err != nil {
		t.Fatal(err)
	}
	o, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "k",
		Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}})
	if err != nil {
		t.Fatalf("checkout: %v", err)
	}
	if !o.SoldOut {
		t.Fatal("the checkout did not sell item 2 out")
	}
	if moved, err := b.Store.ConfirmOrder(ctx, o.ID, jobs.ConfirmationMail, nil); !moved || err != nil {
		t.Fatalf("confirm: moved %v, %v", moved, err)
	}
	if moved, err := b.Store.MarkOrderReady(ctx, o.ID, nil); !moved || err != nil {
		t.Fatalf("ready: moved %v, %v", moved, err)
	}
	v, err := b.Store.CatalogVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Postgres.Pool().Exec(ctx, "SELECT pg_notify($1, 'sentinel')", orderEvents); err != nil {
		t.Fatal(err)
	}

	wait, cancel := context.WithTimeout(ctx, 30*time.Second) // a bound against a hang
	defer cancel()
	var got []string
	for {
		n, err := conn.WaitForNotification(wait)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, n.Channel+" "+n.Payload)
		if n.Payload == "sentinel" {
			break
		}
	}
	want := []string{postgres.CatalogVersionChannel + " " + strconv.FormatInt(v, 10), orderEvents + " sentinel"}
	if !slices.Equal(got, want) {
		t.Errorf("notifications %q, want %q", got, want)
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
