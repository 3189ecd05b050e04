package sharded_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/reshard"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/shard"
	"github.com/perfscale/perfscale/shop/sharded"
)

// storm is shoppers placing orders in the buckets being moved, each
// retrying a refused step (503) with the same idempotency key until it
// is done, and what they were told.
type storm struct {
	buckets map[shard.Bucket]bool
	mu      sync.Mutex
	acked   map[int64]ackedOrder // by order id
	refused int                  // 503s met
	placed  chan struct{}        // one send per order acknowledged
	// where, when set, says where a session's rows and its bucket's
	// fences are on every shard: logged with an unexpected failure, so a
	// failure seen once can be explained.
	where func(sessionID int64, b shard.Bucket) string
	// start and steps time the moves' steps, by bucket, for the same log.
	start time.Time
	steps map[shard.Bucket][]string
}

// step notes that bucket b's move reached st.
func (s *storm) step(b shard.Bucket, st reshard.Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.steps != nil {
		s.steps[b] = append(s.steps[b], fmt.Sprintf("%s at %v", st, time.Since(s.start).Round(time.Microsecond)))
	}
}

func (s *storm) stepsOf(b shard.Bucket) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.steps[b], ", ")
}

type ackedOrder struct {
	session int64
	item    int64
	units   int
	bucket  shard.Bucket
}

// tokenIn is a token hash whose bucket is one of the storm's.
func (s *storm) tokenIn() (string, shard.Bucket) {
	for {
		_, hash := shop.NewToken()
		if b, _ := shard.BucketOfTokenHash(hash); s.buckets[b] {
			return hash, b
		}
	}
}

// retry runs f until it succeeds or fails with something else than a 503
// (counted), or until giveUp is closed when f keeps being refused. Each
// call is noted in tr: what it was, where it was routed, what it got.
func retry[T any](s *storm, tr *trail, what string, giveUp <-chan struct{}, f func() (T, error)) (T, error) {
	for {
		at, began := tr.routed(), time.Now()
		v, err := f()
		tr.note(what, at, began, err)
		if shop.ErrorCode(err) != shop.EUNAVAILABLE {
			return v, err
		}
		s.mu.Lock()
		s.refused++
		s.mu.Unlock()
		select {
		case <-giveUp:
			return v, err
		default:
		}
	}
}

// shop places orders through b until stop is closed, each in a new
// session. A session or cart refused until stop is dropped (nothing was
// acknowledged); a checkout is retried with its key until it is done,
// except by a stale shopper (its replica's map is never reloaded), which
// gives it up at stop.
func (s *storm) shop(ctx context.Context, t *testing.T, b *backend.Backend, id int, stop <-chan struct{}, stale bool) {
	r := rand.New(rand.NewPCG(uint64(id), 7))
	var sessionID int64
	var bucket shard.Bucket
	tr := &trail{store: b.Sharded, start: s.start}
	gaveUp := func(what string, err error) {
		if shop.ErrorCode(err) != shop.EUNAVAILABLE {
			var where string
			if s.where != nil {
				where = s.where(sessionID, bucket)
			}
			owner, _ := b.Sharded.OwnerOfSession(sessionID)
			t.Errorf("shopper %d (stale map: %v): %s: session %d of bucket %d, routed to shard %d by map epoch %d: %v; its calls: %s; the bucket's move: %s; %s",
				id, stale, what, sessionID, bucket, owner+1, b.Sharded.MapEpoch(), err, tr, s.stepsOf(bucket), where)
		}
	}
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		var hash string
		hash, bucket = s.tokenIn()
		sessionID = 0
		tr.reset(bucket)
		item, units := int64(1+r.IntN(3)), 1+r.IntN(2)
		sess, err := retry(s, tr, "create session", stop, func() (*shop.Session, error) { return b.Store.CreateSession(ctx, hash) })
		if err != nil {
			gaveUp("create session", err)
			return
		}
		sessionID = sess.ID
		if _, err := retry(s, tr, "cart", stop, func() (*shop.Cart, error) { return b.Store.SetCartItem(ctx, sess.ID, item, units) }); err != nil {
			gaveUp("cart", err)
			return
		}
		key := fmt.Sprintf("k%d-%d", id, n)
		done := stop
		if !stale {
			done = nil // a fresh shopper finishes its order: its replica follows the map
		}
		o, err := retry(s, tr, "checkout", done, func() (*shop.Order, error) {
			o, _, err := b.Desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: key,
				Checkout: shop.Checkout{CustomerName: "A", Email: "a@example.com"}})
			return o, err
		})
		if err != nil {
			gaveUp("checkout", err)
			return
		}
		s.mu.Lock()
		s.acked[o.ID] = ackedOrder{session: sess.ID, item: item, units: units, bucket: bucket}
		s.mu.Unlock()
		select {
		case s.placed <- struct{}{}:
		default:
		}
	}
}

// trail is one shopper's calls for its current session: each one's
// shard and map epoch as its replica's map gave them just before the
// call (a reload during the call is noted), and its outcome. It keeps the
// first and the last calls (a refused call is retried many times).
type trail struct {
	store  *sharded.Store
	start  time.Time
	bucket shard.Bucket
	calls  []string
	n      int
}

const trailKept = 8

func (tr *trail) reset(b shard.Bucket) { tr.bucket, tr.calls, tr.n = b, tr.calls[:0], 0 }

// routed is where the map routes the bucket now, and by which epoch.
func (tr *trail) routed() string {
	k, err := tr.store.OwnerOfSession(int64(1)<<10 | int64(tr.bucket))
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("shard %d (epoch %d)", k+1, tr.store.MapEpoch())
}

func (tr *trail) note(what, at string, began time.Time, err error) {
	tr.n++
	when := fmt.Sprintf(" from %v to %v", began.Sub(tr.start).Round(time.Microsecond), time.Since(tr.start).Round(time.Microsecond))
	if after := tr.routed(); after != at {
		at += ", map reloaded during the call: " + after
	}
	at += when
	c := fmt.Sprintf("#%d %s on %s: %v", tr.n, what, at, err)
	if err == nil {
		c = fmt.Sprintf("#%d %s on %s: ok", tr.n, what, at)
	}
	if len(tr.calls) == 2*trailKept {
		tr.calls = append(tr.calls[:trailKept], tr.calls[trailKept+1:]...)
	}
	tr.calls = append(tr.calls, c)
}

func (tr *trail) String() string {
	if tr.n > len(tr.calls) {
		return strings.Join(tr.calls[:trailKept], "; ") + fmt.Sprintf("; (%d more); ", tr.n-len(tr.calls)) + strings.Join(tr.calls[trailKept:], "; ")
	}
	return strings.Join(tr.calls, "; ")
}

// Buckets move to a new third shard while shoppers check out in exactly
// those buckets through a replica that follows the map and one whose map
// is stale (it never learns of the third shard). Two moves are cut short
// (after the freeze, after the final copy) and finished by running them
// again. Then: every acknowledged order exists once, on the shard the map
// names, with all its lines there; no other order exists; a placed
// order's confirmation job exists once, on its order's shard; the moved
// buckets are gone from their old shards; and for every item the stock
// it started with is what is left on all shards plus what all orders
// hold. A frozen bucket refuses writes (503) from the replica that has
// not yet seen the switch, and the stale replica's writes to a moved
// bucket are refused by the old shard for good.
func TestMovingBucketsUnderACheckoutStormLosesNothing(t *testing.T) {
	ctx := context.Background()
	urls := []string{newShardDatabase(t), newShardDatabase(t), newShardDatabase(t)}
	items := seed.Items(3)
	initial := map[int64]int64{}
	for i := range items {
		items[i].Stock = 5000
		initial[items[i].ID] = items[i].Stock
	}
	stale, err := backend.Open(ctx, backend.Config{ShardURLs: urls[:2]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stale.Close() })
	if _, err := stale.Seed(ctx, items); err != nil {
		t.Fatal(err)
	}

	// Add shard 3: its items with no quota, the map grown to it.
	third, err := postgres.Open(ctx, urls[2], postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(third.Close)
	if err := third.ClaimShard(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := third.PrepareShard(ctx, stale.Shards[0]); err != nil {
		t.Fatal(err)
	}
	dbs := postgres.ShardSet{stale.Shards[0], stale.Shards[1], third}
	mover := &reshard.Mover{DB: dbs, CatchUpPasses: 2}
	if _, err := mover.AddShard(ctx); err != nil {
		t.Fatal(err)
	}
	fresh, err := backend.Open(ctx, backend.Config{ShardURLs: urls})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fresh.Close() })
	plan := must(mover.Plan(ctx, 0, shard.Buckets-1))(t)
	if len(plan) != shard.Buckets/3 {
		t.Fatalf("plan of %d moves, want %d", len(plan), shard.Buckets/3)
	}
	// Every third planned bucket, from both old shards, 24 in all.
	var moves []shard.Move
	for i := 0; i < len(plan) && len(moves) < 24; i += 3 {
		moves = append(moves, plan[i])
	}
	s := &storm{buckets: map[shard.Bucket]bool{}, acked: map[int64]ackedOrder{}, placed: make(chan struct{}, 1),
		where: func(sessionID int64, b shard.Bucket) string { return whereOnShards(ctx, urls, sessionID, b) },
		start: time.Now(), steps: map[shard.Bucket][]string{}}
	for _, mo := range moves {
		s.buckets[mo.Bucket] = true
	}

	// A session in the first bucket, made before the move, to write to
	// while it is frozen.
	probeHash, b := s.tokenIn()
	for b != moves[0].Bucket {
		probeHash, b = s.tokenIn()
	}
	probe := must(fresh.Store.CreateSession(ctx, probeHash))(t)

	stop := make(chan struct{})
	var shoppers sync.WaitGroup
	for i := range 6 {
		shoppers.Go(func() { s.shop(ctx, t, fresh, i, stop, false) })
	}
	for i := range 2 {
		shoppers.Go(func() { s.shop(ctx, t, stale, 100+i, stop, true) })
	}
	for range 10 { // the storm is under way
		<-s.placed
	}

	cut := map[shard.Bucket]reshard.Step{moves[1].Bucket: reshard.Frozen, moves[2].Bucket: reshard.FinalCopied}
	mover.After = func(b shard.Bucket, step reshard.Step) error {
		s.step(b, step)
		switch {
		case b == moves[0].Bucket && step == reshard.Frozen:
			// The fresh replica still names the old shard: the fence says no.
			if _, err := fresh.Store.SetCartItem(ctx, probe.ID, 1, 1); !errors.Is(err, shop.ErrBucketMoving) {
				return fmt.Errorf("a write to frozen bucket %d: %v, want the bucket moving (503)", b, err)
			}
		case cut[b] == step:
			delete(cut, b)
			return reshard.ErrStopped
		case step == reshard.Switched:
			if err := fresh.Sharded.LoadMap(ctx); err != nil {
				return err
			}
			return readsWhole(ctx, fresh, s, b)
		}
		return nil
	}
	var frozen []time.Duration
	var buckets []shard.Bucket
	var rows int64
	for _, mo := range moves {
		done, err := mover.MoveBucket(ctx, mo.Bucket, mo.To)
		if errors.Is(err, reshard.ErrStopped) {
			done, err = mover.MoveBucket(ctx, mo.Bucket, mo.To)
			if err == nil && done.Resume == "" {
				t.Errorf("bucket %d: the move run again did not say what it took over", mo.Bucket)
			}
			t.Logf("bucket %d cut short and run again: %s", mo.Bucket, done.Resume)
		}
		if err != nil {
			close(stop)
			shoppers.Wait()
			t.Fatal(err)
		}
		frozen = append(frozen, done.Frozen)
		buckets = append(buckets, mo.Bucket)
		rows += done.Rows
	}
	<-s.placed // at least one order after the last move
	close(stop)
	shoppers.Wait()
	if len(cut) != 0 {
		t.Fatalf("moves not cut short as planned: %v", cut)
	}

	// The stale replica's write to a moved bucket is refused by its old
	// shard, whatever its map says.
	if _, err := stale.Store.SetCartItem(ctx, probe.ID, 1, 1); !errors.Is(err, shop.ErrBucketMoving) {
		t.Fatalf("a stale replica's write to moved bucket %d: %v, want the bucket moving (503)", moves[0].Bucket, err)
	}
	forgotten := must(mover.Forget(ctx, buckets))(t)
	slices.Sort(frozen)
	t.Logf("%d orders acknowledged, %d refusals (503) retried; %d buckets moved, %d rows written on the new shard (all passes), writes refused per bucket: median %v, max %v; %d rows forgotten",
		len(s.acked), s.refused, len(moves), rows, frozen[len(frozen)/2], frozen[len(frozen)-1], forgotten)
	checkAfterMoves(ctx, t, urls, fresh, s, moves, initial)
}

// readsWhole: every order acknowledged so far in bucket b reads whole
// through the replica that follows the map.
func readsWhole(ctx context.Context, b *backend.Backend, s *storm, bucket shard.Bucket) error {
	s.mu.Lock()
	var want []int64
	orders := map[int64]ackedOrder{}
	for id, o := range s.acked {
		if o.bucket == bucket {
			want = append(want, id)
			orders[id] = o
		}
	}
	s.mu.Unlock()
	for _, id := range want {
		o, err := b.Store.Order(ctx, orders[id].session, id)
		if err != nil {
			return fmt.Errorf("order %d of switched bucket %d: %w", id, bucket, err)
		}
		if len(o.Lines) != 1 || o.Lines[0].Quantity != orders[id].units {
			return fmt.Errorf("order %d of switched bucket %d reads %+v, want %d of item %d", id, bucket, o.Lines, orders[id].units, orders[id].item)
		}
	}
	return nil
}

// checkAfterMoves checks every shard's tables against what the shoppers
// were told (see the test's comment).
func checkAfterMoves(ctx context.Context, t *testing.T, urls []string, fresh *backend.Backend, s *storm, moves []shard.Move, initial map[int64]int64) {
	t.Helper()
	if _, err := fresh.Sharded.Reconcile(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Sharded.LoadMap(ctx); err != nil {
		t.Fatal(err)
	}
	type found struct {
		shards []int
		units  int64
		lines  int
		status string
	}
	orders := map[int64]*found{}
	jobs := map[int64][]int{}
	left, ordered := map[int64]int64{}, map[int64]int64{}
	for k, url := range urls {
		conn := must(pgx.Connect(ctx, url))(t)
		defer conn.Close(ctx)
		rows := must(conn.Query(ctx, `SELECT o.id, o.status, count(l.*), coalesce(sum(l.quantity), 0)::BIGINT
			FROM orders o LEFT JOIN order_lines l ON l.order_id = o.id GROUP BY o.id, o.status`))(t)
		for rows.Next() {
			var id, units int64
			var lines int
			var status string
			if err := rows.Scan(&id, &status, &lines, &units); err != nil {
				t.Fatal(err)
			}
			f := orders[id]
			if f == nil {
				f = &found{}
				orders[id] = f
			}
			f.shards, f.units, f.lines, f.status = append(f.shards, k), units, lines, status
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		for _, q := range []struct {
			sql  string
			into map[int64]int64
		}{
			{`SELECT id, stock FROM items`, left},
			{`SELECT item_id, sum(quantity)::BIGINT FROM order_lines GROUP BY item_id`, ordered},
		} {
			rows := must(conn.Query(ctx, q.sql))(t)
			for rows.Next() {
				var item, n int64
				if err := rows.Scan(&item, &n); err != nil {
					t.Fatal(err)
				}
				q.into[item] += n
			}
		}
		ids := must(pgx.CollectRows(must(conn.Query(ctx, `SELECT (args->>'order_id')::BIGINT FROM river_job
			WHERE kind = 'order_placed' AND state NOT IN ('completed', 'cancelled', 'discarded')`))(t), pgx.RowTo[int64]))(t)
		for _, id := range ids {
			jobs[id] = append(jobs[id], k)
		}
		for _, mo := range moves {
			if k == mo.To {
				continue
			}
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE (id & 1023) = $1`, int(mo.Bucket)).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("moved bucket %d still has %d sessions on shard %d", mo.Bucket, n, k+1)
			}
		}
	}
	for id, a := range s.acked {
		f := orders[id]
		want, _ := fresh.Sharded.OwnerOfOrder(id)
		switch {
		case f == nil:
			t.Errorf("acknowledged order %d is on no shard", id)
		case len(f.shards) != 1:
			t.Errorf("order %d is on shards %v", id, f.shards)
		case f.shards[0] != want:
			t.Errorf("order %d is on shard %d, the map says %d", id, f.shards[0]+1, want+1)
		case f.lines != 1 || f.units != int64(a.units):
			t.Errorf("order %d has %d lines, %d units here, want 1 line of %d", id, f.lines, f.units, a.units)
		case f.status == "placed" && !slices.Equal(jobs[id], []int{want}):
			t.Errorf("placed order %d has its confirmation job on shards %v, want only %d", id, jobs[id], want+1)
		}
	}
	if len(orders) != len(s.acked) {
		t.Errorf("%d orders on the shards, %d acknowledged", len(orders), len(s.acked))
	}
	for item, n := range initial {
		if left[item]+ordered[item] != n {
			t.Errorf("item %d: %d left + %d ordered != %d at the start", item, left[item], ordered[item], n)
		}
	}
}

// whereOnShards says, for every shard, whether it has the session (with
// its cart, orders and idempotency keys there) and the bucket's fence
// there, and the epoch of the map stored there.
func whereOnShards(ctx context.Context, urls []string, sessionID int64, b shard.Bucket) string {
	var out []string
	for k, url := range urls {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			out = append(out, fmt.Sprintf("shard %d: %v", k+1, err))
			continue
		}
		var has bool
		var fence, owner, cart, orders, keys string
		err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1),
			coalesce((SELECT state || ' ' || coalesce(moved_to::TEXT, '') || ' since ' || since::TEXT FROM bucket_fences WHERE bucket = $2), 'none'),
			coalesce((SELECT epoch::TEXT FROM shard_map), ''),
			coalesce((SELECT string_agg(item_id || 'x' || quantity, ',') FROM cart_items WHERE session_id = $1), ''),
			coalesce((SELECT string_agg(id || ' ' || status, ',') FROM orders WHERE session_id = $1), ''),
			coalesce((SELECT string_agg(key || '->' || order_id, ',') FROM idempotency_keys WHERE session_id = $1), '')`,
			sessionID, int(b)).Scan(&has, &fence, &owner, &cart, &orders, &keys)
		conn.Close(ctx)
		out = append(out, fmt.Sprintf("shard %d: session there %v (cart [%s], orders [%s], keys [%s]), fence %s, map epoch %q (%v)",
			k+1, has, cart, orders, keys, fence, owner, err))
	}
	return strings.Join(out, "; ")
}
