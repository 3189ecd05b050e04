// Package reshard moves buckets between the shards of a running sharded
// shop (docs/sharding.md, "Resharding while the service runs"): it adds a
// shard to the stored bucket map, then moves each bucket by copying it to
// its new shard while the old one serves, freezing it on the old shard
// (a fence in that database, so no replica, however stale its map, can
// write it there again), copying what changed, switching its owner in the
// map, and at last deleting it from the old shard. Every step can be run
// again: a move cut short is finished by running it again, from what the
// fences and the map say. The databases' side of each step is the
// Databases interface (postgres.ShardSet).
package reshard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/perfscale/perfscale/shop/shard"
)

// Databases is what a move needs of the shards, numbered from 0, shard 0
// keeping the map.
type Databases interface {
	Count() int
	// Fence is bucket b's fence on shard k and, when gone, the shard it
	// was frozen to move to.
	Fence(ctx context.Context, k int, b shard.Bucket) (shard.Fence, int, error)
	FenceIncoming(ctx context.Context, k int, b shard.Bucket) error
	// Freeze fences b on shard k for good, once the writes in flight are
	// done, as moving to shard to.
	Freeze(ctx context.Context, k int, b shard.Bucket, to int) error
	// Copy copies b from shard from to shard to (fenced incoming there);
	// the final copy also takes its jobs and lifts the fence on to. It
	// reports the order rows that changed and every row written.
	Copy(ctx context.Context, from, to int, b shard.Bucket, final bool) (changed, rows int64, err error)
	// Forget deletes b's rows on shard k, where it is fenced as gone.
	Forget(ctx context.Context, k int, b shard.Bucket) (int64, error)
	ShardMap(ctx context.Context) (shard.StoredMap, bool, error)
	SetShardMap(ctx context.Context, m shard.StoredMap) (bool, error)
	// MapReaders are the processes that reported the epoch they route by
	// within expiry (the others' reports are deleted: they died).
	MapReaders(ctx context.Context, expiry time.Duration) ([]shard.MapReader, error)
}

// Step is a point in a bucket's move, after which Mover.After is called.
type Step string

const (
	Copied      Step = "copied"       // copied while the old shard served it
	Frozen      Step = "frozen"       // fenced on the old shard
	FinalCopied Step = "final-copied" // complete on the new shard, its fence lifted
	Switched    Step = "switched"     // the map names the new owner
)

// Mover moves buckets over DB.
type Mover struct {
	DB  Databases
	Log *slog.Logger
	// After, when set, is called after each step of a bucket's move; an
	// error stops the move there, as a crash would (tests).
	After func(b shard.Bucket, s Step) error
	// CatchUpPasses bounds the copies made while the old shard serves the
	// bucket; they stop early once a pass finds no order changed.
	CatchUpPasses int
	// ReadersWait bounds the wait for every process to route by a map
	// (WaitForReaders); 0 is DefaultReadersWait.
	ReadersWait time.Duration
	// Waiting, when set, is called with the processes still routing by an
	// older map each time WaitForReaders finds some (tests).
	Waiting func(lagging []shard.MapReader)
}

// Move is one bucket's move as done.
type Move struct {
	shard.Move
	// Frozen is how long the bucket's writes were refused by its old
	// shard before the map named the new one: from the freeze to the
	// switch (a replica sees the switch up to a map reload later).
	Frozen time.Duration
	Rows   int64  // rows written on the new shard, every pass
	Resume string // what an earlier, cut-short move had done ("" for none)
}

func (mv *Mover) log() *slog.Logger {
	if mv.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return mv.Log
}

// current is the map in use: the stored one, or the balanced map of the
// shards before the newest when none is stored (a shard being added owns
// nothing).
func (mv *Mover) current(ctx context.Context) (*shard.Map, shard.StoredMap, error) {
	stored, found, err := mv.DB.ShardMap(ctx)
	if err != nil {
		return nil, stored, err
	}
	if !found {
		m, err := shard.Balanced(max(1, mv.DB.Count()-1))
		return m, shard.StoredMap{}, err
	}
	m, err := shard.ParseMap(stored.Text)
	if err != nil {
		return nil, stored, fmt.Errorf("the map on shard 1 (epoch %d): %w", stored.Epoch, err)
	}
	return m, stored, nil
}

// AddShard stores the map grown to every shard of DB, the new ones owning
// no bucket, unless it has them already. Replicas started with every
// shard's URL route by it; until they are, they route by their own map
// and their writes to moved buckets are refused by the fences.
func (mv *Mover) AddShard(ctx context.Context) (*shard.Map, error) {
	m, stored, err := mv.current(ctx)
	if err != nil {
		return nil, err
	}
	n := mv.DB.Count()
	if m.Shards() > n {
		return nil, fmt.Errorf("the map on shard 1 has %d shards, %d were given: give every shard's URL, in order", m.Shards(), n)
	}
	if m.Shards() == n {
		return m, nil
	}
	grown, err := m.WithShards(n)
	if err != nil {
		return nil, err
	}
	if err := mv.store(ctx, stored, grown); err != nil {
		return nil, err
	}
	return grown, nil
}

// store writes m as the map after stored (compare-and-set on the epoch).
func (mv *Mover) store(ctx context.Context, stored shard.StoredMap, m *shard.Map) error {
	next := shard.StoredMap{Epoch: stored.Epoch + 1, Text: m.String(), Moving: stored.Moving}
	ok, err := mv.DB.SetShardMap(ctx, next)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the map on shard 1 moved past epoch %d while this move ran: is another reshard running?", stored.Epoch)
	}
	return nil
}

// Plan is the buckets from first to last that the balanced map of every
// shard of DB puts elsewhere than the map in use.
func (mv *Mover) Plan(ctx context.Context, first, last shard.Bucket) ([]shard.Move, error) {
	m, _, err := mv.current(ctx)
	if err != nil {
		return nil, err
	}
	if m.Shards() != mv.DB.Count() {
		return nil, fmt.Errorf("the map on shard 1 has %d shards, %d were given: add the shard first", m.Shards(), mv.DB.Count())
	}
	target, err := shard.Balanced(m.Shards())
	if err != nil {
		return nil, err
	}
	var moves []shard.Move
	for _, mo := range shard.Moves(m, target) {
		if mo.Bucket >= first && mo.Bucket <= last {
			moves = append(moves, mo)
		}
	}
	return moves, nil
}

// MoveBucket moves bucket b to shard to, or finishes its move when one
// was cut short, up to the switch; Forget deletes the old copy after.
func (mv *Mover) MoveBucket(ctx context.Context, b shard.Bucket, to int) (Move, error) {
	m, _, err := mv.current(ctx)
	if err != nil {
		return Move{}, err
	}
	from := m.Owner(b)
	mo := Move{Move: shard.Move{Bucket: b, From: from, To: to}}
	if from == to {
		mo.Resume = "switched already"
		return mo, nil
	}
	fence, movedTo, err := mv.DB.Fence(ctx, from, b)
	if err != nil {
		return mo, err
	}
	var frozeAt time.Time
	switch {
	case fence == shard.FenceGone && movedTo != to:
		return mo, fmt.Errorf("bucket %d was frozen on shard %d to move to shard %d, not %d: finish that move first", b, from+1, movedTo+1, to+1)
	case fence == shard.FenceGone:
		frozeAt = time.Now() // its writes were refused since the cut; counted from here
		if err := mv.finishFrozen(ctx, &mo); err != nil {
			return mo, err
		}
	default:
		if frozeAt, err = mv.copyAndFreeze(ctx, &mo); err != nil {
			return mo, err
		}
	}
	if err := mv.switchOwner(ctx, b, to); err != nil {
		return mo, err
	}
	mo.Frozen = time.Since(frozeAt)
	mv.log().InfoContext(ctx, "bucket moved", "bucket", b, "from", from+1, "to", to+1,
		"rows", mo.Rows, "writes_refused_for", mo.Frozen.String(), "resumed", mo.Resume)
	return mo, mv.after(b, Switched)
}

// copyAndFreeze copies the bucket while its old shard serves it, freezes
// it there, and copies what changed in between.
func (mv *Mover) copyAndFreeze(ctx context.Context, mo *Move) (time.Time, error) {
	b, from, to := mo.Bucket, mo.From, mo.To
	if err := mv.DB.FenceIncoming(ctx, to, b); err != nil {
		return time.Time{}, err
	}
	for pass := range max(1, mv.CatchUpPasses) {
		changed, rows, err := mv.DB.Copy(ctx, from, to, b, false)
		mo.Rows += rows
		if err != nil {
			return time.Time{}, err
		}
		if pass > 0 && changed == 0 {
			break
		}
	}
	if err := mv.after(b, Copied); err != nil {
		return time.Time{}, err
	}
	frozeAt := time.Now()
	if err := mv.DB.Freeze(ctx, from, b, to); err != nil {
		return frozeAt, err
	}
	if err := mv.after(b, Frozen); err != nil {
		return frozeAt, err
	}
	return frozeAt, mv.finalCopy(ctx, mo)
}

// finishFrozen takes over a move cut short after the freeze: the final
// copy, unless it was committed (the new shard's fence is lifted).
func (mv *Mover) finishFrozen(ctx context.Context, mo *Move) error {
	fence, _, err := mv.DB.Fence(ctx, mo.To, mo.Bucket)
	if err != nil {
		return err
	}
	if fence == shard.FenceNone {
		mo.Resume = "copied and frozen; switching"
		return nil
	}
	mo.Resume = "frozen; copying again"
	if fence != shard.FenceIncoming {
		if err := mv.DB.FenceIncoming(ctx, mo.To, mo.Bucket); err != nil {
			return err
		}
	}
	return mv.finalCopy(ctx, mo)
}

func (mv *Mover) finalCopy(ctx context.Context, mo *Move) error {
	_, rows, err := mv.DB.Copy(ctx, mo.From, mo.To, mo.Bucket, true)
	mo.Rows += rows
	if err != nil {
		return err
	}
	return mv.after(mo.Bucket, FinalCopied)
}

// switchOwner names shard to as b's owner in the stored map, reading the
// map again when another writer moved its epoch.
func (mv *Mover) switchOwner(ctx context.Context, b shard.Bucket, to int) error {
	for range 5 {
		m, stored, err := mv.current(ctx)
		if err != nil {
			return err
		}
		if m.Owner(b) == to {
			return nil
		}
		next, err := m.WithOwner(b, to)
		if err != nil {
			return err
		}
		ok, err := mv.DB.SetShardMap(ctx, shard.StoredMap{Epoch: stored.Epoch + 1, Text: next.String(), Moving: without(stored.Moving, b)})
		if err != nil || ok {
			return err
		}
	}
	return fmt.Errorf("switch bucket %d: the map on shard 1 kept changing: is another reshard running?", b)
}

func without(bs []shard.Bucket, b shard.Bucket) []shard.Bucket {
	var out []shard.Bucket
	for _, x := range bs {
		if x != b {
			out = append(out, x)
		}
	}
	return out
}

// Forget deletes the buckets' rows from every shard where they are
// fenced as gone, once the map names their new owner (a bucket not yet
// switched is left alone: its old shard still serves its reads), and
// once every process routes by that map (WaitForReaders): a process still
// routing by an older one reads the old copy, and must not find its
// session gone.
func (mv *Mover) Forget(ctx context.Context, buckets []shard.Bucket) (int64, error) {
	m, stored, err := mv.current(ctx)
	if err != nil {
		return 0, err
	}
	type copyOn struct {
		k int
		b shard.Bucket
	}
	var old []copyOn
	for _, b := range buckets {
		for k := range mv.DB.Count() {
			if k == m.Owner(b) {
				continue
			}
			fence, movedTo, err := mv.DB.Fence(ctx, k, b)
			if err != nil {
				return 0, err
			}
			if fence == shard.FenceGone && movedTo == m.Owner(b) {
				old = append(old, copyOn{k, b})
			}
		}
	}
	if len(old) == 0 {
		return 0, nil
	}
	if err := mv.WaitForReaders(ctx, stored.Epoch); err != nil {
		return 0, fmt.Errorf("the moved buckets are not yet deleted from their old shards: %w", err)
	}
	var n int64
	for _, c := range old {
		d, err := mv.DB.Forget(ctx, c.k, c.b)
		n += d
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// ReaderExpiry is how long a process's report of its map's epoch counts:
// ten of its map reloads (sharded.MapReloadEvery is 1 s). A process not
// heard of for longer died, or cannot reach shard 1; it is counted as
// routing by nothing (docs/sharding.md says what that leaves open).
const ReaderExpiry = 10 * time.Second

// DefaultReadersWait is how long WaitForReaders waits, by default, for
// every process to route by a map before it gives up.
const DefaultReadersWait = time.Minute

// readersPoll is how often WaitForReaders reads the reports again.
const readersPoll = 200 * time.Millisecond

// LaggingError is WaitForReaders giving up: these processes still route
// by a map older than Epoch.
type LaggingError struct {
	Epoch   int64
	Lagging []shard.MapReader
	Waited  time.Duration
}

func (e *LaggingError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "after %s, %d process(es) still route by a map older than epoch %d (a process leaves the list when it stops, or %s after it is killed):", e.Waited.Round(time.Second), len(e.Lagging), e.Epoch, ReaderExpiry)
	for _, r := range e.Lagging {
		fmt.Fprintf(&b, " %s (epoch %d, seen %s ago)", r.Process, r.Epoch, r.Age.Round(time.Millisecond))
	}
	b.WriteString(": restart them with every shard's --db, or let them reach shard 1")
	return b.String()
}

// WaitForReaders returns once every process that reported its map's
// epoch within ReaderExpiry routes by epoch or a later map, and a
// *LaggingError after ReadersWait when some still do not.
func (mv *Mover) WaitForReaders(ctx context.Context, epoch int64) error {
	limit := mv.ReadersWait
	if limit <= 0 {
		limit = DefaultReadersWait
	}
	start := time.Now()
	var logged time.Time
	for {
		readers, err := mv.DB.MapReaders(ctx, ReaderExpiry)
		if err != nil {
			return err
		}
		var lagging []shard.MapReader
		for _, r := range readers {
			if r.Epoch < epoch {
				lagging = append(lagging, r)
			}
		}
		if len(lagging) == 0 {
			return nil
		}
		if mv.Waiting != nil {
			mv.Waiting(lagging)
		}
		waited := time.Since(start)
		if waited >= limit {
			return &LaggingError{Epoch: epoch, Lagging: lagging, Waited: waited}
		}
		if time.Since(logged) >= 5*time.Second {
			logged = time.Now()
			mv.log().InfoContext(ctx, "waiting for every process to route by the new map", "epoch", epoch,
				"lagging", len(lagging), "first", lagging[0].Process, "its_epoch", lagging[0].Epoch)
		}
		t := time.NewTimer(readersPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (mv *Mover) after(b shard.Bucket, s Step) error {
	if mv.After == nil {
		return nil
	}
	if err := mv.After(b, s); err != nil {
		return fmt.Errorf("bucket %d stopped after %s: %w", b, s, err)
	}
	return nil
}

// ErrStopped is what a test's After returns to cut a move short.
var ErrStopped = errors.New("stopped")

// Report is what Run did.
type Report struct {
	Map       *shard.Map // the map with the added shards, before the moves
	Moves     []Move
	Forgotten int64 // rows deleted from the old shards
}

// Run adds the shards DB has past the stored map's, moves the buckets
// from first to last that the balanced map of all of them puts on another
// shard, one at a time (each reported to done as it is switched), and
// deletes the moved buckets from their old shards. It moves nothing until
// every process that routes by the map (WaitForReaders) has the map with
// every shard, and deletes nothing until every one routes by the map of
// the last switch. A run cut short is finished by running it again with
// the same shards and range.
func (mv *Mover) Run(ctx context.Context, first, last shard.Bucket, done func(Move)) (Report, error) {
	var r Report
	m, err := mv.AddShard(ctx)
	if err != nil {
		return r, err
	}
	r.Map = m
	plan, err := mv.Plan(ctx, first, last)
	if err != nil {
		return r, err
	}
	if len(plan) > 0 {
		// A process that has not the map with the added shard (started
		// without its --db) could not follow a switch: its writes to every
		// moved bucket would be refused until it is restarted.
		_, stored, err := mv.current(ctx)
		if err == nil {
			err = mv.WaitForReaders(ctx, stored.Epoch)
		}
		if err != nil {
			return r, fmt.Errorf("no bucket moved: %w", err)
		}
	}
	for _, p := range plan {
		mo, err := mv.MoveBucket(ctx, p.Bucket, p.To)
		if err != nil {
			return r, err
		}
		r.Moves = append(r.Moves, mo)
		if done != nil {
			done(mo)
		}
	}
	// Every bucket of the range: a run cut short may have switched some
	// without forgetting them.
	var buckets []shard.Bucket
	for b := first; b <= last; b++ {
		buckets = append(buckets, b)
	}
	r.Forgotten, err = mv.Forget(ctx, buckets)
	return r, err
}
