package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/sqlstore"
)

// Ping checks that the database answers.
func (f flowDB) Ping(ctx context.Context) error {
	var one int
	if err := f.db.read.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Close closes both pools.
func (f flowDB) Close() error { return f.db.Close() }

// Seed inserts items when the catalog has none, in one transaction: it
// takes the write lock at BEGIN (the write pool's transactions are
// immediate), so of several processes starting on one fresh file one
// seeds and the others find the catalog full, and a start killed half-way
// leaves no half catalog for the next one to take as seeded. One prepared
// statement and one commit keep a million items to seconds.
func (f flowDB) Seed(ctx context.Context, items []shop.Item, at time.Time) (int, error) {
	n := 0
	err := f.db.inTx(ctx, func(tx *sql.Tx) error {
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM items)`).Scan(&exists); err != nil {
			return fmt.Errorf("count items: %w", err)
		}
		if exists || len(items) == 0 {
			return nil
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO items
			(id, name, description, price_cents, category, available, stock, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		now := sqlstore.Micros(at)
		for _, it := range items {
			if _, err := stmt.ExecContext(ctx, it.ID, it.Name, it.Description, it.PriceCents,
				it.Category, it.Available, it.Stock, now); err != nil {
				return fmt.Errorf("item %d: %w", it.ID, err)
			}
		}
		n = len(items)
		return sqlstore.BumpCatalogVersion(ctx, querier[*sql.Tx]{tx})
	})
	if err != nil {
		return 0, fmt.Errorf("seed items: %w", err)
	}
	if n > 0 {
		// One transaction puts the whole catalog in the write-ahead log,
		// and the log keeps its size once checkpointed: a million items
		// left a 130 MB log beside a 129 MB database for as long as the
		// process ran. Truncate it now (no readers yet: it is the start).
		if _, err := f.db.write.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			return n, fmt.Errorf("seed items: checkpoint: %w", err)
		}
	}
	return n, nil
}

// dialect is SQLite's text for the statements that differ: lists of
// placeholders where PostgreSQL binds arrays.
type dialect struct{}

func (dialect) InIDs(column string, ids []int64) (string, []any) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return column + ` IN (?` + strings.Repeat(", ?", len(ids)-1) + `)`, args
}

// NewOrderID lets SQLite number the order (NULL into an INTEGER PRIMARY
// KEY is the next rowid).
func (dialect) NewOrderID(int64, int64) (string, []any) { return `NULL`, nil }

// NewSessionID lets SQLite number the session.
func (dialect) NewSessionID(string) (string, []any, error) { return "", nil, nil }

// MenuInStock: one database's stock is the item's whole stock.
func (dialect) MenuInStock() string { return "stock > 0" }

// SessionOrders adds nothing: SQLite's orders are one table.
func (dialect) SessionOrders(int64) (string, []any) { return "", nil }

// OrdersBefore is a plain bound on id, which SQLite's (session_id, id)
// index takes as its range (a row comparison it would not).
func (dialect) OrdersBefore(_, before int64) (string, []any) {
	return ` AND id < ?`, []any{before}
}

// OrdersOfSession adds nothing either.
func (dialect) OrdersOfSession(string, string) string { return "" }

// LockSessions locks nothing: SQLite runs one write transaction at a time.
func (dialect) LockSessions(string) string { return "" }

// DeleteSessions deletes the sessions; the foreign keys' cascades delete
// their cart lines and keys.
func (dialect) DeleteSessions(cond string) (string, bool) {
	return `DELETE FROM sessions WHERE ` + cond, false
}

// JoinOrderLines is a plain outer join (SQLite has no LATERAL).
func (dialect) JoinOrderLines(orders, lines string) string {
	return `LEFT JOIN order_lines ` + lines + ` ON ` + lines + `.order_id = ` + orders + `.id`
}

func (dialect) InsertOrderLines(o *shop.Order) (string, []any) {
	var b strings.Builder
	args := make([]any, 0, 6*len(o.Lines))
	b.WriteString(`INSERT INTO order_lines (order_id, item_id, name, quantity, unit_price_cents, line_total_cents) VALUES `)
	for i, l := range o.Lines {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?)")
		args = append(args, o.ID, l.ItemID, l.Name, l.Quantity, l.UnitPriceCents, l.LineTotalCents)
	}
	return b.String(), args
}
