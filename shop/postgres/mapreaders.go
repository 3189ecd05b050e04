package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop/shard"
)

// The processes that route by the bucket map report the epoch they route
// by on the catalog's home (migration 00018, docs/sharding.md).

// ReportMapEpoch records that process routes by the map of epoch, now.
func (db *DB) ReportMapEpoch(ctx context.Context, process string, epoch int64) error {
	_, err := db.primary.Exec(ctx, `INSERT INTO shard_map_readers (process, epoch) VALUES ($1, $2)
		ON CONFLICT (process) DO UPDATE SET epoch = excluded.epoch, seen_at = now()`, process, epoch)
	if err != nil {
		return fmt.Errorf("report the shard map's epoch: %w", unavailable(err))
	}
	return nil
}

// LeaveMapReaders deletes process's row: it stopped, and routes by
// nothing.
func (db *DB) LeaveMapReaders(ctx context.Context, process string) error {
	if _, err := db.primary.Exec(ctx, `DELETE FROM shard_map_readers WHERE process = $1`, process); err != nil {
		return fmt.Errorf("leave the shard map's readers: %w", unavailable(err))
	}
	return nil
}

// MapReaders are the processes that reported within expiry, oldest
// epoch first; the rows of those not seen for longer (dead) are deleted.
func (db *DB) MapReaders(ctx context.Context, expiry time.Duration) ([]shard.MapReader, error) {
	rows, err := db.primary.Query(ctx, `WITH dead AS (DELETE FROM shard_map_readers WHERE seen_at <= now() - $1::float8 * interval '1 second')
		SELECT process, epoch, (extract(epoch FROM now() - seen_at) * 1e6)::BIGINT * 1000 FROM shard_map_readers
		WHERE seen_at > now() - $1::float8 * interval '1 second' ORDER BY epoch, process`, expiry.Seconds())
	if err != nil {
		return nil, fmt.Errorf("the shard map's readers: %w", unavailable(err))
	}
	readers, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (shard.MapReader, error) {
		var m shard.MapReader
		var nanos int64
		err := r.Scan(&m.Process, &m.Epoch, &nanos)
		m.Age = time.Duration(nanos)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("the shard map's readers: %w", unavailable(err))
	}
	return readers, nil
}
