-- The orders partitions made before this migration get what
-- shop/postgres/partitions.go (sessionsPerOrder) gives each new month's:
-- ANALYZE records their session_id's distinct values as half their rows,
-- whatever its sample holds, so "my orders" reads a session's own orders
-- by the (session_id, id) index, never the month's by the primary key
-- (docs/postgres.md, "Why rows read per request swing between runs").
-- The option takes effect at each partition's next ANALYZE.

-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE
    p REGCLASS;
BEGIN
    FOR p IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'orders'::regclass LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN session_id SET (n_distinct = -0.5)', p);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
    p REGCLASS;
BEGIN
    FOR p IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'orders'::regclass LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN session_id RESET (n_distinct)', p);
    END LOOP;
END
$$;
-- +goose StatementEnd
