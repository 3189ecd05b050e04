-- The PostgreSQL schema: the same tables, columns and constraints as the
-- embedded SQLite schema (shop/sqlite/migrations), so both stores keep one
-- contract. Timestamps are unix microseconds (BIGINT) in both; ids that the
-- service creates are identity columns.

-- +goose Up
CREATE TABLE catalog_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO catalog_version (id, version) VALUES (1, 1);

CREATE TABLE items (
    id          BIGINT  PRIMARY KEY,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    price_cents BIGINT  NOT NULL CHECK (price_cents >= 0),
    category    TEXT    NOT NULL,
    available   BOOLEAN NOT NULL DEFAULT TRUE,
    stock       BIGINT  NOT NULL CHECK (stock >= 0),
    updated_at  BIGINT  NOT NULL
);
-- Category pages are keyset-paginated by id within a category.
CREATE INDEX items_category_id ON items (category, id);

CREATE TABLE sessions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE cart_items (
    session_id BIGINT  NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    item_id    BIGINT  NOT NULL REFERENCES items (id),
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (session_id, item_id)
);
CREATE INDEX cart_items_item_id ON cart_items (item_id);

CREATE TABLE orders (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id    BIGINT NOT NULL REFERENCES sessions (id),
    status        TEXT   NOT NULL CHECK (status IN ('placed', 'confirmed', 'ready')),
    customer_name TEXT   NOT NULL,
    email         TEXT   NOT NULL,
    notes         TEXT   NOT NULL DEFAULT '',
    total_cents   BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
-- "My orders, newest first" is a keyset scan of this index.
CREATE INDEX orders_session_id ON orders (session_id, id);

CREATE TABLE order_lines (
    order_id         BIGINT  NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    item_id          BIGINT  NOT NULL,
    name             TEXT    NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT  NOT NULL,
    line_total_cents BIGINT  NOT NULL,
    PRIMARY KEY (order_id, item_id)
);

-- A checkout's idempotency key, scoped to its session.
CREATE TABLE idempotency_keys (
    session_id   BIGINT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    key          TEXT   NOT NULL,
    request_hash TEXT   NOT NULL,
    order_id     BIGINT NOT NULL REFERENCES orders (id),
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (session_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_order_id ON idempotency_keys (order_id);

-- The mail sink: one confirmation per order, whatever the retries.
CREATE TABLE mail_outbox (
    order_id BIGINT PRIMARY KEY REFERENCES orders (id),
    to_addr  TEXT   NOT NULL,
    subject  TEXT   NOT NULL,
    body     TEXT   NOT NULL,
    sent_at  BIGINT NOT NULL
);

-- +goose Down
DROP TABLE mail_outbox;
DROP TABLE idempotency_keys;
DROP TABLE order_lines;
DROP TABLE orders;
DROP TABLE cart_items;
DROP TABLE sessions;
DROP TABLE items;
DROP TABLE catalog_version;
