package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
)

// Orders, their lines and their events are partitioned by month over the
// order id (migrations/00010): an id is its month's number (months since
// 1970-01) shifted left by monthShift, with a serial number in the bits
// below (above 10 bits left for a shard's bucket, docs/sharding.md).
const monthShift = 40

// MonthsAhead is how many months past the current one have their
// partitions made in advance: maintenance runs daily, so a month exists
// weeks before its first order, even if maintenance fails for a while.
const MonthsAhead = 2

// MinOrderRetention is the shortest order retention: a live session (it
// lasts shop.SessionTTL) never sees its orders go, and idempotency keys
// (shop.IdempotencyRetention) are long gone when their orders are.
const MinOrderRetention = shop.SessionTTL

// partitionLock is the advisory lock id that serialises maintenance, so
// replicas starting together create a month once.
const partitionLock = 0x9a27

// partitionLockTimeout bounds the wait for the tables' locks: creating and
// detaching a partition briefly locks the parent table, and maintenance
// had better fail (and run again later) than queue every request behind a
// long transaction.
const partitionLockTimeout = 5 * time.Second

// partitionedTables are the tables partitioned by order month, in the
// order their partitions are dropped (those that reference orders first).
var partitionedTables = []string{"order_events", "order_lines", "orders"}

// month is a calendar month as months since 1970-01.
type month int

func monthOf(t time.Time) month {
	t = t.UTC()
	return month((t.Year()-1970)*12 + int(t.Month()) - 1)
}

// start is the month's first instant.
func (m month) start() time.Time {
	return time.Date(1970+int(m)/12, time.Month(int(m)%12+1), 1, 0, 0, 0, 0, time.UTC)
}

// firstID is the lowest order id of the month.
func (m month) firstID() int64 { return int64(m) << monthShift }

// partition is the name of table's partition for the month.
func (m month) partition(table string) string {
	s := m.start()
	return fmt.Sprintf("%s_p%04d%02d", table, s.Year(), int(s.Month()))
}

// legacy is the suffix of the partitions that hold the orders placed
// before the tables were partitioned (ids below 2^40).
const legacy = "_legacy"

// PartitionChanges says what maintenance did: the order months (as
// 2006-01, or "legacy") whose partitions it created and dropped.
type PartitionChanges struct {
	Created, Dropped []string
}

// MaintainPartitions makes the order partitions of now's month and the
// MonthsAhead after it, and, with an order retention (Options), drops the
// months whose every order is older than the retention: the orders, lines
// and events of a month go together, in one transaction, with the month's
// idempotency keys and mails, so no order is ever left in part. It is safe
// to run from every replica at once.
func (db *DB) MaintainPartitions(ctx context.Context, now time.Time) (PartitionChanges, error) {
	var ch PartitionChanges
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		ch = PartitionChanges{}
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", partitionLockTimeout.Milliseconds())); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, partitionLock); err != nil {
			return err
		}
		existing, err := orderPartitions(ctx, tx)
		if err != nil {
			return err
		}
		current := monthOf(now)
		if ch.Created, err = ensureMonths(ctx, tx, existing, current, current+MonthsAhead); err != nil {
			return err
		}
		if db.orderRetention <= 0 {
			return nil
		}
		if err := dropExpired(ctx, tx, existing, now.Add(-db.orderRetention), &ch); err != nil || len(ch.Dropped) == 0 {
			return err
		}
		return deleteSessionsOfDroppedOrders(ctx, tx, existing, ch.Dropped, current)
	})
	if err != nil {
		return PartitionChanges{}, fmt.Errorf("maintain order partitions at %s: %w", db.where, err)
	}
	return ch, nil
}

// orderPartitions lists the partitions of orders by name, oldest first.
func orderPartitions(ctx context.Context, tx pgx.Tx) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'orders'::regclass ORDER BY c.relname`)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// ensureMonths creates the partitions of the months from first to last
// that are not among existing, and names them (as 2006-01).
func ensureMonths(ctx context.Context, tx pgx.Tx, existing []string, first, last month) ([]string, error) {
	var created []string
	for m := first; m <= last; m++ {
		if slices.Contains(existing, m.partition("orders")) {
			continue
		}
		if err := createMonth(ctx, tx, m); err != nil {
			return nil, err
		}
		created = append(created, m.start().Format("2006-01"))
	}
	return created, nil
}

func createMonth(ctx context.Context, tx pgx.Tx, m month) error {
	// orders first: the others' keys reference it.
	for _, table := range slices.Backward(partitionedTables) {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s PARTITION OF %s FOR VALUES FROM (%d) TO (%d)`,
			pgx.Identifier{m.partition(table)}.Sanitize(), table, m.firstID(), (m+1).firstID())); err != nil {
			return fmt.Errorf("create partition %s: %w", m.partition(table), err)
		}
	}
	if _, err := tx.Exec(ctx, `ALTER TABLE `+pgx.Identifier{m.partition("orders")}.Sanitize()+
		` ALTER COLUMN session_id SET (n_distinct = `+sessionsPerOrder+`)`); err != nil {
		return fmt.Errorf("set the sessions of %s: %w", m.partition("orders"), err)
	}
	return nil
}

// sessionsPerOrder is what ANALYZE records of a month's orders' sessions,
// whatever its sample holds (n_distinct, negative: distinct sessions as a
// fraction of the rows): a session places two orders a month on average.
// A shop's guests place a few orders each, but early in a month, or on a
// benchmark whose few users keep one session each, the sample can show a
// handful of sessions owning every order; the planner then expects a
// session's page among the month's newest orders and reads the primary
// key backward, with session_id as a filter, through every order of the
// month to find a new session's few (docs/postgres.md). Migration 00017
// sets it on the partitions made before.
const sessionsPerOrder = "-0.5"

// dropExpired drops the months (and the legacy partition) whose orders
// were all created before cutoff.
func dropExpired(ctx context.Context, tx pgx.Tx, existing []string, cutoff time.Time, ch *PartitionChanges) error {
	for _, name := range existing {
		if name == "orders"+legacy {
			var newest int64
			if err := tx.QueryRow(ctx, `SELECT created_at FROM orders_legacy_newest`).Scan(&newest); err != nil {
				return fmt.Errorf("read the newest legacy order: %w", err)
			}
			if newest >= cutoff.UnixMicro() {
				continue
			}
			legacyPart := func(table string) string { return table + legacy }
			if err := dropPartitions(ctx, tx, legacyPart, math.MinInt64, 1<<monthShift); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DROP TABLE orders_legacy_newest`); err != nil {
				return err
			}
			ch.Dropped = append(ch.Dropped, "legacy")
			continue
		}
		m, ok := parseMonth(name)
		if !ok || (m + 1).start().After(cutoff) {
			continue
		}
		if err := dropPartitions(ctx, tx, m.partition, m.firstID(), (m + 1).firstID()); err != nil {
			return err
		}
		ch.Dropped = append(ch.Dropped, m.start().Format("2006-01"))
	}
	return nil
}

// deleteSessionsOfDroppedOrders deletes the sessions that were kept for
// their orders (PruneSessions stores their expires_at negated) and whose
// orders are all gone with the dropped months: those that expired before
// the oldest month left began, as a session's orders were placed while it
// lived. The expiry index finds them; the probe of orders keeps any that
// an order still names.
func deleteSessionsOfDroppedOrders(ctx context.Context, tx pgx.Tx, existing, dropped []string, current month) error {
	oldest := current
	for _, name := range existing {
		if m, ok := parseMonth(name); ok && m < oldest && !slices.Contains(dropped, m.start().Format("2006-01")) {
			oldest = m
		}
	}
	// Their cart lines (pruning emptied them) and idempotency keys (pruned
	// by age) go with them in the same statement: no foreign key cascades
	// to them (migration 00024).
	if _, err := tx.Exec(ctx, `WITH gone AS (
		DELETE FROM sessions WHERE expires_at >= $1 AND expires_at < 0
		AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.session_id = sessions.id)
		RETURNING id
	), carts AS (
		DELETE FROM cart_items WHERE session_id IN (SELECT id FROM gone)
	), keys AS (
		DELETE FROM idempotency_keys WHERE session_id IN (SELECT id FROM gone)
	)
	SELECT count(*) FROM gone`, -oldest.start().UnixMicro()); err != nil {
		return fmt.Errorf("delete the sessions of dropped orders: %w", err)
	}
	return nil
}

// parseMonth reads the month of an orders_pYYYYMM partition.
func parseMonth(name string) (month, bool) {
	t, err := time.Parse("200601", strings.TrimPrefix(name, "orders_p"))
	if err != nil || !strings.HasPrefix(name, "orders_p") {
		return 0, false
	}
	return monthOf(t), true
}

// dropPartitions removes the orders with ids in [lo, hi): first what names
// them outside the partitions (idempotency keys, mails), then each table's
// partition, detached and dropped, the referencing tables' first.
func dropPartitions(ctx context.Context, tx pgx.Tx, partition func(table string) string, lo, hi int64) error {
	for _, table := range []string{"idempotency_keys", "mail_outbox"} {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE order_id >= $1 AND order_id < $2`, lo, hi); err != nil {
			return fmt.Errorf("delete the %s of orders %d to %d: %w", table, lo, hi, err)
		}
	}
	for _, table := range partitionedTables {
		part := pgx.Identifier{partition(table)}.Sanitize()
		if _, err := tx.Exec(ctx, `ALTER TABLE `+table+` DETACH PARTITION `+part); err != nil {
			return fmt.Errorf("detach %s: %w", part, err)
		}
		if _, err := tx.Exec(ctx, `DROP TABLE `+part); err != nil {
			return fmt.Errorf("drop %s: %w", part, err)
		}
	}
	return nil
}

// ErrOrderRetention: an order retention below MinOrderRetention.
var ErrOrderRetention = errors.New("order retention too short")

func checkOrderRetention(d time.Duration) error {
	if d != 0 && d < MinOrderRetention {
		return fmt.Errorf("%w: %s is less than %s (the session lifetime); 0 keeps every order", ErrOrderRetention, d, MinOrderRetention)
	}
	return nil
}
