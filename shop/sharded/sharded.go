// Package sharded is the store of a shop whose sessions and orders are
// spread over several PostgreSQL servers (shards, docs/sharding.md): it
// routes every call to the one shard that holds it, found from the
// session token's bucket or the bucket an id carries (shop/shard), never
// by a lookup; keeps each item's stock exact across the shards by escrow
// (each shard sells from its own quota and borrows from the others when it
// runs short); and fans out only the worker's and the admin's reads. A
// customer's request touches one shard, and the catalog's home (shard 1)
// for the menu and items (another shard's copy while the home fails),
// except when a shard's quota of an item runs out.
package sharded

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/shard"
)

// Escrow is what a shard's database does for the stock kept across
// shards (postgres.DB implements it; migration 00012 has the tables).
type Escrow interface {
	// DebitQuota takes at least need units of item's quota (all there is
	// if partial and less) for shard to, recording the transfer id as
	// sent in the same transaction; it reports the transfer (Units 0:
	// none taken).
	DebitQuota(ctx context.Context, id string, item, need int64, to int, partial bool) (shard.Transfer, error)
	// MoveQuota takes units of item's quota (what there is if less) for
	// shard to, recording the transfer id as sent: the rebalancer's debit.
	MoveQuota(ctx context.Context, id string, item, units int64, to int) (shard.Transfer, error)
	// CreditQuota adds a transfer's units to the quota once, at the
	// transfer's epoch only (shard.Credit).
	CreditQuota(ctx context.Context, t shard.Transfer) (shard.Credit, error)
	// SetQuota sets item's quota by the admin stock change numbered
	// epoch unless a later one set it (epoch 0: a new change, numbered
	// here); it reports the change's number.
	SetQuota(ctx context.Context, item, units, epoch int64) (applied int64, set bool, err error)
	MarkTransferReceived(ctx context.Context, id string) error
	// SentTransfers are the debited transfers not yet marked received.
	SentTransfers(ctx context.Context, olderThan time.Duration, limit int) ([]shard.Transfer, error)
	// Quotas is the shard's quota of each item and the units it sent
	// that are not yet marked received.
	Quotas(ctx context.Context) (quota, inFlight map[int64]int64, err error)
	// SalesSince is the units ordered of each item in orders numbered
	// after the cursor after, and the cursor to read from next; a
	// negative after reads nothing and gives the cursor of now.
	SalesSince(ctx context.Context, after int64) (map[int64]int64, int64, error)
	// TryLease takes a lease by name until release, or says another
	// process holds it (the catalog's home leases the rebalancer).
	TryLease(ctx context.Context, name string) (release func(), ok bool, err error)
	// The catalog's home only: the sold-out flags and their epoch.
	StockEpoch(ctx context.Context, item int64) (int64, error)
	SetSoldOut(ctx context.Context, item int64, soldOut bool, epoch int64) (bool, error)
	RestockedEpoch(ctx context.Context, item int64, soldOut bool) error
	MarkEmptySoldOut(ctx context.Context) error
	SoldOutItems(ctx context.Context) ([]int64, error)
	// The catalog's home only: the bucket map once one is stored, and
	// the epoch each process routes by.
	ShardMap(ctx context.Context) (m shard.StoredMap, found bool, err error)
	ReportMapEpoch(ctx context.Context, process string, epoch int64) error
	LeaveMapReaders(ctx context.Context, process string) error
}

// Shard is one shard: its store, its escrow primitives and its answers to
// the admin's reads, on one database.
type Shard struct {
	Store  shop.Store
	Escrow Escrow
	Reads  shard.Reader
}

// Store routes shop.Store's calls over the shards by the map.
type Store struct {
	shards []Shard
	route  atomic.Pointer[routing]
	log    *slog.Logger
	// figures is the stock the item pages show (RefreshStock); figuresMu
	// orders its writers.
	figures   atomic.Pointer[stockFigures]
	figuresMu sync.Mutex
	// jobRows is each shard's confirmation job row (SetConfirmationJobs).
	jobRows atomic.Pointer[func(k int) shop.JobRow]
	hooks   hooks
	// process names this process among the map's readers (ReportMapEpoch);
	// left is set once it left them, so a last reload does not come back.
	process string
	left    atomic.Bool
	// catalogFromCopy: the last catalog read the home answered or failed
	// was answered from another shard's copy (CatalogFromCopy).
	catalogFromCopy atomic.Bool
	// escrowWait bounds each escrow call on a checkout's path
	// (SetEscrowWait; 0: none but the caller's).
	escrowWait time.Duration
}

// hooks are the tests' places to stop a quota transfer or an admin stock
// change in the middle (export_test.go); nil in the service.
type hooks struct {
	beforeCredit  func(t shard.Transfer) // a transfer debited, its credit next
	afterQuotaSet func(k int)            // an admin change set shard k's quota
}

var _ shop.Store = (*Store)(nil)

// New returns the store over shards, shard k the k-th (from 0), owning
// the buckets shard.Balanced(len(shards)) gives it until LoadMap reads
// the map stored on the catalog's home.
func New(shards []Shard, log *slog.Logger) (*Store, error) {
	m, err := shard.Balanced(len(shards))
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{shards: shards, log: log, process: processName()}
	s.route.Store(&routing{m: m})
	return s, nil
}

// Shards is how many shards the store routes over.
func (s *Store) Shards() int { return len(s.shards) }

// home is the catalog's home: shard 1.
func (s *Store) home() Shard { return s.shards[0] }

// bySession is the shard of a session id's bucket; a write to a bucket
// being moved is refused (route.owner).
func (s *Store) bySession(sessionID int64, write bool) (int, error) {
	b, err := shard.BucketOfID("session", sessionID)
	if err != nil {
		return 0, err
	}
	return s.route.Load().owner(b, write)
}

func (s *Store) byOrder(orderID int64, write bool) (int, error) {
	b, err := shard.BucketOfID("order", orderID)
	if err != nil {
		return 0, err
	}
	return s.route.Load().owner(b, write)
}

func (s *Store) byToken(tokenHash string, write bool) (int, error) {
	b, err := shard.BucketOfTokenHash(tokenHash)
	if err != nil {
		return 0, err
	}
	return s.route.Load().owner(b, write)
}

// --- catalog: the catalog's home ---

func (s *Store) Menu(ctx context.Context) (*shop.Menu, error) { return s.home().Store.Menu(ctx) }

func (s *Store) CatalogVersion(ctx context.Context) (int64, error) {
	return s.home().Store.CatalogVersion(ctx)
}

// Item is the item as its reading shard's copy has it (itemShard), with
// the stock figure of the last RefreshStock (every shard's quotas summed
// in the background), not that shard's own quota. While that shard fails
// or does not answer (its guard refuses), it is read from another
// shard's copy (fromCopy).
func (s *Store) Item(ctx context.Context, id int64) (*shop.Item, error) {
	it, err := fromCopy(s, ctx, s.itemShard(id), func(ctx context.Context, st shop.Store) (*shop.Item, error) { return st.Item(ctx, id) })
	if err == nil {
		s.withFigure(it)
	}
	return it, err
}

// Items reads each item from its reading shard's copy, as Item does (so
// an item reads the same, updated_at included, whichever way it is
// read), in one call a shard whose copy holds some of ids, and returns
// them in id order.
func (s *Store) Items(ctx context.Context, ids []int64) ([]shop.Item, error) {
	byShard := make([][]int64, len(s.shards))
	for _, id := range ids {
		k := s.itemShard(id)
		byShard[k] = append(byShard[k], id)
	}
	var items []shop.Item
	for k, some := range byShard {
		if len(some) == 0 {
			continue
		}
		got, err := fromCopy(s, ctx, k, func(ctx context.Context, st shop.Store) ([]shop.Item, error) { return st.Items(ctx, some) })
		if err != nil {
			return nil, err
		}
		items = append(items, got...)
	}
	slices.SortFunc(items, func(a, b shop.Item) int { return cmp.Compare(a.ID, b.ID) })
	for i := range items {
		s.withFigure(&items[i])
	}
	return items, nil
}

// itemShard is the shard whose copy answers item id's reads: the items
// spread over every shard's copy by id. The item pages are about a
// sixth of the journey's requests and a replica's cache misses most of
// them (200 items, each kept a second); read all from shard 1, they made
// it the busiest shard, its CPU a request 1.26 times shard 2's at two
// shards (docs/scaleout.md, "What makes a shard's work larger at two").
func (s *Store) itemShard(id int64) int {
	n := int64(len(s.shards))
	r := id % n
	if r < 0 { // ids are positive; a negative one still names a shard
		r += n
	}
	return int(r) // #nosec G115 -- 0 <= r < len(s.shards)
}

func (s *Store) ListItems(ctx context.Context, f shop.ItemFilter) (*shop.ItemPage, error) {
	p, err := fromCopy(s, ctx, 0, func(ctx context.Context, st shop.Store) (*shop.ItemPage, error) { return st.ListItems(ctx, f) })
	if err == nil {
		for i := range p.Items {
			s.withFigure(&p.Items[i])
		}
	}
	return p, err
}

// fromCopy reads shard first's copy of the catalog (0: the catalog's
// home), and, when it fails (not a domain answer such as "no such item",
// not a caller that left), each other shard's copy in turn, the home
// first, until one answers; the error is the first's when none does.
// Every shard holds every item's name, price and availability (an admin
// change is applied to each: the home first, then the others in order),
// and a checkout prices its cart from its own shard's copy, so a copy is
// what a checkout on that shard would charge; the stock figure is the
// summed one either way. The menu is not read this way: the sold-out
// flags are on the home only, and the menu has its last good copy.
//
// The first shard gets half of the caller's time, so that one that does
// not answer (its guard gives up calls only after its stall limit, the
// item routes' whole deadline) leaves another time to answer. Only a
// read that asked the home sets CatalogFromCopy: true when the home
// failed and a copy answered, false when the home answered.
func fromCopy[T any](s *Store, ctx context.Context, first int, read func(context.Context, shop.Store) (T, error)) (T, error) {
	firstCtx, cancel := ctx, context.CancelFunc(func() {})
	if dl, ok := ctx.Deadline(); ok && len(s.shards) > 1 {
		firstCtx, cancel = context.WithTimeout(ctx, time.Until(dl)/2)
	}
	v, err := read(firstCtx, s.shards[first].Store)
	cancel()
	if err == nil && first == 0 {
		s.catalogFromCopy.Store(false)
	}
	if err == nil || !homeFailed(ctx, err) {
		return v, err
	}
	for k := range s.shards {
		if k == first {
			continue
		}
		c, cerr := read(ctx, s.shards[k].Store)
		if cerr == nil {
			if first == 0 {
				s.catalogFromCopy.Store(true)
			}
			return c, nil
		}
		if !homeFailed(ctx, cerr) {
			break
		}
	}
	return v, err
}

// CatalogFromCopy says whether the catalog's home failed the last
// catalog read that asked it, which another shard's copy answered: item
// pages are then not current (their stock figure is the last summed, the
// home's changes may not all have reached the copy).
func (s *Store) CatalogFromCopy() bool { return s.catalogFromCopy.Load() }

// homeFailed says whether err is a shard failing (or its guard refusing)
// while the caller still waits: another shard's copy may answer.
func homeFailed(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return false
	}
	code := shop.ErrorCode(err)
	return code == shop.EUNAVAILABLE || code == shop.EINTERNAL
}

// withFigure puts the item's last summed stock in it (nothing before the
// first RefreshStock).
func (s *Store) withFigure(it *shop.Item) {
	if f := s.figures.Load(); f != nil {
		it.Stock = f.stock[it.ID]
	}
}

// stockFigures is every item's stock as RefreshStock last summed it.
type stockFigures struct{ stock map[int64]int64 }

func (s *Store) setFigure(item, stock int64) {
	s.figuresMu.Lock()
	defer s.figuresMu.Unlock()
	old := s.figures.Load()
	next := &stockFigures{stock: map[int64]int64{}}
	if old != nil {
		maps.Copy(next.stock, old.stock)
	}
	next.stock[item] = stock
	s.figures.Store(next)
}

// RefreshStock sums every shard's quotas (and units in transfer) into
// the figures Item and ListItems show. A shard that does not answer
// leaves the figures as they were.
func (s *Store) RefreshStock(ctx context.Context) error {
	st, err := s.Stock(ctx, 2*time.Second)
	if err != nil {
		return err
	}
	next := &stockFigures{stock: st.Quota}
	for item, n := range st.InFlight {
		next.stock[item] += n
	}
	s.figuresMu.Lock()
	s.figures.Store(next)
	s.figuresMu.Unlock()
	return nil
}

// RunStockFigures refreshes the stock figures every interval until ctx
// ends, logging a refresh that failed.
func (s *Store) RunStockFigures(ctx context.Context, every time.Duration) {
	s.runEvery(ctx, every, "stock figures not refreshed", s.RefreshStock)
}

// runEvery calls f every interval until ctx ends, logging failed with
// the error of a call that failed.
func (s *Store) runEvery(ctx context.Context, every time.Duration, failed string, f func(context.Context) error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := f(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, failed, "error", err)
		}
	}
}

// --- sessions, carts, orders: the session's shard ---

func (s *Store) CreateSession(ctx context.Context, tokenHash string) (*shop.Session, error) {
	k, err := s.byToken(tokenHash, true)
	if err != nil {
		return nil, err
	}
	return s.shards[k].Store.CreateSession(ctx, tokenHash)
}

func (s *Store) SessionByTokenHash(ctx context.Context, tokenHash string) (*shop.Session, error) {
	k, err := s.byToken(tokenHash, false)
	if err != nil {
		return nil, err
	}
	return s.shards[k].Store.SessionByTokenHash(ctx, tokenHash)
}

func (s *Store) Cart(ctx context.Context, sessionID int64) (*shop.Cart, error) {
	k, err := s.bySession(sessionID, false)
	if err != nil {
		return nil, err
	}
	return s.shards[k].Store.Cart(ctx, sessionID)
}

func (s *Store) SetCartItem(ctx context.Context, sessionID, itemID int64, quantity int) (*shop.Cart, error) {
	k, err := s.bySession(sessionID, true)
	if err != nil {
		return nil, err
	}
	return s.shards[k].Store.SetCartItem(ctx, sessionID, itemID, quantity)
}

func (s *Store) ClearCart(ctx context.Context, sessionID int64) error {
	k, err := s.bySession(sessionID, true)
	if err != nil {
		return err
	}
	return s.shards[k].Store.ClearCart(ctx, sessionID)
}

func (s *Store) Order(ctx context.Context, sessionID, orderID int64) (*shop.Order, error) {
	k, err := s.bySession(sessionID, false)
	if err != nil {
		return nil, err
	}
	return s.shards[k].Store.Order(ctx, sessionID, orderID)
}

func (s *Store) ListOrders(ctx context.Context, sessionID int64, f shop.OrderFilter) (*shop.OrderPage, error) {
	k, err := s.bySession(sessionID, false)
	if err != nil {
		return nil, err
	}
	return s.shards[k].Store.ListOrders(ctx, sessionID, f)
}

func (s *Store) OrderEvents(ctx context.Context, sessionID, orderID, after int64) ([]shop.OrderEvent, error) {
	k, err := s.bySession(sessionID, false)
	if err != nil {
		return nil, err
	}
	return s.shards[k].Store.OrderEvents(ctx, sessionID, orderID, after)
}

// --- the worker's calls: the order's shard ---

func (s *Store) OrderByID(ctx context.Context, orderID int64) (*shop.Order, error) {
	k, err := s.byOrder(orderID, false)
	if err != nil {
		return nil, err
	}
	return s.shards[k].Store.OrderByID(ctx, orderID)
}

func (s *Store) ConfirmOrder(ctx context.Context, orderID int64, mail func(*shop.Order) shop.Mail, inTx func(ctx context.Context, tx shop.Tx) error) (bool, error) {
	k, err := s.byOrder(orderID, true)
	if err != nil {
		return false, err
	}
	return s.shards[k].Store.ConfirmOrder(ctx, orderID, mail, inTx)
}

func (s *Store) ConfirmOrderAtOnce(ctx context.Context, c shop.ConfirmAtOnce) (shop.ConfirmedAtOnce, error) {
	k, err := s.byOrder(c.OrderID, true)
	if err != nil {
		return shop.ConfirmedAtOnce{}, err
	}
	return s.shards[k].Store.ConfirmOrderAtOnce(ctx, c)
}

func (s *Store) MarkOrderReadyAtOnce(ctx context.Context, orderID int64, done shop.JobDone) (bool, error) {
	k, err := s.byOrder(orderID, true)
	if err != nil {
		return false, err
	}
	return s.shards[k].Store.MarkOrderReadyAtOnce(ctx, orderID, done)
}

func (s *Store) MarkOrderReady(ctx context.Context, orderID int64, inTx func(ctx context.Context, tx shop.Tx) error) (bool, error) {
	k, err := s.byOrder(orderID, true)
	if err != nil {
		return false, err
	}
	return s.shards[k].Store.MarkOrderReady(ctx, orderID, inTx)
}

func (s *Store) AdvanceOrder(ctx context.Context, orderID int64, from, to shop.Status) (bool, error) {
	k, err := s.byOrder(orderID, true)
	if err != nil {
		return false, err
	}
	return s.shards[k].Store.AdvanceOrder(ctx, orderID, from, to)
}

// PruneIdempotencyKeys prunes every shard (each shard's worker prunes
// its own; this is the whole store's).
func (s *Store) PruneIdempotencyKeys(ctx context.Context) (int64, error) {
	return s.sum(ctx, func(ctx context.Context, st shop.Store) (int64, error) { return st.PruneIdempotencyKeys(ctx) })
}

// PruneSessions prunes every shard.
func (s *Store) PruneSessions(ctx context.Context) (int64, error) {
	return s.sum(ctx, func(ctx context.Context, st shop.Store) (int64, error) { return st.PruneSessions(ctx) })
}

func (s *Store) sum(ctx context.Context, f func(context.Context, shop.Store) (int64, error)) (int64, error) {
	var total int64
	var errs []error
	for k, sh := range s.shards {
		n, err := f(ctx, sh.Store)
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("shard %d: %w", k+1, err))
		}
	}
	return total, errors.Join(errs...)
}

// Mails is every shard's mail sink, in order id order.
func (s *Store) Mails(ctx context.Context) ([]shop.Mail, error) {
	var all []shop.Mail
	for k, sh := range s.shards {
		m, err := sh.Store.Mails(ctx)
		if err != nil {
			return nil, fmt.Errorf("shard %d: %w", k+1, err)
		}
		all = append(all, m...)
	}
	slices.SortFunc(all, func(a, b shop.Mail) int { return cmp.Compare(a.OrderID, b.OrderID) })
	return all, nil
}

// --- the outbox: every shard's, event ids made unique across shards ---

// Event ids are numbered per shard; across shards an event's id is the
// shard's id << 10 | the shard (from 0), so the relay's ids name their
// shard and each shard's events keep their order.
const eventShardBits = 10

func (s *Store) UnpublishedOrderEvents(ctx context.Context, limit int) ([]shop.OrderEvent, error) {
	lists := make([][]shop.OrderEvent, 0, len(s.shards))
	for k, sh := range s.shards {
		evs, err := sh.Store.UnpublishedOrderEvents(ctx, limit)
		if err != nil {
			// One shard down leaves the others' events flowing.
			s.log.WarnContext(ctx, "outbox of a shard not read", "shard", k+1, "error", err)
			continue
		}
		for i := range evs {
			evs[i].ID = evs[i].ID<<eventShardBits | int64(k)
		}
		lists = append(lists, evs)
	}
	return mergeByTime(lists, limit), nil
}

// mergeByTime merges the shards' outboxes, each in its own order, into
// one by the events' times: each shard's order is kept (an order's events
// are all on its shard), and across shards the earlier change comes first.
func mergeByTime(lists [][]shop.OrderEvent, limit int) []shop.OrderEvent {
	var out []shop.OrderEvent
	for len(out) < limit {
		best := -1
		for i, l := range lists {
			if len(l) > 0 && (best < 0 || l[0].At.Before(lists[best][0].At)) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		out = append(out, lists[best][0])
		lists[best] = lists[best][1:]
	}
	return out
}

func (s *Store) MarkOrderEventsPublished(ctx context.Context, ids []int64) error {
	per := make([][]int64, len(s.shards))
	for _, id := range ids {
		k := int(id & (1<<eventShardBits - 1))
		if k >= len(s.shards) {
			return fmt.Errorf("mark events published: event %d names shard %d of %d", id, k+1, len(s.shards))
		}
		per[k] = append(per[k], id>>eventShardBits)
	}
	for k, ids := range per {
		if len(ids) == 0 {
			continue
		}
		if err := s.shards[k].Store.MarkOrderEventsPublished(ctx, ids); err != nil {
			return fmt.Errorf("shard %d: %w", k+1, err)
		}
	}
	return nil
}

// PingTimeout bounds Ping's wait for a shard (or the caller's deadline,
// when sooner).
const PingTimeout = 2 * time.Second

// Ping asks every shard at once (readiness): nil when every shard
// answered, else a *shard.PartialError naming each that did not (its
// writes refused by its own guard, or its database unreachable). A replica
// serves while any shard does: a shard down fails its own sessions'
// requests with 503 and nothing else, so readiness fails only when no
// shard answered (shop/httpapi, docs/sharding.md).
func (s *Store) Ping(ctx context.Context) error {
	_, err := shard.FanOut(ctx, len(s.shards), PingTimeout, func(ctx context.Context, k int) (struct{}, error) {
		return struct{}{}, s.shards[k].Store.Ping(ctx)
	})
	return err
}

// Close closes every shard.
func (s *Store) Close() error {
	var errs []error
	for _, sh := range s.shards {
		errs = append(errs, sh.Store.Close())
	}
	return errors.Join(errs...)
}

// ShardList is the shards the store routes over, shard 1 first (a copy).
func (s *Store) ShardList() []Shard { return slices.Clone(s.shards) }
