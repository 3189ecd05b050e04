package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlstore"
)

// Sizes is how much history Generate writes.
type Sizes struct {
	Orders   int // orders, each with 1 to 3 lines, 3 events and a mail
	Sessions int // sessions the orders belong to (and some without any)
	Items    int // catalog size (the default seed's items)
}

// Generate fills a migrated, empty database with a shop's realistic
// history, set-based (INSERT ... SELECT over generate_series, the catalog
// by COPY), so a million orders take seconds, not hours: Items items,
// Sessions sessions over the last 90 days, Orders orders spread over them
// (ready, their events published, their mail sent), the idempotency keys
// of the last day's orders, a day's completed jobs in River's table, and a
// few carts. It does not ANALYZE: what the planner makes of a fresh,
// never-analyzed database is part of what the EXPLAIN tests check.
func Generate(ctx context.Context, db *DB, s Sizes, now time.Time) error {
	if s.Orders < 0 || s.Sessions < 1 || s.Items < 1 {
		return fmt.Errorf("generate: want at least one session and one item, and no negative counts (got %+v)", s)
	}
	store := NewStore(db, func() time.Time { return now })
	if _, err := store.SeedIfEmpty(ctx, seed.Items(s.Items)); err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	var orders int64
	if err := db.primary.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&orders); err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	if orders > 0 {
		return errors.New("generate: the database has orders already; generate into a fresh, migrated one")
	}
	us := sqlstore.Micros(now)
	const day = int64(24 * time.Hour / time.Microsecond)
	args := pgx.NamedArgs{"orders": s.Orders, "sessions": s.Sessions, "items": s.Items, "now": us, "day": day,
		"jobs": min(s.Orders, 2*s.Orders/90+1)}
	// Order i's created_at and id: its month's partition and a serial
	// number, as order_id_at (migrations/00010) numbers them.
	orderAt := func(i string) string {
		return `(@now::bigint - 90 * @day::bigint + ` + i + ` * (90 * @day::bigint / greatest(@orders::bigint, 1)))`
	}
	orderID := func(i string) string { return `(order_id_floor(` + orderAt(i) + `) | (` + i + `::bigint << 10))` }
	steps := []struct{ what, sql string }{
		// Sessions over 90 days, each living 30.
		{"sessions", `INSERT INTO sessions (id, token_hash, created_at, expires_at) OVERRIDING SYSTEM VALUE
			SELECT i, md5('session ' || i), @now::bigint - 90 * @day::bigint + i * (90 * @day::bigint / @sessions::bigint), @now::bigint - 60 * @day::bigint + i * (90 * @day::bigint / @sessions::bigint)
			FROM generate_series(1, @sessions::bigint) i`},
		// Orders in time order; a session's orders scattered over the table
		// as real ones are (a multiplicative hash picks the session among
		// those alive at the order's time: created in the 30 days before).
		{"orders", `INSERT INTO orders (id, session_id, status, customer_name, email, notes, total_cents, created_at, updated_at)
			SELECT ` + orderID("i") + `, greatest(1, i * @sessions::bigint / greatest(@orders::bigint, 1) - (i * 7919) % greatest(@sessions::bigint / 3, 1)), 'ready', 'Customer ' || i, 'customer' || i || '@example.com', '',
				1000 + (i * 104729) % 9000, @now::bigint - 90 * @day::bigint + i * (90 * @day::bigint / greatest(@orders::bigint, 1)), @now::bigint - 90 * @day::bigint + i * (90 * @day::bigint / greatest(@orders::bigint, 1)) + 600000000
			FROM generate_series(1, @orders::bigint) i`},
		// One to three lines an order, distinct items.
		{"order lines", `INSERT INTO order_lines (order_id, item_id, name, quantity, unit_price_cents, line_total_cents)
			SELECT ` + orderID("o") + `, 1 + (o * 31 + l * 1009) % @items::bigint, 'Item ' || (1 + (o * 31 + l * 1009) % @items::bigint), 1 + l % 2, 500, 500 * (1 + l % 2)
			FROM generate_series(1, @orders::bigint) o, generate_series(0, 2) l
			WHERE l <= o % 3 AND (l = 0 OR 1009 * l % @items::bigint <> 0)`},
		{"order events", `INSERT INTO order_events (order_id, seq, status, created_at, published_at)
			SELECT ` + orderID("o") + `, k, (ARRAY['placed', 'confirmed', 'ready'])[k], @now::bigint - 90 * @day::bigint + o * (90 * @day::bigint / greatest(@orders::bigint, 1)) + k * 1000000,
				@now::bigint - 90 * @day::bigint + o * (90 * @day::bigint / greatest(@orders::bigint, 1)) + k * 1000000 + 50000
			FROM generate_series(1, @orders::bigint) o, generate_series(1, 3) k`},
		{"mails", `INSERT INTO mail_outbox (order_id, to_addr, subject, body, sent_at)
			SELECT ` + orderID("i") + `, 'customer' || i || '@example.com', 'Order ' || i || ' confirmed', 'Hello', @now::bigint - 90 * @day::bigint + i * (90 * @day::bigint / greatest(@orders::bigint, 1)) + 1000000
			FROM generate_series(1, @orders::bigint) i`},
		// The keys of the last day's orders (older ones are pruned).
		{"idempotency keys", `INSERT INTO idempotency_keys (session_id, key, request_hash, order_id, created_at)
			SELECT session_id, 'key-' || id, md5(id::text), id, created_at FROM orders WHERE created_at > @now::bigint - @day::bigint`},
		// River keeps completed jobs a day: two an order of the last day.
		{"jobs", `INSERT INTO river_job (args, attempt, attempted_at, created_at, finalized_at, kind, max_attempts, priority, queue, state, scheduled_at)
			SELECT jsonb_build_object('order_id', ` + orderID("(@orders::bigint - j / 2)") + `), 1, to_timestamp((@now::bigint - j * 1000000) / 1e6), to_timestamp((@now::bigint - j * 1000000) / 1e6),
				to_timestamp((@now::bigint - j * 1000000 + 5000) / 1e6), CASE WHEN j % 2 = 0 THEN 'order_ready' ELSE 'order_placed' END, 25, 1, 'default', 'completed',
				to_timestamp((@now::bigint - j * 1000000) / 1e6)
			FROM generate_series(1, @jobs::bigint) j`},
		// Carts of the most recent sessions.
		{"carts", `INSERT INTO cart_items (session_id, item_id, quantity)
			SELECT s, 1 + (s * 13 + l * 101) % @items::bigint, 1 + l
			FROM generate_series(greatest(1, @sessions::bigint - 1000), @sessions::bigint) s, generate_series(0, 1) l
			WHERE 101 * l % @items::bigint <> 0 OR l = 0`},
		{"sequences", `SELECT setval(pg_get_serial_sequence('sessions', 'id'), @sessions::bigint),
			setval('order_id_serial', greatest(@orders::bigint, 1), @orders::bigint > 0)`},
	}
	return db.inTx(ctx, func(tx pgx.Tx) error {
		// Bulk loading checks no foreign keys row by row where allowed (a
		// superuser's session; otherwise the checks run, only slower).
		if _, err := tx.Exec(ctx, `SAVEPOINT replica`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT replica`); err != nil {
				return err
			}
		}
		// The months the history spans.
		existing, err := orderPartitions(ctx, tx)
		if err != nil {
			return err
		}
		if _, err := ensureMonths(ctx, tx, existing, monthOf(now.Add(-90*24*time.Hour)), monthOf(now)); err != nil {
			return err
		}
		for _, st := range steps {
			if _, err := tx.Exec(ctx, st.sql, args); err != nil {
				return fmt.Errorf("generate %s: %w", st.what, err)
			}
		}
		return nil
	})
}
