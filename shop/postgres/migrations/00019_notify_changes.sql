-- Notifications for the work that used to poll (docs/postgres.md, "Work
-- the cluster's database does between requests"). Every statement that
-- inserts order events notifies shop_order_events, which wakes the outbox
-- relay (it then polls only as a safety net), and every move of the
-- catalog version notifies shop_catalog_version with the new version,
-- which each process's in-memory version takes without a read.
-- PostgreSQL delivers a notification at its transaction's commit and
-- folds a transaction's identical ones into one; a statement-level
-- trigger fires once a statement, even one that inserted no row (a
-- checkout that was not plain wakes the relay for nothing: rare).

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION shop_notify_order_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shop_order_events', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER order_events_notify AFTER INSERT ON order_events
    FOR EACH STATEMENT EXECUTE FUNCTION shop_notify_order_events();

-- +goose StatementBegin
CREATE FUNCTION shop_notify_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('shop_catalog_version', NEW.version::text);
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER catalog_version_notify AFTER UPDATE ON catalog_version
    FOR EACH ROW EXECUTE FUNCTION shop_notify_catalog_version();

-- +goose Down
DROP TRIGGER catalog_version_notify ON catalog_version;
DROP FUNCTION shop_notify_catalog_version();
DROP TRIGGER order_events_notify ON order_events;
DROP FUNCTION shop_notify_order_events();
