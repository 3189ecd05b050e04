-- Plans that read few rows while the tables are small. The planner's
-- default random_page_cost (4) prices an index probe as a spinning disk's
-- seek, so on a table of a few pages it reads the whole table instead,
-- and a statement prepared then keeps that generic plan as the table
-- grows until an ANALYZE (measured: River's completer statement scanned
-- all of river_job per job on a fresh database, docs/postgres.md). On the
-- SSDs and page caches PostgreSQL runs on today 1.1 is the usual figure;
-- with it the index is cheaper from a table's first pages, and the plans
-- are right without anyone running ANALYZE. Set for this database only,
-- so it holds on a shared server too.

-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET random_page_cost = 1.1', current_database());
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I RESET random_page_cost', current_database());
END
$$;
-- +goose StatementEnd
