-- The fence that keeps a bucket's writes on one shard while it moves
-- (docs/sharding.md, "Resharding while the service runs"). A replica
-- routes by a copy of the bucket map that may be a second old, so the map
-- cannot be the guarantee: the shard itself refuses the write.
--
-- bucket_fences lists the buckets this shard must not take writes for:
-- 'incoming' while the bucket is being copied here (it is still another
-- shard's), 'gone' once it was frozen here to move away (kept after the
-- move, so a replica with a stale map can never write the bucket here
-- again). Every write of a session's rows (sessions, cart_items, orders:
-- every write transaction of a customer or of the worker touches one of
-- them) checks its bucket: it takes the bucket's shared advisory lock
-- without waiting and looks for a fence. The mover freezes a bucket by
-- taking the same lock exclusively and inserting the fence in one
-- transaction, so the freeze waits for the writes in flight and every
-- write after it fails: SQLSTATE PS001, which the store answers as 503
-- with Retry-After. The mover's own transactions set shop.reshard to on.
-- Cascaded deletes (pruning an expired session) are not checked.
--
-- The triggers are put on a database when it is claimed as a shard
-- (postgres.DB.ClaimShard), not here: one database, unsharded, has no
-- bucket to fence, and its writes do not pay for the check.

-- +goose Up
CREATE TABLE bucket_fences (
    bucket INTEGER     PRIMARY KEY CHECK (bucket BETWEEN 0 AND 1023),
    state  TEXT        NOT NULL CHECK (state IN ('incoming', 'gone')),
    -- gone: the shard (from 1) the bucket was frozen to move to, so a
    -- move cut short is finished toward the same shard.
    moved_to INTEGER   CHECK (moved_to >= 1),
    since  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- +goose StatementBegin
CREATE FUNCTION bucket_fence_check(b BIGINT) RETURNS void
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF pg_trigger_depth() > 1 OR current_setting('shop.reshard', true) = 'on' THEN
        RETURN;
    END IF;
    -- 20 is the fence's advisory lock class (the leases use one-key locks).
    IF NOT pg_try_advisory_xact_lock_shared(20, b::INTEGER)
        OR EXISTS (SELECT 1 FROM bucket_fences WHERE bucket = b) THEN
        RAISE EXCEPTION 'bucket % is not writable on this shard: it is moving or has moved to another shard', b
            USING ERRCODE = 'PS001';
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION bucket_fence_sessions() RETURNS trigger
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM bucket_fence_check(OLD.id & 1023);
        RETURN OLD;
    END IF;
    PERFORM bucket_fence_check(NEW.id & 1023);
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION bucket_fence_cart_items() RETURNS trigger
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM bucket_fence_check(OLD.session_id & 1023);
        RETURN OLD;
    END IF;
    PERFORM bucket_fence_check(NEW.session_id & 1023);
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION bucket_fence_orders() RETURNS trigger
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM bucket_fence_check(NEW.id & 1023);
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- The mover finds a bucket's sessions by this, not by a scan.
CREATE INDEX sessions_bucket ON sessions ((id & 1023));

-- +goose Down
DROP INDEX sessions_bucket;
DROP TRIGGER IF EXISTS bucket_fence ON orders;
DROP TRIGGER IF EXISTS bucket_fence ON cart_items;
DROP TRIGGER IF EXISTS bucket_fence ON sessions;
DROP FUNCTION bucket_fence_orders();
DROP FUNCTION bucket_fence_cart_items();
DROP FUNCTION bucket_fence_sessions();
DROP FUNCTION bucket_fence_check(BIGINT);
DROP TABLE bucket_fences;
