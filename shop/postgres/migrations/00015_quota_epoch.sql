-- Admin stock changes and quota transfers kept apart (docs/sharding.md,
-- "An admin change during a transfer"). An admin change of an item's
-- stock sets every shard's quota to its share and numbers itself:
-- items.quota_epoch is the number of the last change a shard's quota was
-- set by (the catalog's home numbers them). A transfer records the donor's
-- epoch when it was debited, and the receiver credits it only at the same
-- epoch: at a later one the change replaced both quotas after the debit,
-- so the units are dropped; at an earlier one the receiver has not had the
-- change yet, and the credit waits (the reconciler retries it).

-- +goose Up
ALTER TABLE items ADD COLUMN quota_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE quota_transfers ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE quota_transfers DROP COLUMN epoch;
ALTER TABLE items DROP COLUMN quota_epoch;
