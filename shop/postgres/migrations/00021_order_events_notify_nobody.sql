-- Order events notify nobody (docs/postgres.md, "Work the cluster's
-- database does between requests"). PostgreSQL signals every listening
-- connection of the database at each notifying commit, whatever channel
-- it listens on, and each signalled connection reads the notification
-- queue in a transaction of its own: with River's listener and the
-- shop's (the outbox relay's, each process's catalog version), migration
-- 00019's trigger cost every order's checkout, confirmation and "ready"
-- step one commit per listening connection, and serialised their
-- commits on the notify queue's lock. The outbox relay runs in the worker, whose jobs
-- see each order event committed (jobs.Config.EventsWritten) and wake it
-- in the process. The catalog version's trigger stays: it moves rarely.

-- +goose Up
DROP TRIGGER order_events_notify ON order_events;
DROP FUNCTION shop_notify_order_events();

-- +goose Down
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
