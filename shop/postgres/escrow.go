package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/shard"
)

// The escrow primitives of one shard (docs/sharding.md, migration 00012):
// a shard's items.stock is its quota, moved between shards by transfers
// that only go forward, and the catalog's home keeps the sold-out flag.
// shop/sharded composes them; each is one transaction on this database.

// ClaimShard records that this database is shard number (from 1), or
// fails if it was recorded as another: a reordered --db list would send
// sessions to the wrong server.
func (db *DB) ClaimShard(ctx context.Context, number int) error {
	const claim = `WITH claim AS (
			INSERT INTO shard_identity (id, shard) VALUES (1, $1) ON CONFLICT (id) DO NOTHING RETURNING shard)
		SELECT shard FROM claim UNION ALL SELECT shard FROM shard_identity`
	var got int
	err := db.primary.QueryRow(ctx, claim, number).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		// Another process's claim committed while this one waited on its
		// row: the insert did nothing, and the statement's snapshot,
		// taken before that commit, does not see the row. Pods starting
		// together meet this; a new statement sees it.
		err = db.primary.QueryRow(ctx, claim, number).Scan(&got)
	}
	if err != nil {
		return fmt.Errorf("postgres at %s: shard number: %w", db.where, unavailable(err))
	}
	if got != number {
		return fmt.Errorf("postgres at %s is shard %d, but it is given as shard %d: keep the --db list in the order the shards were made", db.where, got, number)
	}
	return db.installFence(ctx)
}

// ShardNumber is the number this database was claimed as (ClaimShard);
// claimed is false when no process has opened it as a shard yet.
func (db *DB) ShardNumber(ctx context.Context) (number int, claimed bool, err error) {
	err = db.primary.QueryRow(ctx, `SELECT shard FROM shard_identity WHERE id = 1`).Scan(&number)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("postgres at %s: shard number: %w", db.where, unavailable(err))
	}
	return number, true, nil
}

// DebitQuota takes units of item's quota for shard to: at least need and
// up to half the quota when that is more (so the next checkouts find
// quota where the demand is), none when the quota is below need... unless
// partial is true, when it takes what there is. It records the transfer
// as sent in the same transaction and reports it (Units 0: none taken).
func (db *DB) DebitQuota(ctx context.Context, id string, item, need int64, to int, partial bool) (shard.Transfer, error) {
	return db.debit(ctx, id, item, to, func(quota int64) int64 {
		taken := min(quota, max(need, quota/2))
		if taken < need && !partial {
			return 0
		}
		return taken
	})
}

// MoveQuota takes units of item's quota for shard to, or what there is
// when the quota is smaller (the rebalancer's move, planned from a reading
// that checkouts have since sold from), recording the transfer as sent in
// the same transaction; it reports the transfer (Units 0: none taken).
func (db *DB) MoveQuota(ctx context.Context, id string, item, units int64, to int) (shard.Transfer, error) {
	return db.debit(ctx, id, item, to, func(quota int64) int64 { return min(quota, units) })
}

// debit takes take(quota) units of item's quota, locked, with the
// transfer's row (the quota's epoch in it), in one transaction.
func (db *DB) debit(ctx context.Context, id string, item int64, to int, take func(quota int64) int64) (shard.Transfer, error) {
	t := shard.Transfer{ID: id, Item: item, To: to}
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var quota int64
		err := tx.QueryRow(ctx, `SELECT stock, quota_epoch FROM items WHERE id = $1 FOR UPDATE`, item).Scan(&quota, &t.Epoch)
		if errors.Is(err, pgx.ErrNoRows) {
			return shop.Errorf(shop.ENOTFOUND, "item %d does not exist", item)
		}
		if err != nil {
			return err
		}
		if t.Units = take(quota); t.Units <= 0 {
			t.Units = 0
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE items SET stock = stock - $2 WHERE id = $1`, item, t.Units); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO quota_transfers (id, item_id, units, to_shard, epoch) VALUES ($1, $2, $3, $4, $5)`, id, item, t.Units, to+1, t.Epoch)
		return err
	})
	if err != nil {
		return shard.Transfer{}, fmt.Errorf("debit quota of item %d: %w", item, err)
	}
	return t, nil
}

// CreditQuota adds a transfer's units to this shard's quota once, if
// this shard's quota was set by the admin change the donor's was when it
// was debited (shard.Credit says what it did). The item's row is locked
// first, so an admin change setting the quota runs before the credit or
// after it, never between its check and its addition.
func (db *DB) CreditQuota(ctx context.Context, t shard.Transfer) (shard.Credit, error) {
	var epoch *int64
	var recorded bool
	err := db.primary.QueryRow(ctx, `WITH it AS MATERIALIZED (
			SELECT quota_epoch FROM items WHERE id = $2 FOR UPDATE
		), rec AS (
			INSERT INTO quota_received (id, item_id, units)
			SELECT $1, $2, CASE WHEN it.quota_epoch = $4 THEN $3::BIGINT ELSE 0 END FROM it WHERE it.quota_epoch >= $4
			ON CONFLICT (id) DO NOTHING RETURNING units
		), added AS (
			UPDATE items SET stock = items.stock + rec.units FROM rec WHERE items.id = $2 AND rec.units > 0
		)
		SELECT (SELECT quota_epoch FROM it), EXISTS (SELECT 1 FROM rec)`, t.ID, t.Item, t.Units, t.Epoch).Scan(&epoch, &recorded)
	switch {
	case err != nil:
		return 0, fmt.Errorf("credit quota of item %d: %w", t.Item, unavailable(err))
	case epoch == nil:
		return 0, shop.Errorf(shop.ENOTFOUND, "credit quota: item %d does not exist on this shard", t.Item)
	case *epoch < t.Epoch:
		return shard.Waits, nil
	case !recorded:
		return shard.CreditedBefore, nil
	case *epoch > t.Epoch:
		return shard.Superseded, nil
	}
	return shard.Credited, nil
}

// SetQuota sets this shard's quota of item to units by the admin stock
// change numbered epoch, unless a later change set it already (set is
// then false); epoch 0 numbers a new change, one past this shard's last:
// the catalog's home numbers every change. It reports the change's
// number.
func (db *DB) SetQuota(ctx context.Context, item, units, epoch int64) (applied int64, set bool, err error) {
	err = db.primary.QueryRow(ctx, `UPDATE items SET stock = $2,
			quota_epoch = CASE WHEN $3::BIGINT = 0 THEN quota_epoch + 1 ELSE $3::BIGINT END
		WHERE id = $1 AND ($3::BIGINT = 0 OR quota_epoch < $3::BIGINT) RETURNING quota_epoch`, item, units, epoch).Scan(&applied)
	if errors.Is(err, pgx.ErrNoRows) {
		// A later change set it, or there is no such item.
		err = db.primary.QueryRow(ctx, `SELECT quota_epoch FROM items WHERE id = $1`, item).Scan(&applied)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, false, shop.Errorf(shop.ENOTFOUND, "item %d does not exist", item)
		}
		if err == nil {
			return epoch, false, nil
		}
	}
	if err != nil {
		return 0, false, fmt.Errorf("set quota of item %d: %w", item, unavailable(err))
	}
	return applied, true, nil
}

// MarkTransferReceived records on the donor that the receiver has the
// transfer's units.
func (db *DB) MarkTransferReceived(ctx context.Context, id string) error {
	if _, err := db.primary.Exec(ctx, `UPDATE quota_transfers SET state = 'received' WHERE id = $1`, id); err != nil {
		return fmt.Errorf("mark transfer received: %w", unavailable(err))
	}
	return nil
}

// SentTransfers are the transfers debited here at least olderThan ago and
// not yet marked received: what a crash between debit and credit left.
func (db *DB) SentTransfers(ctx context.Context, olderThan time.Duration, limit int) ([]shard.Transfer, error) {
	rows, err := db.primary.Query(ctx, `SELECT id, item_id, units, to_shard - 1, epoch FROM quota_transfers
		WHERE state = 'sent' AND created_at <= now() - $1::INTERVAL ORDER BY created_at LIMIT $2`, olderThan, limit)
	if err != nil {
		return nil, fmt.Errorf("sent transfers: %w", unavailable(err))
	}
	ts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[shard.Transfer])
	if err != nil {
		return nil, fmt.Errorf("sent transfers: %w", unavailable(err))
	}
	return ts, nil
}

// Quotas is this shard's quota of every item that has any, and the
// units it has sent that no shard has been credited yet.
func (db *DB) Quotas(ctx context.Context) (quota, inFlight map[int64]int64, err error) {
	quota, inFlight = map[int64]int64{}, map[int64]int64{}
	// One statement, not one a table: every replica reads every shard's
	// quotas every few seconds (the item pages' stock figures), so the
	// reads grow as replicas × shards; and one statement is one snapshot,
	// where a debit committed between two reads moved units from the
	// quota into a transfer and counted them twice.
	rows, err := db.primary.Query(ctx, `SELECT false, id, stock FROM items WHERE stock > 0
		UNION ALL
		SELECT true, item_id, sum(units)::BIGINT FROM quota_transfers WHERE state = 'sent' GROUP BY item_id`)
	if err != nil {
		return nil, nil, fmt.Errorf("quotas: %w", unavailable(err))
	}
	var sent bool
	var id, n int64
	_, err = pgx.ForEachRow(rows, []any{&sent, &id, &n}, func() error {
		if sent {
			inFlight[id] += n
		} else {
			quota[id] += n
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("quotas: %w", unavailable(err))
	}
	return quota, inFlight, nil
}

// SalesSince is the units ordered of each item in the orders after the
// order id after, and the highest order id read (after when there is none
// since): the rebalancer's reading of recent demand, a range of the order
// lines' key. An order id is the month and a serial, so ids grow with time;
// an order committed after a later-numbered one was read is missed, which
// an estimate of demand can afford. A negative after reads no sales and
// gives the cursor to start from: the newest order id.
func (db *DB) SalesSince(ctx context.Context, after int64) (sales map[int64]int64, cursor int64, err error) {
	sales = map[int64]int64{}
	if after < 0 {
		err = db.primary.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM orders`).Scan(&cursor)
		if err != nil {
			return nil, 0, fmt.Errorf("sales since: %w", unavailable(err))
		}
		return sales, cursor, nil
	}
	rows, err := db.primary.Query(ctx, `SELECT item_id, sum(quantity)::BIGINT, max(order_id) FROM order_lines
		WHERE order_id > $1 GROUP BY item_id`, after)
	if err != nil {
		return nil, 0, fmt.Errorf("sales since: %w", unavailable(err))
	}
	cursor = after
	var item, n, newest int64
	_, err = pgx.ForEachRow(rows, []any{&item, &n, &newest}, func() error {
		sales[item] = n
		cursor = max(cursor, newest)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("sales since: %w", unavailable(err))
	}
	return sales, cursor, nil
}

// TryLease takes the lease name on this database for as long as the
// caller holds it (a session-level advisory lock on a pooled connection),
// or reports ok false when another process holds it. PostgreSQL drops
// the lock with a dead process's session, so a lease never outlives its
// holder.
func (db *DB) TryLease(ctx context.Context, name string) (release func(), ok bool, err error) {
	conn, err := db.primary.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lease %s: %w", name, unavailable(err))
	}
	key := leaseKey(name)
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil || !ok {
		conn.Release()
		if err != nil {
			return nil, false, fmt.Errorf("lease %s: %w", name, unavailable(err))
		}
		return nil, false, nil
	}
	return func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key); err != nil {
			// The lock must not stay with a pooled session: drop it.
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
		conn.Release()
	}, true, nil
}

// leaseKey is the advisory lock key of lease name, in a namespace apart
// from the workers' (workerLockKey).
func leaseKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("shop lease " + name))
	return int64(h.Sum64()) // #nosec G115 -- a hash: wrapping into the negative keys is what bigint locks take
}

// StockEpoch is item's stock epoch on the catalog's home: it moves with
// every admin change of the stock.
func (db *DB) StockEpoch(ctx context.Context, item int64) (int64, error) {
	var e int64
	if err := db.primary.QueryRow(ctx, `SELECT stock_epoch FROM items WHERE id = $1`, item).Scan(&e); err != nil {
		return 0, fmt.Errorf("stock epoch of item %d: %w", item, unavailable(err))
	}
	return e, nil
}

// SetSoldOut sets or clears item's sold-out flag on the catalog's home
// and moves the menu's version when the flag changed. Setting it is
// guarded by epoch (StockEpoch read before every shard was found empty),
// so it cannot land after a refill; clearing it moves the epoch on.
func (db *DB) SetSoldOut(ctx context.Context, item int64, soldOut bool, epoch int64) (changed bool, err error) {
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		var tag interface{ RowsAffected() int64 }
		var err error
		if soldOut {
			tag, err = tx.Exec(ctx, `UPDATE items SET sold_out = true WHERE id = $1 AND NOT sold_out AND stock_epoch = $2`, item, epoch)
		} else {
			tag, err = tx.Exec(ctx, `UPDATE items SET sold_out = false, stock_epoch = stock_epoch + 1 WHERE id = $1 AND sold_out`, item)
		}
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		changed = true
		_, err = tx.Exec(ctx, `UPDATE catalog_version SET version = version + 1 WHERE id = 1`)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("sold-out flag of item %d: %w", item, err)
	}
	return changed, nil
}

// RestockedEpoch moves item's stock epoch on and clears its sold-out
// flag to soldOut, in one transaction with the version's bump: an admin
// set the stock (the catalog's home only).
func (db *DB) RestockedEpoch(ctx context.Context, item int64, soldOut bool) error {
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE items SET stock_epoch = stock_epoch + 1, sold_out = $2 WHERE id = $1`, item, soldOut); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE catalog_version SET version = version + 1 WHERE id = 1`)
		return err
	})
	if err != nil {
		return fmt.Errorf("restock item %d: %w", item, err)
	}
	return nil
}

// MarkEmptySoldOut sets the sold-out flag of every item with no stock on
// this shard: after seeding the catalog's home, whose share of an item's
// stock is 0 only when the whole stock is.
func (db *DB) MarkEmptySoldOut(ctx context.Context) error {
	if _, err := db.primary.Exec(ctx, `UPDATE items SET sold_out = true WHERE stock = 0 AND NOT sold_out`); err != nil {
		return fmt.Errorf("mark sold out: %w", unavailable(err))
	}
	return nil
}

// SoldOutItems are the items flagged sold out (the catalog's home).
func (db *DB) SoldOutItems(ctx context.Context) ([]int64, error) {
	rows, err := db.primary.Query(ctx, `SELECT id FROM items WHERE sold_out ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sold-out items: %w", unavailable(err))
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("sold-out items: %w", unavailable(err))
	}
	return ids, nil
}

// ShardMap is the bucket map stored on this database (the catalog's
// home, migration 00013): its epoch, text form and the buckets being
// moved; found is false when none is stored (the map is then
// shard.Balanced of the shard count).
func (db *DB) ShardMap(ctx context.Context) (m shard.StoredMap, found bool, err error) {
	var moving []int32
	err = db.primary.QueryRow(ctx, `SELECT epoch, map, moving FROM shard_map WHERE id = 1`).Scan(&m.Epoch, &m.Text, &moving)
	if errors.Is(err, pgx.ErrNoRows) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("shard map: %w", unavailable(err))
	}
	for _, b := range moving {
		m.Moving = append(m.Moving, shard.Bucket(b)) // #nosec G115 -- the map's writer keeps buckets in 0..1023
	}
	return m, true, nil
}

// SetShardMap stores m as the map if the stored one's epoch is
// m.Epoch-1 (or none is stored), so two writers cannot both move on from
// the same map; swapped is false when the stored epoch was another.
func (db *DB) SetShardMap(ctx context.Context, m shard.StoredMap) (swapped bool, err error) {
	moving := make([]int32, len(m.Moving))
	for i, b := range m.Moving {
		moving[i] = int32(b)
	}
	tag, err := db.primary.Exec(ctx, `INSERT INTO shard_map (id, epoch, map, moving) VALUES (1, $1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, map = excluded.map, moving = excluded.moving
		WHERE shard_map.epoch = excluded.epoch - 1`, m.Epoch, m.Text, moving)
	if err != nil {
		return false, fmt.Errorf("store shard map: %w", unavailable(err))
	}
	return tag.RowsAffected() == 1, nil
}
