-- The bucket fence's check (migration 00016) looks for the fence only
-- after it holds the bucket's shared lock, in a statement of its own.
--
-- 00016 took the lock and looked for the fence in one expression:
-- `NOT pg_try_advisory_xact_lock_shared(...) OR EXISTS (SELECT ... FROM
-- bucket_fences ...)`. One expression is one statement, and a statement
-- reads through the snapshot taken when it starts, before the lock is
-- taken. A write whose statement started before a freeze committed and
-- that called the lock just after it (the freeze had released it) got
-- the lock and read no fence: it wrote the bucket on its old shard after
-- the freeze, and a final copy that had read the bucket already did not
-- have it. On a busy machine a writer can be descheduled for that long;
-- it explains the storm test of moving buckets failing twice in CI (a
-- cart missing on the new shard: "the cart is empty"; a session missing
-- there: cart_items_session_id_fkey). Now the lock is
-- taken first; the look that follows is a new statement, whose snapshot
-- (at READ COMMITTED) is taken once the lock is held, so it sees any
-- freeze that committed before the lock was granted.
--
-- At REPEATABLE READ or SERIALIZABLE every statement reads through the
-- transaction's first snapshot, which can be older than a freeze that
-- committed before the lock was granted: the look could not see it. The
-- shop writes a session's rows only at READ COMMITTED (PostgreSQL's
-- default), so such a write is refused with an error that says so
-- (SQLSTATE PS002), not let through unchecked.

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bucket_fence_check(b BIGINT) RETURNS void
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF pg_trigger_depth() > 1 OR current_setting('shop.reshard', true) = 'on' THEN
        RETURN;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a write of bucket % at % isolation: the bucket fence is checked only at read committed', b, current_setting('transaction_isolation')
            USING ERRCODE = 'PS002';
    END IF;
    -- 20 is the fence's advisory lock class (the leases use one-key locks).
    IF NOT pg_try_advisory_xact_lock_shared(20, b::INTEGER) THEN
        RAISE EXCEPTION 'bucket % is not writable on this shard: it is moving or has moved to another shard', b
            USING ERRCODE = 'PS001';
    END IF;
    -- A statement of its own: its snapshot is taken with the lock held.
    IF EXISTS (SELECT 1 FROM bucket_fences WHERE bucket = b) THEN
        RAISE EXCEPTION 'bucket % is not writable on this shard: it is moving or has moved to another shard', b
            USING ERRCODE = 'PS001';
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bucket_fence_check(b BIGINT) RETURNS void
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
