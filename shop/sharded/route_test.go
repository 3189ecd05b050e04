package sharded_test

import (
	"context"
	"testing"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/shard"
)

// The first process stores the balanced map as epoch 1 (no map stored:
// a new deployment). A map stored on shard 1 replaces it once loaded: new
// sessions go where it says; a bucket it lists as moving refuses writes
// with EUNAVAILABLE and serves reads; a stale writer's map is not stored,
// and a map over more shards than the store has is refused, the map in
// use kept.
func TestTheStoredMapRoutesAndHoldsMovingBuckets(t *testing.T) {
	ctx := context.Background()
	b := openShards(t, 2, seed.Items(2), nil)
	routed, home := b.Sharded, b.Postgres
	balanced := must(shard.Balanced(2))(t)
	if stored, found, err := home.ShardMap(ctx); routed.MapEpoch() != 1 || err != nil || !found || stored.Text != balanced.String() {
		t.Fatalf("epoch %d, stored %+v (%v), want epoch 1 and the balanced map stored by the first process", routed.MapEpoch(), stored, err)
	}
	var hash string
	var bucket shard.Bucket
	for {
		var k int
		_, hash = shop.NewToken()
		k, bucket = must2(balanced.ShardOfTokenHash(hash))(t)
		if k == 0 {
			break
		}
	}

	// Every bucket on shard 2.
	if ok := must(home.SetShardMap(ctx, shard.StoredMap{Epoch: 2, Text: "shardmap/1 shards=2 0-1023:2"}))(t); !ok {
		t.Fatal("the second map was not stored")
	}
	if err := routed.LoadMap(ctx); err != nil {
		t.Fatal(err)
	}
	sess := must(routed.CreateSession(ctx, hash))(t)
	shards := routed.ShardList()
	if _, err := shards[1].Store.SessionByTokenHash(ctx, hash); err != nil {
		t.Fatalf("the session of bucket %d is not on shard 2, where the map puts it: %v", bucket, err)
	}
	if _, err := shards[0].Store.SessionByTokenHash(ctx, hash); shop.ErrorCode(err) != shop.EUNAUTHORIZED && shop.ErrorCode(err) != shop.ENOTFOUND {
		t.Fatalf("shard 1 answered %v for a session the map put on shard 2", err)
	}

	if ok := must(home.SetShardMap(ctx, shard.StoredMap{Epoch: 3, Text: "shardmap/1 shards=2 0-1023:2", Moving: []shard.Bucket{bucket}}))(t); !ok {
		t.Fatal("epoch 3 was not stored")
	}
	if err := routed.LoadMap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := routed.SetCartItem(ctx, sess.ID, 1, 1); shop.ErrorCode(err) != shop.EUNAVAILABLE {
		t.Fatalf("a write to a moving bucket: %v, want EUNAVAILABLE", err)
	}
	if _, err := routed.Cart(ctx, sess.ID); err != nil {
		t.Fatalf("a read of a moving bucket: %v", err)
	}

	if ok := must(home.SetShardMap(ctx, shard.StoredMap{Epoch: 3, Text: "shardmap/1 shards=2 0-1023:1"}))(t); ok {
		t.Fatal("a map of epoch 3 replaced epoch 3: a stale writer won")
	}
	if ok := must(home.SetShardMap(ctx, shard.StoredMap{Epoch: 4, Text: "shardmap/1 shards=3 0-1023:3"}))(t); !ok {
		t.Fatal("epoch 4 was not stored")
	}
	if err := routed.LoadMap(ctx); err == nil {
		t.Fatal("a map of 3 shards was loaded by a store of 2")
	} else {
		t.Log(err)
	}
	if routed.MapEpoch() != 3 {
		t.Fatalf("epoch %d after a refused map, want 3 kept", routed.MapEpoch())
	}
}
