package sharded_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/reshard"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/shard"
)

// A reshard moves nothing while a process routes by a map without the
// added shard, and deletes a moved bucket from its old shard only once
// every process routes by the map of its switch. A process that reported
// long ago (died) holds nothing up, and its report is deleted.
//
// Four processes report: "old", given two shards (it cannot route by the
// grown map), until it stops; "lagging", given three, whose reloads
// stall (its report is written by hand); "follower", given three, with
// its map reload running; and a dead one, an hour silent. With the fixed
// wait the mover had before, the bucket was deleted from its old shard
// while "lagging" still read it there.
func TestReshardWaitsForEveryProcessToRouteByTheNewMap(t *testing.T) {
	ctx := context.Background()
	urls := []string{newShardDatabase(t), newShardDatabase(t), newShardDatabase(t)}
	old := must(backend.Open(ctx, backend.Config{ShardURLs: urls[:2]}))(t)
	t.Cleanup(func() { old.Close() })
	if _, err := old.Seed(ctx, seed.Items(3)); err != nil {
		t.Fatal(err)
	}
	third := must(postgres.Open(ctx, urls[2], postgres.Options{}))(t)
	t.Cleanup(third.Close)
	if err := third.ClaimShard(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := third.PrepareShard(ctx, old.Shards[0]); err != nil {
		t.Fatal(err)
	}
	dbs := postgres.ShardSet{old.Shards[0], old.Shards[1], third}
	home := must(pgx.Connect(ctx, urls[0]))(t)
	t.Cleanup(func() { home.Close(ctx) })
	if _, err := home.Exec(ctx, `INSERT INTO shard_map_readers (process, epoch, seen_at) VALUES ('dead', 1, now() - interval '1 hour')`); err != nil {
		t.Fatal(err)
	}

	waiting := make(chan []shard.MapReader)
	mover := &reshard.Mover{DB: dbs, CatchUpPasses: 1, ReadersWait: 10 * time.Minute}
	var last string
	mover.Waiting = func(lagging []shard.MapReader) {
		if key := fmt.Sprint(names(lagging), epochs(lagging)); key != last {
			last = key
			waiting <- lagging
		}
	}
	if _, err := mover.AddShard(ctx); err != nil {
		t.Fatal(err)
	}
	lagging := must(backend.Open(ctx, backend.Config{ShardURLs: urls}))(t)
	t.Cleanup(func() { lagging.Close() })
	follower := must(backend.Open(ctx, backend.Config{ShardURLs: urls}))(t)
	t.Cleanup(func() { follower.Close() })
	stopReload, reloadStopped := context.WithCancel(ctx)
	t.Cleanup(reloadStopped)
	go follower.Sharded.RunMapReload(stopReload, 20*time.Millisecond)

	// An order in the bucket to move, through "lagging".
	mo := must(mover.Plan(ctx, 0, shard.Buckets-1))(t)[0]
	s := &storm{buckets: map[shard.Bucket]bool{mo.Bucket: true}}
	hash, _ := s.tokenIn()
	sess := must(lagging.Store.CreateSession(ctx, hash))(t)
	must(lagging.Store.SetCartItem(ctx, sess.ID, 1, 2))(t)
	order, _ := must2(lagging.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "k",
		Checkout: shop.Checkout{CustomerName: "A", Email: "a@example.com"}}))(t)

	type result struct {
		r   reshard.Report
		err error
	}
	// "old" reports the map before the shard was added, "lagging" the
	// grown one; both as late as can be, as they would every second (a
	// report older than ReaderExpiry is a dead process's).
	for _, p := range []*backend.Backend{old, lagging} {
		if err := p.Sharded.ReportMapEpoch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ran := make(chan result, 1)
	go func() {
		r, err := mover.Run(ctx, mo.Bucket, mo.Bucket, nil)
		ran <- result{r, err}
	}()

	// next is the next set of processes the mover waits for; the run
	// ending first is the mover not waiting.
	next := func(stage string) []shard.MapReader {
		t.Helper()
		select {
		case got := <-waiting:
			return got
		case res := <-ran:
			t.Fatalf("%s, the run ended without waiting for a process that routes by an older map: %d moved, %d rows forgotten, %v",
				stage, len(res.r.Moves), res.r.Forgotten, res.err)
			return nil
		}
	}

	// 1. "old" has not the grown map: nothing moves.
	got := next("before the moves")
	if want := []string{old.Sharded.Process()}; !slices.Equal(names(got), want) {
		t.Fatalf("waiting before the moves for %v, want %v (the process without the added shard)", names(got), want)
	}
	if owner := mustOwner(ctx, t, dbs, mo.Bucket); owner != mo.From {
		t.Fatalf("bucket %d moved to shard %d while a process could not follow", mo.Bucket, owner+1)
	}
	if err := lagging.Sharded.ReportMapEpoch(ctx); err != nil { // its reloads fail, its reports go on
		t.Fatal(err)
	}
	if err := old.Sharded.LeaveMapReaders(ctx); err != nil { // it stops
		t.Fatal(err)
	}

	// 2. The bucket is switched; "lagging" still routes by the map before
	// the switch: the old copy stays, and reads whole through it.
	// ("follower" may be listed too until its reload reports the switch.)
	for got = next("before the forget"); !slices.Equal(names(got), []string{lagging.Sharded.Process()}); got = next("before the forget") {
		if !slices.Contains(names(got), lagging.Sharded.Process()) || slices.Contains(names(got), old.Sharded.Process()) {
			t.Fatalf("waiting before the forget for %v, want %s (and at most the follower)", names(got), lagging.Sharded.Process())
		}
	}
	if owner := mustOwner(ctx, t, dbs, mo.Bucket); owner != mo.To {
		t.Fatalf("bucket %d is on shard %d, want switched to %d", mo.Bucket, owner+1, mo.To+1)
	}
	if o, err := lagging.Store.Order(ctx, sess.ID, order.ID); err != nil || len(o.Lines) != 1 {
		t.Fatalf("the order through the process that has not reloaded: %+v, %v; want it whole from the old shard", o, err)
	}
	if err := lagging.Sharded.LoadMap(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lagging.Sharded.ReportMapEpoch(ctx); err != nil {
		t.Fatal(err)
	}

	// 3. Every process routes by the new map: the old copy is deleted.
	res := <-ran
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(res.r.Moves) != 1 || res.r.Forgotten == 0 {
		t.Fatalf("moved %d buckets, forgot %d rows; want 1 bucket moved and its old copy deleted", len(res.r.Moves), res.r.Forgotten)
	}
	oldShard := must(pgx.Connect(ctx, urls[mo.From]))(t)
	defer oldShard.Close(ctx)
	var left int
	if err := oldShard.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE (id & 1023) = $1`, int(mo.Bucket)).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d sessions of bucket %d left on its old shard (%v)", left, mo.Bucket, err)
	}
	if o, err := lagging.Store.Order(ctx, sess.ID, order.ID); err != nil || len(o.Lines) != 1 {
		t.Fatalf("the order after the move: %+v, %v", o, err)
	}
	var dead int
	if err := home.QueryRow(ctx, `SELECT count(*) FROM shard_map_readers WHERE process IN ('dead', $1)`, old.Sharded.Process()).Scan(&dead); err != nil || dead != 0 {
		t.Fatalf("%d reports of the dead and the stopped process left (%v), want none", dead, err)
	}

	// A process that does not catch up within ReadersWait is named.
	if _, err := home.Exec(ctx, `INSERT INTO shard_map_readers (process, epoch) VALUES ('stuck', 1)`); err != nil {
		t.Fatal(err)
	}
	mover.Waiting, mover.ReadersWait = nil, time.Nanosecond
	stored, _ := must2(dbs.ShardMap(ctx))(t)
	err := mover.WaitForReaders(ctx, stored.Epoch)
	var lag *reshard.LaggingError
	if !errors.As(err, &lag) || !strings.Contains(err.Error(), "stuck (epoch 1") {
		t.Fatalf("waiting on a stuck process: %v, want a LaggingError naming it", err)
	}
}

func names(rs []shard.MapReader) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Process)
	}
	return out
}

func epochs(rs []shard.MapReader) []int64 {
	var out []int64
	for _, r := range rs {
		out = append(out, r.Epoch)
	}
	return out
}

// mustOwner is bucket b's owner in the stored map.
func mustOwner(ctx context.Context, t *testing.T, dbs postgres.ShardSet, b shard.Bucket) int {
	t.Helper()
	stored, _ := must2(dbs.ShardMap(ctx))(t)
	m := must(shard.ParseMap(stored.Text))(t)
	return m.Owner(b)
}
