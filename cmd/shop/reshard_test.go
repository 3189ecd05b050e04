package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/reshard"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/shard"
)

func noEnv(string) string { return "" }

// Bad input to shop reshard is refused before any database is touched,
// with one line that says what is wrong.
func TestReshardRefusesBadInput(t *testing.T) {
	const u = "postgres://postgres@127.0.0.1:1/none"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--db is required"},
		{[]string{"--add", u}, "--db is required"},
		{[]string{"--db", "mysql://x/y"}, "reshard: --db must be a postgres:// URL"},
		{[]string{"--db", u, "--add", "shop.db"}, `reshard: --add must be a postgres:// URL, got "shop.db"`},
		{[]string{"--db", u, "--add", u}, "is given twice"},
		{[]string{"--db", u, "--buckets", "5-2"}, "--buckets must be FIRST-LAST with 0 <= FIRST <= LAST <= 1023"},
		{[]string{"--db", u, "--buckets", "0-1024"}, "--buckets must be FIRST-LAST"},
		{[]string{"--db", u, "--buckets", "a-b"}, "--buckets must be FIRST-LAST"},
		{[]string{"--db", u, "--buckets", "-3"}, "--buckets must be FIRST-LAST"},
		{[]string{"--db", u, "--readers-wait", "0s"}, "--readers-wait must be positive"},
		{[]string{"--db", u, "now"}, `unexpected argument "now"`},
		{[]string{"--db", u, "--shards", "2"}, "flag provided but not defined: -shards"},
	} {
		err := run(context.Background(), append([]string{"reshard"}, tc.args...), noEnv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("shop reshard %q: %v, want one line saying %q", tc.args, err, tc.want)
		}
	}
	var help bytes.Buffer
	if err := run(context.Background(), []string{"reshard", "--help"}, noEnv, &help); err == nil || !strings.Contains(help.String(), "Usage: shop reshard") {
		t.Errorf("shop reshard --help: %v, printed %q", err, help.String())
	}
}

// shop reshard adds a third shard and moves buckets to it: the orders of
// the moved buckets are on the new shard only, a second run finds nothing
// to do, and shards given in the wrong order or without the added one are
// refused naming why.
func TestReshardAddsAShardAndMovesItsBuckets(t *testing.T) {
	ctx := context.Background()
	u1, u2, u3 := pgtest.NewDatabase(t), pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	if err := run(ctx, []string{"migrate", "--shards", "2", "--db", u1, "--db", u2}, noEnv, io.Discard); err != nil {
		t.Fatal(err)
	}
	b, err := backend.Open(ctx, backend.Config{ShardURLs: []string{u1, u2}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Seed(ctx, seed.Items(3)); err != nil {
		t.Fatal(err)
	}
	const first, last = 1004, 1023 // shard 2's; shard 3 takes them all
	placed := 0
	for placed < 5 {
		_, hash := shop.NewToken()
		if bk, _ := shard.BucketOfTokenHash(hash); bk < first {
			continue
		}
		sess, err := b.Store.CreateSession(ctx, hash)
		if err == nil {
			_, err = b.Store.SetCartItem(ctx, sess.ID, 1, 1)
		}
		if err == nil {
			_, _, err = b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "k",
				Checkout: shop.Checkout{CustomerName: "A", Email: "a@example.com"}})
		}
		if err != nil {
			t.Fatal(err)
		}
		placed++
	}
	b.Close()

	var out bytes.Buffer
	if err := run(ctx, []string{"reshard", "--db", u1, "--db", u2, "--add", u3, "--add-only"}, noEnv, &out); err != nil ||
		!strings.Contains(out.String(), "map: 3 shards, [512 512 0] buckets each; nothing moved") {
		t.Fatalf("shop reshard --add-only: %v, printed %q", err, out.String())
	}
	if n := countOrders(t, u3); n != 0 {
		t.Fatalf("--add-only put %d orders on the new shard", n)
	}
	out.Reset()
	args := []string{"reshard", "--db", u1, "--db", u2, "--add", u3, "--buckets", "1004-1023"}
	if err := run(ctx, args, noEnv, &out); err != nil {
		t.Fatalf("shop reshard: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	if !strings.Contains(out.String(), "bucket 1023: shard 2 -> 3") || !strings.Contains(out.String(), "20 buckets moved") {
		t.Fatalf("shop reshard printed %q, want bucket 1023 moved from shard 2 to 3 and 20 buckets moved", out.String())
	}
	if n := countOrders(t, u3); n != placed {
		t.Errorf("the new shard has %d orders, want the %d of the moved buckets", n, placed)
	}
	if n := countOrders(t, u2); n != 0 {
		t.Errorf("shard 2 still has %d orders of the moved buckets", n)
	}
	out.Reset()
	if err := run(ctx, args, noEnv, &out); err != nil || !strings.Contains(out.String(), "0 buckets moved") {
		t.Errorf("shop reshard run again: %v, printed %q, want 0 buckets moved", err, out.String())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"reshard", "--db", u2, "--db", u1, "--add", u3}, "is shard 2, but it is given as shard 1"},
		{[]string{"reshard", "--db", u1, "--db", u2}, "the map on shard 1 has 3 shards, 2 were given"},
	} {
		err := run(ctx, tc.args, noEnv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("shop %q: %v, want one line saying %q", tc.args, err, tc.want)
		}
	}
}

func countOrders(t *testing.T, url string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM orders`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// shop migrate --shards S stores the balanced map of the S shards, so the
// order of adding a shard is enforced: neither migrate nor a replica
// given a new shard's URL before shop reshard --add-only has put it in
// the map accepts it (before, a replica routed a third of the sessions to
// the empty shard); after --add-only both do. A deployment whose shards
// served before the map was stored gets its map from the first process,
// unless a new shard is among them.
func TestAShardTheMapDoesNotNameIsRefused(t *testing.T) {
	ctx := context.Background()
	u1, u2, u3 := pgtest.NewDatabase(t), pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	if err := run(ctx, []string{"migrate", "--shards", "2", "--db", u1, "--db", u2}, noEnv, io.Discard); err != nil {
		t.Fatal(err)
	}
	want := must(shard.Balanced(2))(t).String()
	if got := storedMap(t, u1); got != "1 "+want {
		t.Fatalf("shop migrate --shards 2 stored the map %q, want epoch 1 and %q", got, want)
	}
	three := []string{"--shards", "3", "--db", u1, "--db", u2, "--db", u3}
	const notInMap = "shard 3 is not in the bucket map on shard 1 (2 shards, epoch 1): add it with shop reshard"
	for _, args := range [][]string{
		append([]string{"migrate"}, three...),
		append([]string{"--role", "api", "--addr", "127.0.0.1:0"}, three...),
		append([]string{"--role", "worker", "--addr", "127.0.0.1:0"}, three...),
	} {
		tctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := run(tctx, args, noEnv, io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), notInMap) || strings.Contains(err.Error(), "\n") {
			t.Errorf("shop %q before --add-only: %v, want one line saying %q", args, err, notInMap)
		}
	}
	if err := run(ctx, []string{"reshard", "--db", u1, "--db", u2, "--add", u3, "--add-only"}, noEnv, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, append([]string{"migrate"}, three...), noEnv, io.Discard); err != nil {
		t.Errorf("shop migrate with the added shard: %v", err)
	}
	b, err := backend.Open(ctx, backend.Config{ShardURLs: []string{u1, u2, u3}})
	if err != nil {
		t.Fatalf("a replica given the added shard after --add-only: %v", err)
	}
	b.Close()

	// Shards 1 and 2 claimed by processes of a version that stored no
	// map, shard 4 new: refused; the two alone get the map of two.
	u4 := pgtest.NewDatabase(t)
	if err := run(ctx, []string{"migrate", "--db", u4}, noEnv, io.Discard); err != nil {
		t.Fatal(err)
	}
	l1, l2 := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	for k, u := range []string{l1, l2} {
		if err := run(ctx, []string{"migrate", "--db", u}, noEnv, io.Discard); err != nil {
			t.Fatal(err)
		}
		db, err := postgres.Open(ctx, u, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = db.ClaimShard(ctx, k+1)
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = backend.Open(ctx, backend.Config{ShardURLs: []string{l1, l2, u4}})
	const mixed = "shards 1, 2 served without a stored bucket map and shards 3 are new"
	if err == nil || !strings.Contains(err.Error(), mixed) {
		t.Errorf("old shards with a new one and no map: %v, want %q", err, mixed)
	}
	if b, err = backend.Open(ctx, backend.Config{ShardURLs: []string{l1, l2}}); err != nil {
		t.Fatalf("old shards without a map: %v", err)
	}
	b.Close()
	if got := storedMap(t, l1); got != "1 "+want {
		t.Errorf("the first process on old shards stored %q, want epoch 1 and %q", got, want)
	}
}

// storedMap is shard_map's epoch and text on a shard 1's database.
func storedMap(t *testing.T, url string) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var epoch int64
	var text string
	if err := conn.QueryRow(context.Background(), `SELECT epoch, map FROM shard_map WHERE id = 1`).Scan(&epoch, &text); err != nil {
		t.Fatalf("the map on %s: %v", url, err)
	}
	return fmt.Sprintf("%d %s", epoch, text)
}

func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// A shop reshard cut short at any step (as a kill would: after the map
// was grown, after a bucket's copy, its freeze, its final copy, its
// switch, before the forget) and run again finishes the move: each rerun
// says what it took over, and at the end every order of the moved
// buckets is on the new shard once, with its line, and nothing of them is
// left on the old one. The reruns give the added shard as --add and then
// as --db, as docs/sharding.md says either works.
func TestReshardCutShortAndRunAgainFinishes(t *testing.T) {
	ctx := context.Background()
	u1, u2, u3 := pgtest.NewDatabase(t), pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	if err := run(ctx, []string{"migrate", "--shards", "2", "--db", u1, "--db", u2}, noEnv, io.Discard); err != nil {
		t.Fatal(err)
	}
	b := must(backend.Open(ctx, backend.Config{ShardURLs: []string{u1, u2}}))(t)
	if _, err := b.Seed(ctx, seed.Items(3)); err != nil {
		t.Fatal(err)
	}
	// Two orders in each bucket a run is cut in, one in a few others.
	placed := 0
	for _, bk := range []shard.Bucket{1004, 1006, 1006, 1009, 1010, 1010, 1015, 1015, 1019, 1023, 1023} {
		placeOrderIn(ctx, t, b, bk)
		placed++
	}
	b.Close()

	added := []string{"reshard", "--db", u1, "--db", u2, "--add", u3, "--buckets", "1004-1023"}
	inDB := []string{"reshard", "--db", u1, "--db", u2, "--db", u3, "--buckets", "1004-1023"}
	for _, tc := range []struct {
		args   []string
		cutAt  shard.Bucket
		step   reshard.Step
		resume string // what the run says it took over from the run before
	}{
		{append(slices.Clone(added[:7]), "--add-only"), 0, "", ""},
		{added, 1006, reshard.Frozen, ""},
		{added, 1010, reshard.FinalCopied, "(resumed: frozen; copying again)"},
		{inDB, 1015, reshard.Copied, "(resumed: copied and frozen; switching)"},
		{inDB, 1023, reshard.Switched, ""},
		{inDB, 0, "", "0 buckets moved; map: 3 shards; "},
	} {
		cut := false
		reshardAfter = func(bk shard.Bucket, s reshard.Step) error {
			if bk == tc.cutAt && s == tc.step {
				cut = true
				return reshard.ErrStopped
			}
			return nil
		}
		var out bytes.Buffer
		err := run(ctx, tc.args, noEnv, &out)
		reshardAfter = nil
		switch {
		case tc.step != "" && (err == nil || !strings.Contains(err.Error(), "run the same command again to finish") || !cut):
			t.Fatalf("shop reshard cut after bucket %d %s: %v, want it stopped there, saying to run it again\n%s", tc.cutAt, tc.step, err, out.String())
		case tc.step == "" && err != nil:
			t.Fatalf("shop %q: %v\n%s", tc.args, err, out.String())
		}
		if !strings.Contains(out.String(), tc.resume) {
			t.Errorf("shop reshard after a cut printed %q, want %q", out.String(), tc.resume)
		}
	}
	if n := countOrders(t, u3); n != placed {
		t.Errorf("the new shard has %d orders, want the %d of the moved buckets", n, placed)
	}
	for _, u := range []string{u1, u2} {
		if n := countOrders(t, u); n != 0 {
			t.Errorf("%d orders of the moved buckets left on an old shard", n)
		}
		conn := must(pgx.Connect(ctx, u))(t)
		var sessions int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE (id & 1023) >= 1004`).Scan(&sessions); err != nil || sessions != 0 {
			t.Errorf("%d sessions of the moved buckets left on an old shard (%v)", sessions, err)
		}
		conn.Close(ctx)
	}
	conn := must(pgx.Connect(ctx, u3))(t)
	defer conn.Close(ctx)
	var orders, lines, split int
	if err := conn.QueryRow(ctx, `SELECT count(DISTINCT o.id), count(l.*), count(*) FILTER (WHERE l.order_id IS NULL)
		FROM orders o LEFT JOIN order_lines l ON l.order_id = o.id`).Scan(&orders, &lines, &split); err != nil {
		t.Fatal(err)
	}
	if orders != placed || lines != placed || split != 0 {
		t.Errorf("the new shard has %d orders with %d lines (%d orders without one), want %d orders of one line each", orders, lines, split, placed)
	}
}

// placeOrderIn places an order of one unit of item 1 in a new session of
// bucket bk.
func placeOrderIn(ctx context.Context, t *testing.T, b *backend.Backend, bk shard.Bucket) {
	t.Helper()
	for {
		_, hash := shop.NewToken()
		if got, _ := shard.BucketOfTokenHash(hash); got != bk {
			continue
		}
		sess := must(b.Store.CreateSession(ctx, hash))(t)
		must(b.Store.SetCartItem(ctx, sess.ID, 1, 1))(t)
		if _, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: "k",
			Checkout: shop.Checkout{CustomerName: "A", Email: "a@example.com"}}); err != nil {
			t.Fatal(err)
		}
		return
	}
}
