-- The processes that route by the bucket map, and the map's epoch each
-- routes by (docs/sharding.md, "Waiting for every process to route by the
-- new map"). Every API replica and worker of a sharded shop writes its row
-- here, on the catalog's home (shard 1), at its start and at every map
-- reload (sharded.MapReloadEvery), and deletes it when it stops. shop
-- reshard moves buckets only once every process seen lately routes by the
-- grown map, and deletes a moved bucket from its old shard only once every
-- one routes by the map of the last switch; a row not written for longer
-- than reshard.ReaderExpiry is a process that died, counted as routing by
-- nothing, and deleted. One database and the other shards keep the table
-- empty.

-- +goose Up
CREATE TABLE shard_map_readers (
    process TEXT        PRIMARY KEY,
    epoch   BIGINT      NOT NULL,
    -- The catalog home's clock, not the process's: ages are compared on
    -- one clock.
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE shard_map_readers;
