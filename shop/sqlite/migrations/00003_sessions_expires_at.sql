-- Pruning finds expired sessions by expiry time (PostgreSQL's schema has
-- had this index from the start).

-- +goose Up
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- +goose Down
DROP INDEX sessions_expires_at;
