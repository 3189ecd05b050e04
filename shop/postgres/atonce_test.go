package postgres_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

// generalQueue hides the queue's ConfirmationJob, so the desk takes every
// checkout the general way (the job inserted by River's InsertTx).
type generalQueue struct{ shop.ConfirmationQueue }

// TestCheckoutAtOnce: a plain checkout on PostgreSQL is one round trip,
// the River job included, and River works that job as its own: the row is
// the one River's InsertTx writes, and a worker confirms the order and
// makes it ready. The general path (a queue that only inserts by itself)
// is measured beside it. SHOP_CHECKOUT_ROUNDS=N also times N checkouts each
// way, in turns, at one user, and logs p50 and p99.
func TestCheckoutAtOnce(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	if _, err := backend.Migrate(ctx, backend.Config{DatabaseURL: url}); err != nil {
		t.Fatal(err)
	}
	rt := &pgtest.RoundTrips{}
	api := backend.Config{DatabaseURL: url}
	api.Postgres.ConnConfig = func(c *pgx.ConnConfig) { c.DialFunc = rt.Dial }
	a, err := backend.Open(ctx, api)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if _, err := a.Seed(ctx, seed.Items(20)); err != nil {
		t.Fatal(err)
	}
	general := shop.NewOrderDesk(a.Store, generalQueue{a.Queue}, nil)

	checkout := func(desk *shop.OrderDesk, key string) (*shop.Order, int, time.Duration) {
		t.Helper()
		s, err := a.Store.CreateSession(ctx, "hash-"+key)
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range []int64{3, 7} {
			if _, err := a.Store.SetCartItem(ctx, s.ID, item, 2); err != nil {
				t.Fatal(err)
			}
		}
		before, start := rt.Count(), time.Now()
		o, created, err := desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: s.ID, IdempotencyKey: key,
			Checkout: shop.Checkout{CustomerName: "Ada", Email: "ada@example.com"}})
		took := time.Since(start)
		if err != nil || !created {
			t.Fatalf("checkout %s: created %v, %v", key, created, err)
		}
		return o, rt.Count() - before, took
	}
	// The first of each way prepares its statements on the connection.
	checkout(a.Desk, "warm-at-once")
	checkout(general, "warm-general")
	atOnce, trips, _ := checkout(a.Desk, "at-once")
	generalOrder, generalTrips, _ := checkout(general, "general")
	t.Logf("round trips of a checkout: at once %d, the general way %d", trips, generalTrips)
	if trips != 1 {
		t.Errorf("a plain checkout took %d round trips, want 1", trips)
	}
	if len(atOnce.Lines) != 2 || atOnce.TotalCents != generalOrder.TotalCents {
		t.Errorf("the order placed at once is %+v, the general one %+v", atOnce, generalOrder)
	}
	compareJobRows(t, a, atOnce.ID, generalOrder.ID)

	// A worker of its own (as a cluster's) works the job the checkout wrote.
	w, err := backend.Open(ctx, backend.Config{DatabaseURL: url,
		Jobs: jobs.Config{Work: true, PrepTime: time.Millisecond, PollInterval: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if err := w.Queue.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Queue.Stop(context.Background()) })
	testwait.Eventually(t, time.Minute, func() error {
		o, err := a.Store.OrderByID(ctx, atOnce.ID)
		if err != nil {
			return err
		}
		if o.Status != shop.StatusReady {
			return fmt.Errorf("order %d placed at once is %s, want ready", o.ID, o.Status)
		}
		return nil
	})

	if n, _ := strconv.Atoi(os.Getenv("SHOP_CHECKOUT_ROUNDS")); n > 0 {
		var fast, slow []time.Duration
		for i := range n {
			for _, way := range []struct {
				desk *shop.OrderDesk
				into *[]time.Duration
			}{{a.Desk, &fast}, {general, &slow}} {
				_, _, took := checkout(way.desk, fmt.Sprintf("timed-%d-%p", i, way.into))
				*way.into = append(*way.into, took)
			}
		}
		t.Logf("%d checkouts each way at one user (PlaceOrder alone, two lines, a fresh session each): at once p50 %v p99 %v; general p50 %v p99 %v",
			n, pct(fast, 50), pct(fast, 99), pct(slow, 50), pct(slow, 99))
	}
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// compareJobRows: the confirmation job written at once has every column
// River's own insert gave the general checkout's job, but the order id.
func compareJobRows(t *testing.T, b *backend.Backend, atOnce, general int64) {
	t.Helper()
	row := func(orderID int64) string {
		var s string
		err := b.Postgres.Pool().QueryRow(context.Background(), `SELECT concat_ws(' | ', state, attempt, max_attempts,
			attempted_at IS NULL, attempted_by IS NULL, errors IS NULL, finalized_at IS NULL, kind, metadata, priority,
			queue, tags, unique_key IS NULL, unique_states IS NULL, scheduled_at <= now(), created_at <= now(),
			args - 'order_id', jsonb_typeof(args -> 'order_id'))
			FROM river_job WHERE (args ->> 'order_id')::bigint = $1`, orderID).Scan(&s)
		if err != nil {
			t.Fatalf("the job of order %d: %v", orderID, err)
		}
		return s
	}
	if got, want := row(atOnce), row(general); got != want {
		t.Errorf("the job written at once is\n\t%s\nRiver's own insert wrote\n\t%s", got, want)
	}
}
