-- The rows that name a session or an item (cart lines, orders, idempotency
-- keys) no longer check a foreign key to sessions or items on each insert:
-- four of the seven checks of a cart change and checkout, each a query
-- through SPI (docs/postgres.md, "The foreign keys to sessions and items").
-- What they held the store's code holds:
--
-- - No such row names a missing session: every write of one starts with
--   the session's row lock (LockSession, or the lock of a statement at
--   once) and writes only if the row was there (a cart change at once
--   checks the session in its statement; a checkout at once needs the
--   cart, which goes with the session). Every delete of a session deletes
--   its cart lines and keys in the same transaction (pruning, retention's
--   kept sessions, resharding's ForgetBucket), which the ON DELETE
--   CASCADE of the cart lines and keys did; pruning locks the sessions it
--   may delete before it looks again for their orders, so a checkout that
--   held the lock is seen and keeps its session.
-- - No cart line names a missing item: items are never deleted.
--
-- TestSessionRowsNeverOutliveTheirSession (shop/postgres) holds the store
-- to it.

-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE
    r RECORD;
BEGIN
    FOR r IN SELECT conrelid::regclass AS tbl, conname FROM pg_constraint
        WHERE contype = 'f' AND conparentid = 0
          AND confrelid IN ('sessions'::regclass, 'items'::regclass)
          AND conrelid IN ('cart_items'::regclass, 'orders'::regclass, 'idempotency_keys'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tbl, r.conname);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE cart_items ADD CONSTRAINT cart_items_session_id_fkey FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE;
ALTER TABLE cart_items ADD CONSTRAINT cart_items_item_id_fkey FOREIGN KEY (item_id) REFERENCES items (id);
ALTER TABLE orders ADD CONSTRAINT orders_session_id_fkey FOREIGN KEY (session_id) REFERENCES sessions (id);
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_session_id_fkey FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE CASCADE;
