package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrateLock is the advisory lock key that serialises `shop migrate`
// runs on one database ("shopmigr"). goose takes a lock of its own around
// the shop's tables, but River's migrator takes none: two runs at once on
// a fresh database both created River's tables, and one failed on a
// duplicate key in pg_type.
const migrateLock int64 = 0x73686f70_6d696772

// Migrating runs fn while this process holds the database's migration
// lock, waiting (without the statement timeout) for another process that
// holds it: fn migrates the shop's and River's tables without racing
// another migration. The lock is held on a connection of its own,
// outside the pools, and closing it gives the lock back; the server drops
// it too if the process dies.
func (db *DB) Migrating(ctx context.Context, fn func(ctx context.Context) error) error {
	cfg := db.primary.Config().ConnConfig.Copy()
	// A migration may take longer than a statement may: the wait for
	// another one is bounded by ctx only.
	cfg.RuntimeParams["statement_timeout"] = "0"
	cfg.RuntimeParams["application_name"] = "shop migrate lock"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres at %s: connect for the migration lock: %s", db.where, oneLine(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLock); err != nil {
		return fmt.Errorf("postgres at %s: waiting for the migration lock (another `shop migrate` is running): %w", db.where, err)
	}
	return fn(ctx)
}
