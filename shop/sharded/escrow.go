package sharded

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/shard"
)

// maxBorrowRounds bounds how often one checkout borrows quota and tries
// again: each round moves what the other shards had when asked, so a
// third round only helps against checkouts racing for the same units.
const maxBorrowRounds = 3

// EscrowWait is the service's bound on each escrow call a checkout makes
// to another shard (borrowing quota it is short of, refilling a quota it
// took to zero, the stock epoch and the sold-out flag on the catalog's
// home): the guards' stall limit (resilience.DefaultStallAfter). A shard
// that does not answer one within it is not asked again by that checkout,
// so each shard that is slow or does not answer costs a checkout on
// another shard at most this, instead of the checkout's whole deadline,
// and one whose guard already refuses costs it nothing. A transfer cut
// short is in flight, and finished by Reconcile (docs/sharding.md).
// shop/app sets it (SetEscrowWait); a store without it waits as long as
// the caller's context.
const EscrowWait = 2 * time.Second

// SetEscrowWait bounds each escrow call a checkout makes to another shard
// (EscrowWait); zero: the caller's context only.
func (s *Store) SetEscrowWait(d time.Duration) { s.escrowWait = d }

// escrowCall is the context of one escrow call on a checkout's path.
func (s *Store) escrowCall(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.escrowWait <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.escrowWait)
}

// InCheckout runs the checkout on the session's shard, selling from that
// shard's quota. When the quota is short it borrows from the other shards
// and runs the checkout again (each attempt is the whole transaction, so
// nothing of a refused one stays); when an item's quota ran out, it takes
// quota ahead from another shard, or, when no shard has any, marks the
// item sold out on the catalog's home. A checkout still short after
// borrowing is out of stock only if every other shard answered; if one
// did not (within the escrow wait, or its guard refused), it fails with
// shop.EUNAVAILABLE naming that shard, nothing done: the units it holds
// may be enough.
func (s *Store) InCheckout(ctx context.Context, sessionID int64, key string, fn func(tx shop.CheckoutTx) error) error {
	k, err := s.bySession(sessionID, true)
	if err != nil {
		return err
	}
	var emptied []int64
	unanswered := map[int]bool{}
	for round := 0; ; round++ {
		emptied = emptied[:0]
		err = s.shards[k].Store.InCheckout(ctx, sessionID, key, func(tx shop.CheckoutTx) error {
			return fn(&quotaTx{CheckoutTx: tx, emptied: &emptied})
		})
		var short *shop.OutOfStockError
		if round == maxBorrowRounds || !errors.As(err, &short) {
			break
		}
		if !s.borrowFor(ctx, k, short.Items, unanswered) {
			break
		}
	}
	var short *shop.OutOfStockError
	if errors.As(err, &short) && len(unanswered) > 0 {
		return stockUnreachable(short, unanswered)
	}
	if err == nil {
		for _, item := range emptied {
			s.refill(ctx, k, item, unanswered)
		}
	}
	return err
}

// stockUnreachable is the answer to a checkout short of stock that other
// shards, which did not answer, may hold: a 503 to retry, not "sold out".
func stockUnreachable(short *shop.OutOfStockError, unanswered map[int]bool) error {
	var names []string
	for _, it := range short.Items {
		names = append(names, strconv.Quote(it.Name))
	}
	var shards []string
	for _, d := range slices.Sorted(maps.Keys(unanswered)) {
		shards = append(shards, "shard "+strconv.Itoa(d+1))
	}
	return shop.Errorf(shop.EUNAVAILABLE, "not enough stock of %s on this session's shard, and more could not be gathered from the others in time (%s did not answer); nothing was ordered: retry after the time in Retry-After",
		strings.Join(names, ", "), strings.Join(shards, ", "))
}

// quotaTx notes the items whose quota a checkout took to zero.
type quotaTx struct {
	shop.CheckoutTx
	emptied *[]int64
}

func (q *quotaTx) ReserveStock(ctx context.Context, itemID int64, n int) (int64, bool, error) {
	left, ok, err := q.CheckoutTx.ReserveStock(ctx, itemID, n)
	if ok && err == nil && left == 0 {
		*q.emptied = append(*q.emptied, itemID)
	}
	return left, ok, err
}

// stockEpoch reads item's stock epoch on the catalog's home within the
// escrow wait; a home that did not answer is added to unanswered.
func (s *Store) stockEpoch(ctx context.Context, item int64, unanswered map[int]bool) (int64, error) {
	if unanswered[0] {
		return 0, errors.New("shard 1 did not answer earlier in this checkout")
	}
	ctx, cancel := s.escrowCall(ctx)
	defer cancel()
	epoch, err := s.home().Escrow.StockEpoch(ctx, item)
	if err != nil {
		unanswered[0] = true
	}
	return epoch, err
}

// borrowFor moves quota of the short items to shard k from the others;
// moved says whether any unit moved (a new attempt may succeed). It adds
// the shards that did not answer to unanswered, and asks none of those
// again. An item that no shard had a unit of, every shard answering, is
// marked sold out.
func (s *Store) borrowFor(ctx context.Context, k int, short []shop.Shortage, unanswered map[int]bool) (moved bool) {
	for _, sh := range short {
		// The epoch is read before the shards are found empty: a refill
		// in between moves it, and the sold-out flag does not land.
		epoch, epochErr := s.stockEpoch(ctx, sh.ItemID, unanswered)
		got, everyone := s.borrow(ctx, k, sh.ItemID, int64(sh.Requested)-sh.Available, unanswered)
		moved = moved || got > 0
		if got == 0 && everyone && sh.Available == 0 && epochErr == nil {
			s.setSoldOut(ctx, sh.ItemID, epoch)
		}
	}
	return moved
}

// refill takes quota ahead for shard k, whose quota of item a checkout
// took to zero; when no shard has any, the item is sold out.
func (s *Store) refill(ctx context.Context, k int, item int64, unanswered map[int]bool) {
	epoch, err := s.stockEpoch(ctx, item, unanswered)
	if err != nil {
		s.log.WarnContext(ctx, "sold-out check skipped", "item", item, "error", err)
		return
	}
	got, everyone := s.borrow(ctx, k, item, 1, unanswered)
	if got == 0 && everyone {
		s.setSoldOut(ctx, item, epoch)
	}
}

func (s *Store) setSoldOut(ctx context.Context, item, epoch int64) {
	ctx, cancel := s.escrowCall(ctx)
	defer cancel()
	if _, err := s.home().Escrow.SetSoldOut(ctx, item, true, epoch); err != nil {
		s.log.WarnContext(ctx, "sold-out flag not set", "item", item, "error", err)
	}
}

// borrow asks the other shards in turn, from the one after k, for need
// units of item for shard k until it has them (what there is, if less),
// and credits shard k with each transfer; got is the units that arrived,
// everyone whether every other shard answered. A shard that does not
// answer a call within the escrow wait, or whose guard refuses, is added
// to unanswered and not asked again. A transfer debited but not credited
// (shard k failed between, or the call's deadline passed) is finished by
// Reconcile.
func (s *Store) borrow(ctx context.Context, k int, item, need int64, unanswered map[int]bool) (got int64, everyone bool) {
	for i := 1; i < len(s.shards) && got < need; i++ {
		d := (k + i) % len(s.shards)
		if unanswered[d] {
			continue
		}
		callCtx, cancel := s.escrowCall(ctx)
		t, err := s.shards[d].Escrow.DebitQuota(callCtx, transferID(), item, need-got, k, true)
		cancel()
		if err != nil {
			// The debit may have committed with its answer lost: then
			// the transfer is sent, and the reconciler delivers it.
			unanswered[d] = true
			s.log.WarnContext(ctx, "quota not borrowed", "item", item, "from_shard", d+1, "error", err)
			continue
		}
		if t.Units == 0 {
			continue
		}
		arrived, err := s.deliver(ctx, d, t, s.escrowWait)
		if err != nil {
			s.log.WarnContext(ctx, "transfer left to the reconciler", "transfer", t.ID, "error", err)
			failed := d
			if f, ok := errors.AsType[*shardFailed](err); ok {
				failed = f.k
			}
			unanswered[failed] = true
			break
		}
		if arrived {
			got += t.Units
		}
	}
	for d := range s.shards {
		if d != k && unanswered[d] {
			return got, false
		}
	}
	return got, true
}

// errTransferWaits: the receiver has not yet had the admin stock change
// the donor had when it was debited (shard.Waits); the transfer stays
// sent, for the reconciler to credit once the change reaches it.
var errTransferWaits = errors.New("the receiving shard has not had the admin's last stock change yet")

// shardFailed is a step of a transfer that shard k did not take (its
// error, or its guard's refusal).
type shardFailed struct {
	k   int
	err error
}

func (e *shardFailed) Error() string { return e.err.Error() }
func (e *shardFailed) Unwrap() error { return e.err }

// deliver credits a transfer debited on shard from and marks it received,
// each call within wait (0: the context's deadline only); arrived is
// false when an admin stock change superseded it (its units dropped,
// shard.Superseded). An error is a *shardFailed naming the shard whose
// step did not happen.
func (s *Store) deliver(ctx context.Context, from int, t shard.Transfer, wait time.Duration) (arrived bool, err error) {
	if t.To < 0 || t.To >= len(s.shards) {
		return false, fmt.Errorf("transfer %s is for shard %d, there are %d", t.ID, t.To+1, len(s.shards))
	}
	if h := s.hooks.beforeCredit; h != nil {
		h(t)
	}
	within := func() (context.Context, context.CancelFunc) {
		if wait <= 0 {
			return ctx, func() {}
		}
		return context.WithTimeout(ctx, wait)
	}
	callCtx, cancel := within()
	c, err := s.shards[t.To].Escrow.CreditQuota(callCtx, t)
	cancel()
	if err != nil {
		return false, &shardFailed{t.To, fmt.Errorf("credit shard %d: %w", t.To+1, err)}
	}
	if c == shard.Waits {
		return false, &shardFailed{t.To, fmt.Errorf("credit shard %d: %w", t.To+1, errTransferWaits)}
	}
	callCtx, cancel = within()
	defer cancel()
	if err := s.shards[from].Escrow.MarkTransferReceived(callCtx, t.ID); err != nil {
		return false, &shardFailed{from, fmt.Errorf("mark received on shard %d: %w", from+1, err)}
	}
	return c != shard.Superseded, nil
}

func transferID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// UpdateItem applies an admin change on every shard, the catalog's home
// first (an unknown item is refused there and changes nothing): a new
// stock N is split into quotas (shard.Share), each shard's set with the
// change's number (SetQuota; the home numbers it), so a quota transfer
// under way is credited only where it does not undo the change
// (shard.Credit, docs/sharding.md); a price or availability is copied.
// The item returned carries the whole stock. A shard that fails is named
// in the error; repeating the change applies it again whole.
func (s *Store) UpdateItem(ctx context.Context, id int64, u shop.ItemUpdate) (*shop.Item, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	var first *shop.Item
	var epoch, stock int64
	for k, sh := range s.shards {
		it, err := s.updateShard(ctx, k, sh, id, u, &epoch)
		if err != nil {
			if k == 0 {
				return nil, err
			}
			return nil, fmt.Errorf("update item %d: applied on shards 1 to %d, not on shard %d (repeat the change): %w", id, k, k+1, err)
		}
		if k == 0 {
			first = it
		}
		if u.Stock == nil {
			stock += it.Stock
		}
	}
	if u.Stock != nil {
		if err := s.home().Escrow.RestockedEpoch(ctx, id, *u.Stock == 0); err != nil {
			return nil, err
		}
		stock = *u.Stock
	}
	// Every shard's row came back with its quota: their sum is the stock
	// (less units in a transfer under way).
	first.Stock = stock
	s.setFigure(id, stock)
	return first, nil
}

// updateShard applies u on shard k: its quota by SetQuota with the
// change's number (epoch, set by the home's, k 0), the rest by the
// shard's store. It returns the shard's item.
func (s *Store) updateShard(ctx context.Context, k int, sh Shard, id int64, u shop.ItemUpdate, epoch *int64) (*shop.Item, error) {
	if u.Stock != nil {
		e, _, err := sh.Escrow.SetQuota(ctx, id, shard.Share(*u.Stock, len(s.shards), k), *epoch)
		if err != nil {
			return nil, err
		}
		*epoch = e
		if h := s.hooks.afterQuotaSet; h != nil {
			h(k)
		}
	}
	rest := u
	rest.Stock = nil
	if rest.PriceCents == nil && rest.Available == nil {
		if k > 0 {
			return nil, nil
		}
		return sh.Store.Item(ctx, id)
	}
	return sh.Store.UpdateItem(ctx, id, rest)
}

// Seed seeds each shard's empty catalog with its quotas of items
// (shard.Share of each stock) through seed, and marks on the catalog's
// home the items seeded with no stock sold out.
func (s *Store) Seed(ctx context.Context, items []shop.Item, seed func(ctx context.Context, k int, items []shop.Item) (int, error)) (int, error) {
	n := 0
	for k := range s.shards {
		share := make([]shop.Item, len(items))
		for i, it := range items {
			it.Stock = shard.Share(it.Stock, len(s.shards), k)
			share[i] = it
		}
		got, err := seed(ctx, k, share)
		if err != nil {
			return n, fmt.Errorf("shard %d: %w", k+1, err)
		}
		if k == 0 {
			n = got
		}
	}
	if err := s.home().Escrow.MarkEmptySoldOut(ctx); err != nil {
		return n, err
	}
	return n, s.RefreshStock(ctx)
}

// PlaceAtOnce places a plain checkout in one round trip to the session's
// shard (its store's PlaceAtOnce): the shard's quota is its stock there,
// so the quota's decrement, the order, its lines, its first event, the
// key and the confirmation job (the shard's own queue's row,
// SetConfirmationJobs) commit together. A checkout the shard's quota
// cannot cover is not plain and takes the general path (InCheckout),
// which borrows; a quota the order took to zero is refilled after it, as
// there.
func (s *Store) PlaceAtOnce(ctx context.Context, c shop.AtOnce) (*shop.Order, error) {
	k, err := s.bySession(c.SessionID, true)
	if err != nil {
		return nil, err
	}
	if c.Job != nil {
		rows := s.jobRows.Load()
		if rows == nil {
			return nil, nil // no shard's queue to write the job for: the general path inserts it
		}
		row := (*rows)(k)
		c.Job = &row
	}
	var emptied []int64
	c.Emptied = func(item int64) { emptied = append(emptied, item) }
	o, err := s.shards[k].Store.PlaceAtOnce(ctx, c)
	if err != nil || o == nil {
		return nil, err
	}
	unanswered := map[int]bool{}
	for _, item := range emptied {
		s.refill(ctx, k, item, unanswered)
	}
	return o, nil
}

// SetConfirmationJobs gives PlaceAtOnce the confirmation job's row of
// shard k's queue (shop.AtOnceQueue of that shard's River client, whose
// insert notification is due by that client's own rule). Until it is
// set, a checkout with a job takes the general path.
func (s *Store) SetConfirmationJobs(row func(k int) shop.JobRow) { s.jobRows.Store(&row) }
