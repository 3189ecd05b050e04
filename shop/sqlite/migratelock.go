package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Several shop processes may share one data directory (the worker lock
// decides which of them is the sole worker), and each migrates the file as
// it opens it. goose and River read the schema version, then apply what
// is missing: two processes on a fresh file both read version 0 and the
// second failed with "table ... already exists". goose has no SQLite
// locker, and a SQLite transaction cannot cover goose's own ones, so the
// migrations run under an exclusive lock on a file beside the database,
// held by one process at a time: the next one waits, then finds the schema
// current. The kernel drops the lock when its holder exits or dies, kill
// -9 included, and each migration is a transaction of its own, so a
// killed migration leaves the file at the last version it committed.

// MigrateLockSuffix names the migration lock: the database's path plus it.
const MigrateLockSuffix = ".migrate-lock"

// Migrating runs fn while this process holds the database's migration
// lock, waiting for another process that holds it: fn migrates tables on
// this file (River's, in shop/backend) without racing another process's
// migration. The shop's own tables are migrated under it by Open.
func (db *DB) Migrating(ctx context.Context, fn func(ctx context.Context) error) error {
	unlock, err := lockFile(ctx, db.path+MigrateLockSuffix)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", db.path, err)
	}
	defer unlock()
	return fn(ctx)
}

// lockFile waits for an exclusive lock on the file at path (made if
// missing) or for ctx to end. unlock gives the lock back.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	got := make(chan error, 1)
	go func() { got <- flockWait(f) }()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("migration lock %s: %w", path, err)
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		// The wait cannot be interrupted: whenever it ends, the lock (if
		// it was taken) is given back at once.
		go func() {
			<-got
			f.Close()
		}()
		return nil, fmt.Errorf("waiting for the migration lock %s (another process is migrating): %w", path, context.Cause(ctx))
	}
}

// flockWait takes f's exclusive lock, waiting as long as it takes; a
// signal (the Go runtime's preemption among them) interrupts the wait,
// which is then taken up again.
func flockWait(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
