-- The rows that name an order (its lines, its events, its idempotency key,
-- its mail) no longer check a foreign key to the partitioned orders table
-- on each insert. Each such check is a query through SPI on `orders`, one
-- per inserted row: counted by callgrind on one backend, the cart change
-- and checkout of scripts/pgbench-checkout.sql cost 2.40 and 2.44 million
-- instructions a turn with them and 2.30 and 2.24 million without
-- (docs/postgres.md, "The two levers counted"). What they protected the store's statements
-- hold: every such row is written from the RETURNING of the statement that
-- created or moved the order (the checkout's placed, the worker's moved),
-- in the same transaction, so it names an order that exists; and the rows
-- of an order are removed with it by the only code that removes orders
-- (retention drops a month of the three tables whole after the keys and
-- mails; resharding's ForgetBucket deletes the lines and events before the
-- orders, as the cascades did). TestOrderRowsNeverOutliveTheirOrder
-- (shop/postgres) holds the store to it.

-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE
    r RECORD;
BEGIN
    FOR r IN SELECT conrelid::regclass AS tbl, conname FROM pg_constraint
        WHERE contype = 'f' AND conparentid = 0 AND confrelid = 'orders'::regclass
          AND conrelid IN ('order_lines'::regclass, 'order_events'::regclass,
                           'idempotency_keys'::regclass, 'mail_outbox'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tbl, r.conname);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE order_lines ADD CONSTRAINT order_lines_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE;
ALTER TABLE order_events ADD CONSTRAINT order_events_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id);
ALTER TABLE mail_outbox ADD CONSTRAINT mail_outbox_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id);
