-- The bucket map of a sharded deployment, kept on the catalog's home
-- (shard 1) once it differs from what every replica computes from the
-- number of shards alone (shard.Balanced): during and after a resharding
-- (docs/sharding.md). map is shard.Map's text form; epoch moves with every
-- change, and replicas reload the row when it moves. moving lists the
-- buckets whose writes are held (503, Retry-After) while their owner is
-- switched. One database and a shard that is not the catalog's home keep
-- the table empty.

-- +goose Up
CREATE TABLE shard_map (
    id     INTEGER   PRIMARY KEY CHECK (id = 1),
    epoch  BIGINT    NOT NULL CHECK (epoch >= 1),
    map    TEXT      NOT NULL,
    moving INTEGER[] NOT NULL DEFAULT '{}'
);

-- +goose Down
DROP TABLE shard_map;
