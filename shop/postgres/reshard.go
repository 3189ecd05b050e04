package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop/shard"
)

// A bucket's move between two shards, the database's half of it
// (shop/reshard runs the steps; docs/sharding.md explains them). Each step
// is one transaction and can be run again: a move cut short is finished by
// running it again from what the fences say.

// fenceLock is the advisory lock class of the fence (bucket_fence_check).
const fenceLock = 20

// fenceTriggers are the triggers that check the fence on every write of
// a session's rows (migration 00016 has their functions). Sessions are
// not deleted by a customer (pruning deletes the expired); the orders'
// trigger is on the partitioned table, so every month's partition has it.
var fenceTriggers = []struct{ table, events, function string }{
	{"sessions", "INSERT OR UPDATE", "bucket_fence_sessions"},
	{"cart_items", "INSERT OR UPDATE OR DELETE", "bucket_fence_cart_items"},
	{"orders", "INSERT OR UPDATE", "bucket_fence_orders"},
}

// installFence puts the fence's triggers on a shard's tables unless they
// are there: once, when the database is first claimed as a shard (one
// database, unsharded, does without them).
func (db *DB) installFence(ctx context.Context) error {
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgname = 'bucket_fence' AND NOT tgisinternal AND tgparentid = 0`).Scan(&n); err != nil {
			return err
		}
		if n == len(fenceTriggers) {
			return nil
		}
		// Replicas starting together: one installs, the others wait and
		// find them there.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, -1)`, fenceLock); err != nil {
			return err
		}
		for _, t := range fenceTriggers {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE OR REPLACE TRIGGER bucket_fence BEFORE %s ON %s FOR EACH ROW EXECUTE FUNCTION %s()`,
				t.events, t.table, t.function)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres at %s: install the bucket fence: %w", db.where, err)
	}
	return nil
}

// BucketFence is bucket b's fence on this shard (shard.FenceNone when
// there is none) and, when gone, the shard (from 0) it was frozen to move
// to.
func (db *DB) BucketFence(ctx context.Context, b shard.Bucket) (shard.Fence, int, error) {
	var state string
	var to *int
	err := db.primary.QueryRow(ctx, `SELECT state, moved_to FROM bucket_fences WHERE bucket = $1`, int(b)).Scan(&state, &to)
	if errors.Is(err, pgx.ErrNoRows) {
		return shard.FenceNone, -1, nil
	}
	if err != nil {
		return "", -1, fmt.Errorf("fence of bucket %d: %w", b, unavailable(err))
	}
	if to == nil {
		return shard.Fence(state), -1, nil
	}
	return shard.Fence(state), *to - 1, nil
}

// FenceIncoming fences bucket b here while it is copied here: no write
// of it is taken until the final copy lifts the fence.
func (db *DB) FenceIncoming(ctx context.Context, b shard.Bucket) error {
	_, err := db.primary.Exec(ctx, `INSERT INTO bucket_fences (bucket, state) VALUES ($1, 'incoming')
		ON CONFLICT (bucket) DO UPDATE SET state = 'incoming', moved_to = NULL, since = now()`, int(b))
	if err != nil {
		return fmt.Errorf("fence incoming bucket %d: %w", b, unavailable(err))
	}
	return nil
}

// FreezeBucket fences bucket b here for good, as moving to shard to
// (from 0): it waits for the writes of the bucket in flight (their shared
// lock) and commits the fence before any other write of it can start, so
// no write of b commits here after it returns.
func (db *DB) FreezeBucket(ctx context.Context, b shard.Bucket, to int) error {
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, fenceLock, int(b)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO bucket_fences (bucket, state, moved_to) VALUES ($1, 'gone', $2)
			ON CONFLICT (bucket) DO UPDATE SET state = 'gone', moved_to = $2, since = now()`, int(b), to+1)
		return err
	})
	if err != nil {
		return fmt.Errorf("freeze bucket %d: %w", b, err)
	}
	return nil
}

// Copied counts the rows one copy of a bucket wrote on the new shard.
type Copied struct {
	Sessions, CartItems, Keys, Orders, Lines, Events, Mails, Jobs int64
}

// Rows is every row copied.
func (c Copied) Rows() int64 {
	return c.Sessions + c.CartItems + c.Keys + c.Orders + c.Lines + c.Events + c.Mails + c.Jobs
}

// bucketRows is a bucket's rows on its old shard, each table as a JSON
// array of rows, read in one snapshot.
type bucketRows struct {
	sessions, cart, keys, orders, lines, events, mails, jobs []byte
}

// readBucket reads bucket b's rows. Orders whose id, status and update
// time the new shard has already (have) are left out, with their lines,
// events and mail: the final copy takes only what changed since the
// first. With jobs, the jobs of its orders still to run come too.
func (db *DB) readBucket(ctx context.Context, b shard.Bucket, have []orderVersion, jobs bool) (bucketRows, error) {
	var r bucketRows
	ids, statuses, updated := splitVersions(have)
	err := pgx.BeginTxFunc(ctx, db.primary, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `WITH s AS (SELECT * FROM sessions WHERE (id & 1023) = $1),
			o AS (SELECT o.* FROM orders o WHERE o.session_id IN (SELECT id FROM s)
				AND NOT EXISTS (SELECT 1 FROM unnest($2::BIGINT[], $3::TEXT[], $4::BIGINT[]) AS h(id, status, updated_at)
					WHERE h.id = o.id AND h.status = o.status AND h.updated_at = o.updated_at))
			SELECT
				(SELECT coalesce(jsonb_agg(to_jsonb(s)), '[]') FROM s),
				(SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]') FROM cart_items c WHERE c.session_id IN (SELECT id FROM s)),
				(SELECT coalesce(jsonb_agg(to_jsonb(k)), '[]') FROM idempotency_keys k WHERE k.session_id IN (SELECT id FROM s)),
				(SELECT coalesce(jsonb_agg(to_jsonb(o)), '[]') FROM o),
				(SELECT coalesce(jsonb_agg(to_jsonb(l)), '[]') FROM order_lines l WHERE l.order_id IN (SELECT id FROM o)),
				(SELECT coalesce(jsonb_agg(to_jsonb(e)), '[]') FROM order_events e WHERE e.order_id IN (SELECT id FROM o)),
				(SELECT coalesce(jsonb_agg(to_jsonb(m)), '[]') FROM mail_outbox m WHERE m.order_id IN (SELECT id FROM o)),
				(SELECT coalesce(jsonb_agg(to_jsonb(j)), '[]') FROM orders po
					JOIN LATERAL (SELECT * FROM river_job j WHERE j.args @> jsonb_build_object('order_id', po.id)) j ON true
					WHERE $5 AND po.session_id IN (SELECT id FROM s) AND po.status <> 'ready'
					AND j.state NOT IN ('completed', 'cancelled', 'discarded'))`,
			int(b), ids, statuses, updated, jobs).Scan(&r.sessions, &r.cart, &r.keys, &r.orders, &r.lines, &r.events, &r.mails, &r.jobs)
	})
	if err != nil {
		return r, fmt.Errorf("read bucket %d: %w", b, unavailable(err))
	}
	return r, nil
}

// orderVersion is what says an order changed: its status and update time.
type orderVersion struct {
	ID        int64
	Status    string
	UpdatedAt int64
}

func splitVersions(vs []orderVersion) (ids []int64, statuses []string, updated []int64) {
	ids, statuses, updated = []int64{}, []string{}, []int64{}
	for _, v := range vs {
		ids = append(ids, v.ID)
		statuses = append(statuses, v.Status)
		updated = append(updated, v.UpdatedAt)
	}
	return ids, statuses, updated
}

// orderVersions are the versions of bucket b's orders on this shard.
func (db *DB) orderVersions(ctx context.Context, b shard.Bucket) ([]orderVersion, error) {
	rows, err := db.primary.Query(ctx, `SELECT id, status, updated_at FROM orders
		WHERE session_id IN (SELECT id FROM sessions WHERE (id & 1023) = $1)`, int(b))
	if err != nil {
		return nil, fmt.Errorf("orders of bucket %d: %w", b, unavailable(err))
	}
	vs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[orderVersion])
	if err != nil {
		return nil, fmt.Errorf("orders of bucket %d: %w", b, unavailable(err))
	}
	return vs, nil
}

// CopyBucket copies bucket b's rows from its old shard to this one (whose
// fence of b must be incoming): sessions, carts and keys whole (they are
// small and change), orders with their lines, events and mail when this
// shard does not have them as they are. The final copy (the old shard
// frozen) also copies the jobs of the bucket's orders still to run (a job
// left running there is available here), sets this shard's sequences past
// the bucket's ids, and lifts the fence here, in the same transaction: the
// bucket is complete here or not at all.
func (db *DB) CopyBucket(ctx context.Context, from *DB, b shard.Bucket, final bool) (Copied, error) {
	var c Copied
	have, err := db.orderVersions(ctx, b)
	if err != nil {
		return c, err
	}
	r, err := from.readBucket(ctx, b, have, final)
	if err != nil {
		return c, err
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		var fence shard.Fence
		err := tx.QueryRow(ctx, `SELECT coalesce((SELECT state FROM bucket_fences WHERE bucket = $1 FOR UPDATE), '')`, int(b)).Scan(&fence)
		if err != nil {
			return err
		}
		if fence != shard.FenceIncoming {
			return fmt.Errorf("bucket %d is not fenced as incoming here (fence %q): the copy would write a bucket this shard may serve", b, fence)
		}
		if _, err := tx.Exec(ctx, `SELECT set_config('shop.reshard', 'on', true)`); err != nil {
			return err
		}
		if err := ensureOrderMonths(ctx, tx, r.orders); err != nil {
			return err
		}
		if c, err = writeBucket(ctx, tx, b, r); err != nil {
			return err
		}
		if !final {
			return nil
		}
		return finishBucket(ctx, tx, b)
	})
	if err != nil {
		return c, fmt.Errorf("copy bucket %d to %s: %w", b, db.where, err)
	}
	return c, nil
}

// writeBucket writes the rows read from the old shard, replacing the
// bucket's sessions, carts and keys here by the old shard's.
func writeBucket(ctx context.Context, tx pgx.Tx, b shard.Bucket, r bucketRows) (Copied, error) {
	var c Copied
	steps := []struct {
		sql  string
		arg  any
		into *int64
	}{
		{`DELETE FROM cart_items WHERE session_id IN (SELECT id FROM sessions WHERE (id & 1023) = $1)`, int(b), nil},
		{`DELETE FROM idempotency_keys WHERE session_id IN (SELECT id FROM sessions WHERE (id & 1023) = $1)`, int(b), nil},
		{`INSERT INTO sessions (id, token_hash, created_at, expires_at)
			SELECT id, token_hash, created_at, expires_at FROM jsonb_populate_recordset(NULL::sessions, $1)
			ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, wrote_lsn = NULL`, r.sessions, &c.Sessions},
		{`INSERT INTO cart_items SELECT * FROM jsonb_populate_recordset(NULL::cart_items, $1)`, r.cart, &c.CartItems},
		{`INSERT INTO orders SELECT * FROM jsonb_populate_recordset(NULL::orders, $1)
			ON CONFLICT (id) DO UPDATE SET status = excluded.status, notes = excluded.notes, updated_at = excluded.updated_at`, r.orders, &c.Orders},
		{`INSERT INTO order_lines SELECT * FROM jsonb_populate_recordset(NULL::order_lines, $1) ON CONFLICT DO NOTHING`, r.lines, &c.Lines},
		// Event ids are this shard's: the copies are numbered here.
		{`INSERT INTO order_events (order_id, seq, status, created_at, published_at)
			SELECT order_id, seq, status, created_at, published_at FROM jsonb_populate_recordset(NULL::order_events, $1)
			ON CONFLICT (order_id, seq) DO UPDATE SET published_at = excluded.published_at`, r.events, &c.Events},
		{`INSERT INTO mail_outbox SELECT * FROM jsonb_populate_recordset(NULL::mail_outbox, $1) ON CONFLICT DO NOTHING`, r.mails, &c.Mails},
		{`INSERT INTO idempotency_keys SELECT * FROM jsonb_populate_recordset(NULL::idempotency_keys, $1)`, r.keys, &c.Keys},
		// A job that was running on the old shard runs again here (the
		// old one could not commit its work: the bucket is frozen there).
		{`INSERT INTO river_job (state, attempt, max_attempts, attempted_at, created_at, scheduled_at, priority,
				args, attempted_by, errors, kind, metadata, queue, tags, unique_key, unique_states)
			SELECT CASE WHEN state = 'running' THEN 'available'::river_job_state ELSE state END, attempt, max_attempts,
				attempted_at, created_at, scheduled_at, priority, args, attempted_by, errors, kind, metadata, queue,
				tags, unique_key, unique_states
			FROM jsonb_populate_recordset(NULL::river_job, $1)`, r.jobs, &c.Jobs},
	}
	for _, s := range steps {
		tag, err := tx.Exec(ctx, s.sql, s.arg)
		if err != nil {
			return c, err
		}
		if s.into != nil {
			*s.into = tag.RowsAffected()
		}
	}
	return c, nil
}

// finishBucket makes the bucket this shard's: the sequences set past the
// bucket's ids (a new session or order of the bucket here must not take a
// copied id), and the fence lifted.
//
// The sequences are only ever moved forward, and past the copied ids by a
// margin: sessions and orders of the shard's other buckets take numbers
// from the same sequences while this runs, and a setval to a value read a
// moment before (GREATEST(last_value, ...)) could move the sequence back
// over numbers handed out meanwhile, so two new sessions of one bucket got
// the same id (a CI run saw "duplicate key ... sessions_pkey").
func finishBucket(ctx context.Context, tx pgx.Tx, b shard.Bucket) error {
	for _, q := range []string{
		`SELECT setval('sessions_id_seq', m + ` + seqMargin + `) FROM (SELECT max(id) >> 10 AS m FROM sessions WHERE (id & 1023) = $1) copied
			WHERE m >= (SELECT last_value FROM sessions_id_seq)`,
		`SELECT setval('order_id_serial', LEAST(m + ` + seqMargin + `, 1073741823)) FROM (SELECT max((id & 1099511627775) >> 10) AS m FROM orders
				WHERE session_id IN (SELECT id FROM sessions WHERE (id & 1023) = $1)) copied
			WHERE m >= (SELECT last_value FROM order_id_serial)`,
		`DELETE FROM bucket_fences WHERE bucket = $1`,
	} {
		if _, err := tx.Exec(ctx, q, int(b)); err != nil {
			return err
		}
	}
	return nil
}

// seqMargin is how far past a moved bucket's largest number finishBucket
// sets a sequence: the other buckets' inserts would have to take this
// many numbers between the statement's read and its setval to be set back.
const seqMargin = "1000"

// ensureOrderMonths creates the month partitions the copied orders need
// (a new shard has only the months around its creation).
func ensureOrderMonths(ctx context.Context, tx pgx.Tx, orders []byte) error {
	var first, last *int64
	if err := tx.QueryRow(ctx, `SELECT min((o->>'id')::BIGINT >> 40), max((o->>'id')::BIGINT >> 40)
		FROM jsonb_array_elements($1::jsonb) o`, orders).Scan(&first, &last); err != nil {
		return err
	}
	if first == nil {
		return nil
	}
	existing, err := orderPartitions(ctx, tx)
	if err != nil {
		return err
	}
	_, err = ensureMonths(ctx, tx, existing, month(*first), month(*last))
	return err
}

// ForgetBucket deletes bucket b's rows here, where it was frozen to move
// away (its fence stays, so a stale replica still cannot write it here),
// and reports the rows deleted. It refuses on a shard where b is not
// fenced as gone: there, the rows are the bucket's only copy.
func (db *DB) ForgetBucket(ctx context.Context, b shard.Bucket) (int64, error) {
	var n int64
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var fence shard.Fence
		err := tx.QueryRow(ctx, `SELECT coalesce((SELECT state FROM bucket_fences WHERE bucket = $1 FOR SHARE), '')`, int(b)).Scan(&fence)
		if err != nil {
			return err
		}
		if fence != shard.FenceGone {
			return fmt.Errorf("bucket %d is not frozen here (fence %q): its rows are not a copy", b, fence)
		}
		if _, err := tx.Exec(ctx, `SELECT set_config('shop.reshard', 'on', true)`); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM river_job j USING orders o WHERE j.args @> jsonb_build_object('order_id', o.id)
				AND o.session_id IN (SELECT id FROM sessions WHERE (id & 1023) = $1)`,
			`DELETE FROM mail_outbox WHERE order_id IN (SELECT id FROM orders WHERE session_id IN (SELECT id FROM sessions WHERE (id & 1023) = $1))`,
			`DELETE FROM idempotency_keys WHERE session_id IN (SELECT id FROM sessions WHERE (id & 1023) = $1)`,
			// An order's lines and events first: no foreign key cascades
			// to them (migration 00023).
			`DELETE FROM order_lines WHERE order_id IN (SELECT id FROM orders WHERE session_id IN (SELECT id FROM sessions WHERE (id & 1023) = $1))`,
			`DELETE FROM order_events WHERE order_id IN (SELECT id FROM orders WHERE session_id IN (SELECT id FROM sessions WHERE (id & 1023) = $1))`,
			`DELETE FROM orders WHERE session_id IN (SELECT id FROM sessions WHERE (id & 1023) = $1)`,
			`DELETE FROM cart_items WHERE session_id IN (SELECT id FROM sessions WHERE (id & 1023) = $1)`,
			`DELETE FROM sessions WHERE (id & 1023) = $1`,
		} {
			tag, err := tx.Exec(ctx, q, int(b))
			if err != nil {
				return err
			}
			n += tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("forget bucket %d on %s: %w", b, db.where, err)
	}
	return n, nil
}

// PrepareShard gives a new shard a copy of every item of the catalog's
// home with a quota of 0 (the rebalancer and the checkouts' borrowing
// give it stock; nothing is counted twice), keeping items it has.
func (db *DB) PrepareShard(ctx context.Context, home *DB) (int64, error) {
	var items []byte
	if err := home.primary.QueryRow(ctx, `SELECT coalesce(jsonb_agg(to_jsonb(i)), '[]') FROM items i`).Scan(&items); err != nil {
		return 0, fmt.Errorf("items of shard 1: %w", unavailable(err))
	}
	// At the home's quota epoch: a transfer debited at that epoch is
	// credited here (migration 00015).
	tag, err := db.primary.Exec(ctx, `INSERT INTO items (id, name, description, price_cents, category, available, stock, updated_at, stock_epoch, quota_epoch)
		SELECT id, name, description, price_cents, category, available, 0, updated_at, stock_epoch, quota_epoch
		FROM jsonb_populate_recordset(NULL::items, $1) ON CONFLICT (id) DO NOTHING`, items)
	if err != nil {
		return 0, fmt.Errorf("copy the items to %s: %w", db.where, unavailable(err))
	}
	return tag.RowsAffected(), nil
}

// ShardSet is a deployment's shards, shard 1 (the catalog's home, where
// the map is kept) first: what shop/reshard moves buckets between, shards
// numbered from 0.
type ShardSet []*DB

func (s ShardSet) Count() int { return len(s) }

func (s ShardSet) Fence(ctx context.Context, k int, b shard.Bucket) (shard.Fence, int, error) {
	return s[k].BucketFence(ctx, b)
}

func (s ShardSet) FenceIncoming(ctx context.Context, k int, b shard.Bucket) error {
	return s[k].FenceIncoming(ctx, b)
}

func (s ShardSet) Freeze(ctx context.Context, k int, b shard.Bucket, to int) error {
	return s[k].FreezeBucket(ctx, b, to)
}

// Copy copies bucket b from shard from to shard to and reports the rows
// of orders, lines, events and mail it wrote (what changed) and all rows.
func (s ShardSet) Copy(ctx context.Context, from, to int, b shard.Bucket, final bool) (changed, rows int64, err error) {
	c, err := s[to].CopyBucket(ctx, s[from], b, final)
	return c.Orders + c.Lines + c.Events + c.Mails, c.Rows(), err
}

func (s ShardSet) Forget(ctx context.Context, k int, b shard.Bucket) (int64, error) {
	return s[k].ForgetBucket(ctx, b)
}

func (s ShardSet) ShardMap(ctx context.Context) (shard.StoredMap, bool, error) {
	return s[0].ShardMap(ctx)
}

func (s ShardSet) SetShardMap(ctx context.Context, m shard.StoredMap) (bool, error) {
	return s[0].SetShardMap(ctx, m)
}

func (s ShardSet) MapReaders(ctx context.Context, expiry time.Duration) ([]shard.MapReader, error) {
	return s[0].MapReaders(ctx, expiry)
}
