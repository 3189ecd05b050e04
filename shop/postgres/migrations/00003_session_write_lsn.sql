-- Read-your-writes across read replicas: the primary's WAL position after a
-- session's last write (cart change, checkout). A read for that session may
-- go to a replica only once the replica has replayed past it; the marker is
-- in the database, so every stateless API replica sees it.

-- +goose Up
ALTER TABLE sessions ADD COLUMN wrote_lsn pg_lsn;

-- +goose Down
ALTER TABLE sessions DROP COLUMN wrote_lsn;
