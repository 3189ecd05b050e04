package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/shard"
	"github.com/perfscale/perfscale/shop/sqlstore"
)

// Ping checks that the primary answers.
func (f flowDB) Ping(ctx context.Context) error {
	if err := f.db.primary.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", unavailable(err))
	}
	return nil
}

// Close closes the pools.
func (f flowDB) Close() error {
	f.db.Close()
	return nil
}

// seedLock is the advisory lock id that serialises seeding, so replicas
// starting together seed once.
const seedLock = 0x5ee0

// Seed inserts items when the catalog has none: one transaction, COPY,
// under an advisory lock so replicas starting together seed once.
func (f flowDB) Seed(ctx context.Context, items []shop.Item, at time.Time) (int, error) {
	n := 0
	err := f.db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, seedLock); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM items)`).Scan(&exists); err != nil {
			return err
		}
		if exists || len(items) == 0 {
			return nil
		}
		now := sqlstore.Micros(at)
		copied, err := tx.CopyFrom(ctx, pgx.Identifier{"items"},
			[]string{"id", "name", "description", "price_cents", "category", "available", "stock", "updated_at"},
			pgx.CopyFromSlice(len(items), func(i int) ([]any, error) {
				it := items[i]
				return []any{it.ID, it.Name, it.Description, it.PriceCents, it.Category, it.Available, it.Stock, now}, nil
			}))
		if err != nil {
			return err
		}
		n = int(copied)
		return sqlstore.BumpCatalogVersion(ctx, txQuerier{querier[pgx.Tx]{tx}})
	})
	if err != nil {
		return 0, fmt.Errorf("seed items: %w", err)
	}
	return n, nil
}

// dialect is PostgreSQL's text for the statements that differ: arrays
// bound as one parameter, so each statement has one text whatever the
// count. sharded: the database is one shard of several (NewShardStore).
type dialect struct{ sharded bool }

func (dialect) InIDs(column string, ids []int64) (string, []any) {
	return column + ` = ANY(?)`, []any{ids}
}

// NewOrderID names the order's id from its created_at: the id carries the
// month its partition is (migrations/00010).
// On a shard the low 10 bits are the session's bucket, which its id
// carries (NewSessionID), so a call naming only the order id finds its
// shard (docs/sharding.md).
func (d dialect) NewOrderID(createdAt, sessionID int64) (string, []any) {
	if d.sharded {
		return orderIDAt(true, "?", "?"), []any{createdAt, sessionID}
	}
	return orderIDAt(false, "?", ""), []any{createdAt}
}

// orderIDAt is the SQL of a new order's id from the expressions of its
// created_at and its session's id (NewOrderID; the checkout at once).
func orderIDAt(sharded bool, createdAt, sessionID string) string {
	if sharded {
		return `order_id_at(` + createdAt + `) | (` + sessionID + `::BIGINT & 1023)`
	}
	return `order_id_at(` + createdAt + `)`
}

// NewSessionID numbers a shard's session seq << 10 | the bucket of its
// token (shard.MakeID); one database numbers its sessions as before.
func (d dialect) NewSessionID(tokenHash string) (string, []any, error) {
	if !d.sharded {
		return "", nil, nil
	}
	b, err := shard.BucketOfTokenHash(tokenHash)
	if err != nil {
		return "", nil, err
	}
	return `(nextval('sessions_id_seq') << 10) | ?::BIGINT`, []any{int64(b)}, nil
}

// MenuInStock: a shard's stock is its quota, so an item leaves the menu
// when the catalog's home (shard 1) has it sold out on every shard
// (shop/sharded sets the flag).
func (d dialect) MenuInStock() string {
	if d.sharded {
		return "NOT sold_out"
	}
	return "stock > 0"
}

// SessionOrders bounds a session's orders below by its creation's month,
// so "my orders" reads the partitions of the session's life only.
func (dialect) SessionOrders(sessionID int64) (string, []any) {
	return ` AND id >= (SELECT session_order_id_floor(created_at) FROM sessions WHERE id = ?)`, []any{sessionID}
}

// OrdersBefore is a row comparison on the (session_id, id) index, not
// "id < ?": in a generic plan "id < ?" beside SessionOrders' lower bound
// is a range of ids priced at half a percent of a partition, and on a
// partition a few hundred orders old the primary key, read backward
// with session_id as a filter, looked as cheap as the session's index
// and was taken, reading the month's orders down to the session's
// (docs/postgres.md). The row comparison is no range the primary key
// can serve; the session's index takes it as where its scan starts.
func (dialect) OrdersBefore(sessionID, before int64) (string, []any) {
	return ` AND (session_id, id) < (?, ?)`, []any{sessionID, before}
}

// OrdersOfSession bounds a session row's orders below by its creation's
// month, so a probe for them reads the partitions of its life only.
func (dialect) OrdersOfSession(orders, sessions string) string {
	return ` AND ` + orders + `.id >= session_order_id_floor(` + sessions + `.created_at)`
}

// LockSessions locks the session rows a query reads: pruning deletes
// sessions that no foreign key keeps (migration 00024), and a checkout
// holding a session's lock must have its order seen first.
func (dialect) LockSessions(sessions string) string { return ` FOR UPDATE OF ` + sessions }

// DeleteSessions deletes the sessions and, in the same statement and
// snapshot, their cart lines: no foreign key cascades to them (migration
// 00024).
func (dialect) DeleteSessions(cond string) (string, bool) {
	return `WITH gone AS (
		DELETE FROM sessions WHERE ` + cond + `
		RETURNING id
	), carts AS (
		DELETE FROM cart_items WHERE session_id IN (SELECT id FROM gone)
	)
	SELECT count(*) FROM gone`, true
}

// JoinOrderLines reads each order's lines by a lateral subquery (OFFSET
// 0 keeps the planner from flattening it into a plain join), so the plan
// is always a probe of the lines' index per order, pruned as it runs to
// that order's month. A plain join may be planned as one scan of the
// lines hashed: of every month's partition, or, bounded by the page's
// ids, of every line between them (seen: 16 lines read a page on a fresh
// cluster's small tables).
func (dialect) JoinOrderLines(orders, lines string) string {
	return `LEFT JOIN LATERAL (SELECT * FROM order_lines WHERE order_id = ` + orders + `.id OFFSET 0) ` + lines + ` ON true`
}

func (dialect) InsertOrderLines(o *shop.Order) (string, []any) {
	n := len(o.Lines)
	items, names, qtys, units, totals := make([]int64, n), make([]string, n), make([]int32, n), make([]int64, n), make([]int64, n)
	for i, l := range o.Lines {
		items[i], names[i], qtys[i], units[i], totals[i] = l.ItemID, l.Name, int32(l.Quantity), l.UnitPriceCents, l.LineTotalCents // #nosec G115 -- quantities are capped by shop.ValidateQuantity
	}
	return `INSERT INTO order_lines (order_id, item_id, name, quantity, unit_price_cents, line_total_cents)
		SELECT ?, * FROM unnest(?::bigint[], ?::text[], ?::int[], ?::bigint[], ?::bigint[])`,
		[]any{o.ID, items, names, qtys, units, totals}
}
