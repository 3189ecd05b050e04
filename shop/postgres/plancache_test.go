package postgres_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
)

// inStoreTx are statements of the journey that run only in the store's
// write transactions (the worker's confirmation and "ready" step), by how
// they begin: on PostgreSQL the status update and its event are one
// statement (advanceAtOnce).
var inStoreTx = []string{"WITH moved AS ( UPDATE orders SET status", "UPDATE orders SET status", "INSERT INTO mail_outbox", "INSERT INTO order_events (order_id, seq"}

// TestStoreTransactionsPlanOnce runs the journey's store operations
// (TestJourneyStatementsReadFewRows' journey, River's worker included)
// eight times, then reads, on every connection of the service's pool,
// how PostgreSQL planned each statement pgx prepared there
// (pg_prepared_statements): none of those that run in the store's write
// transactions may have been planned for its values (a custom plan),
// which is planning again on a run. Left to choose (plan_cache_mode =
// auto), PostgreSQL planned the worker's status update, which names one
// order of the partitioned orders table, on every run (docs/postgres.md).
func TestStoreTransactionsPlanOnce(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	if _, err := backend.Migrate(ctx, backend.Config{DatabaseURL: url}); err != nil {
		t.Fatal(err)
	}
	pg, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The journey's items (ids up to 10,000) and a small history.
	err = postgres.Generate(ctx, pg, postgres.Sizes{Orders: 2_000, Sessions: 200, Items: 10_000}, time.Now())
	pg.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg := backend.Config{DatabaseURL: url}
	cfg.Postgres.MaxConns = 2 // so each statement runs often on each connection
	cfg.Jobs = jobs.Config{Work: true, NoMigrate: true, PollInterval: 20 * time.Millisecond, PrepTime: time.Nanosecond}
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Queue.Start(ctx); err != nil {
		t.Fatal(err)
	}
	placed := make([]placedOrder, journeyRounds)
	for i := range placed {
		placed[i] = checkout(t, b, i)
	}
	for _, p := range placed {
		afterCheckout(t, b, p)
	}
	stop, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Queue.Stop(stop); err != nil {
		t.Fatal(err)
	}

	type prepared struct {
		Generic, Custom int64
		Statement       string
	}
	var statusUpdates int64 // executions of the worker's status update seen
	conns := b.Postgres.Pool().AcquireAllIdle(ctx)
	if len(conns) == 0 {
		t.Fatal("no idle connection to read pg_prepared_statements on")
	}
	for _, c := range conns {
		rows, _ := c.Query(ctx, `SELECT generic_plans, custom_plans, statement FROM pg_prepared_statements`)
		all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[prepared])
		c.Release()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range all {
			q := strings.Join(strings.Fields(p.Statement), " ")
			if strings.HasPrefix(q, inStoreTx[0]) || strings.HasPrefix(q, inStoreTx[1]) {
				statusUpdates += p.Generic + p.Custom
			}
			if p.Custom > 0 && slices.ContainsFunc(inStoreTx, func(prefix string) bool { return strings.HasPrefix(q, prefix) }) {
				t.Errorf("planned for its values %d times (and %d runs of its generic plan): %.140s", p.Custom, p.Generic, q)
			}
		}
	}
	// Two per order (confirmed, then ready): the worker's statements were seen.
	if statusUpdates < 2*journeyRounds {
		t.Fatalf("saw the worker's status update run %d times on the pool's connections, want at least %d", statusUpdates, 2*journeyRounds)
	}
}
