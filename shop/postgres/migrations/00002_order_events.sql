-- The order events outbox (as shop/sqlite/migrations/00002): every status
-- change of an order is a row written in the transaction that makes the
-- change. A relay publishes unpublished rows in id order and stamps
-- published_at. seq numbers one order's events from 1.

-- +goose Up
CREATE TABLE order_events (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id     BIGINT  NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL CHECK (seq > 0),
    status       TEXT    NOT NULL CHECK (status IN ('placed', 'confirmed', 'ready')),
    created_at   BIGINT  NOT NULL,
    published_at BIGINT,
    UNIQUE (order_id, seq)
);
-- The relay's queue: only the unpublished rows, in publishing order.
CREATE INDEX order_events_unpublished ON order_events (id) WHERE published_at IS NULL;

-- +goose Down
DROP TABLE order_events;
