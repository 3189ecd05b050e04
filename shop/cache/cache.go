// Package cache is the ordering service's in-process cache layer: it keeps
// the catalog version in memory, items in a bounded otter cache invalidated
// by that version, and sessions for a few seconds, so that a warm menu, item
// or authenticated request makes no store call for them.
//
// It is a decorator built in shop/app over the (timed) store and handed to
// the HTTP adapter as the domain interfaces it takes (shop.CatalogService,
// shop.SessionService, shop.Ordering).
//
// Freshness, per replica:
//   - The catalog version changes at once for changes made through this
//     process (admin updates; checkouts, which may sell an item out) and
//     within Config.PollInterval (1 s) for changes made by other processes,
//     through a poll of the store's version, or sooner through a Feed.
//   - An item's price and availability follow the catalog version (on
//     shards, an item reloaded from a copy in the moment an admin change
//     had reached shard 1 but not that copy keeps the old ones until its
//     next refresh, at most ItemTTL: docs/sharding.md); its
//     stock may lag by up to Config.ItemTTL (1 s) after another replica's
//     checkout. Checkout re-reads stock in its transaction, so no order is
//     ever placed on a stale figure. The items requests asked for in the
//     last two refreshes are read again together, in one store call every
//     three quarters of ItemTTL (Run, RefreshItems), before they expire:
//     one read a period for the whole catalog being browsed, where a read
//     an item each ItemTTL cost PostgreSQL a statement and a commit each.
//   - A checkout through this process takes the units it sold off the
//     cached stock at once (and an item it sold out goes with the catalog
//     version); the item keeps the time it was read, so the lag above
//     still runs from that read.
//   - A page of the item listing follows the catalog version too, and its
//     stock figures may lag by up to ItemTTL after any checkout, this
//     replica's included: a page holds many items, and dropping every page
//     at each checkout would empty the page cache at the checkout rate.
//   - A session is trusted for at most Config.SessionTTL (5 s), and never
//     past its own expiry. A session removed in the store (there is no
//     logout endpoint today) stays usable on a replica that had it cached
//     for at most that long.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/perfscale/perfscale/shop"
)

// Store is what the cache sits in front of: the catalog and sessions.
type Store interface {
	shop.CatalogService
	shop.SessionService
}

// Feed carries catalog versions between replicas, so that a change made on
// one is seen by the others sooner than the poll would see it (Redis
// pub/sub or NATS, in the scale-out set-up). The poll stays on as the
// safety net: a lost message delays a change by one poll interval at most.
type Feed interface {
	// Publish announces the version this process just moved the catalog to.
	Publish(ctx context.Context, version int64) error
	// Subscribe calls fn with each version another process announced,
	// until ctx ends.
	Subscribe(ctx context.Context, fn func(version int64)) error
}

// Config tunes the cache; zero values take the defaults.
type Config struct {
	// Version, if set, is the catalog version this process knows, shared
	// with the layers below (the Redis layer prices carts under it); nil:
	// the cache keeps its own over the store, with PollInterval and Feed.
	Version *Version
	// PollInterval is how often the store's catalog version is read, which
	// bounds how late a change made by another process is seen (1 s).
	PollInterval time.Duration
	// ItemTTL bounds how stale an item's stock may be (1 s).
	ItemTTL time.Duration
	// MaxItems bounds the item cache (100,000 entries).
	MaxItems int
	// MaxPageItems bounds the listing page cache by the items its pages
	// hold (100,000): pages are keyed by the whole filter, search text
	// included, so a client sending many different searches fills it with
	// pages of up to 100 items each, and a count of pages would not bound
	// the memory.
	MaxPageItems int
	// SessionTTL bounds how long a session is trusted without asking the
	// store (5 s).
	SessionTTL time.Duration
	// MaxSessions bounds the session cache (100,000 entries).
	MaxSessions int
	// Feed, if set, brings other replicas' changes sooner than the poll.
	Feed   Feed
	Logger *slog.Logger
	// now is the clock, for tests of expiry.
	now func() time.Time
	// clock is the item cache's clock, for tests of expiry (nil: otter's).
	clock otter.Clock
}

func (c *Config) defaults() {
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.ItemTTL <= 0 {
		c.ItemTTL = time.Second
	}
	if c.MaxItems <= 0 {
		c.MaxItems = 100_000
	}
	if c.MaxPageItems <= 0 {
		c.MaxPageItems = 100_000
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 5 * time.Second
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 100_000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
}

// Cache is the decorator. Its methods are the Store's; the reads it can
// answer from memory it answers from memory. A Store method it does not
// define passes straight through to the Store below (embedded): uncached,
// never stale.
type Cache struct {
	Store
	cfg     Config
	version *Version
	// seen is the catalog version items and pages were last judged
	// fresh under (see fresh).
	seen     atomic.Int64
	items    *otter.Cache[int64, *cachedItem]
	pages    *otter.Cache[shop.ItemFilter, *shop.ItemPage]
	sessions *otter.Cache[string, *shop.Session]
	// nowNano is the item cache's clock.
	nowNano func() int64
}

// New reads the catalog version once and returns the cache. Call Run to keep
// the version current.
func New(ctx context.Context, next Store, cfg Config) (*Cache, error) {
	cfg.defaults()
	c := &Cache{Store: next, cfg: cfg}
	if cfg.clock != nil {
		c.nowNano = cfg.clock.NowNano
	} else {
		c.nowNano = func() int64 { return time.Now().UnixNano() } // otter's default clock
	}
	var err error
	c.items, err = otter.New(&otter.Options[int64, *cachedItem]{
		MaximumSize: cfg.MaxItems,
		// Kept ItemTTL from when the store was read, however often the
		// cache changed it since (a checkout here).
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[int64, *cachedItem]) time.Duration {
			return time.Duration(e.Value.readAt + int64(cfg.ItemTTL) - c.nowNano())
		}),
		Clock: cfg.clock,
	})
	if err != nil {
		return nil, fmt.Errorf("item cache: %w", err)
	}
	c.pages, err = otter.New(&otter.Options[shop.ItemFilter, *shop.ItemPage]{
		MaximumWeight: uint64(cfg.MaxPageItems), // #nosec G115 -- set positive above
		// A page weighs its items, and one more so an empty page counts.
		Weigher:          func(_ shop.ItemFilter, p *shop.ItemPage) uint32 { return uint32(len(p.Items)) + 1 }, // #nosec G115 -- a page holds at most shop.MaxPageSize items
		ExpiryCalculator: otter.ExpiryWriting[shop.ItemFilter, *shop.ItemPage](cfg.ItemTTL),
	})
	if err != nil {
		return nil, fmt.Errorf("page cache: %w", err)
	}
	c.sessions, err = otter.New(&otter.Options[string, *shop.Session]{
		MaximumSize: cfg.MaxSessions,
		// Trusted for SessionTTL, and never past the session's own expiry.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *shop.Session]) time.Duration {
			return min(cfg.SessionTTL, e.Value.ExpiresAt.Sub(cfg.now()))
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("session cache: %w", err)
	}
	c.version = cfg.Version
	if c.version == nil {
		c.version, err = NewVersion(ctx, next, VersionConfig{PollInterval: cfg.PollInterval, Feed: cfg.Feed, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
	}
	c.seen.Store(c.version.v.Load())
	return c, nil
}

// Run keeps the cache current until ctx ends: the catalog version
// (Version.Run) when the cache keeps its own (a shared Config.Version is
// run by its owner), and the items requests keep asking for, read again
// together every three quarters of ItemTTL (RefreshItems), so they do not
// expire one by one into a store read each.
func (c *Cache) Run(ctx context.Context) {
	if c.cfg.Version == nil {
		go c.version.Run(ctx)
	}
	t := time.NewTicker(c.cfg.ItemTTL * 3 / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := c.RefreshItems(ctx); err != nil && ctx.Err() == nil {
				// The items expire as they would have; each is read
				// again by the next request asking for it.
				c.cfg.Logger.Warn("refresh cached items", "error", err.Error())
			}
		}
	}
}

// cachedItem is an item as the cache keeps it: when the store was read
// for it, and for how many more refreshes it is to be read again (a
// request asking for it sets askedRefreshes, each refresh takes one).
type cachedItem struct {
	item           shop.Item
	readAt         int64 // the item cache's clock
	askedRefreshes atomic.Int32
}

// askedRefreshes is how many refreshes read an item again after a request
// asked for it: two, so an item asked for about once an ItemTTL (what an
// edge cache revalidating it each second sends) is refreshed without a
// gap, at the cost of a row or two in a read made anyway.
const askedRefreshes = 2

func (e *cachedItem) ask() {
	if e.askedRefreshes.Load() != askedRefreshes {
		e.askedRefreshes.Store(askedRefreshes)
	}
}

// RefreshItems reads again, in one store call (shop.CatalogService.Items),
// the cached items that requests asked for since they were read, and keeps
// them another ItemTTL. An item nobody asked for is left to expire, so the
// refresh reads what is being browsed, not the whole catalog ever seen. An
// item dropped or read again meanwhile (a checkout sold it, the catalog
// changed) keeps what happened to it: the refresh does not overwrite it
// with what it read before.
func (c *Cache) RefreshItems(ctx context.Context) error {
	c.fresh()
	asked := map[int64]*cachedItem{}
	for id, e := range c.items.All() {
		if e.askedRefreshes.Load() > 0 {
			asked[id] = e
		}
	}
	if len(asked) == 0 {
		return nil
	}
	readAt := c.nowNano()
	items, err := c.Store.Items(ctx, slices.Collect(maps.Keys(asked)))
	if err != nil {
		return fmt.Errorf("refresh %d cached items: %w", len(asked), err)
	}
	for _, it := range items {
		was := asked[it.ID]
		c.items.ComputeIfPresent(it.ID, func(cur *cachedItem) (*cachedItem, otter.ComputeOp) {
			if cur != was {
				return cur, otter.CancelOp
			}
			next := &cachedItem{item: it, readAt: readAt}
			next.askedRefreshes.Store(max(cur.askedRefreshes.Load()-1, 0))
			return next, otter.WriteOp
		})
	}
	return nil
}

// Poll reads the store's catalog version once.
func (c *Cache) Poll(ctx context.Context) error { return c.version.Poll(ctx) }

// fresh forgets the items and pages read under an older catalog version
// than the one now known; every read that answers from them calls it
// first.
func (c *Cache) fresh() {
	v := c.version.v.Load()
	for {
		seen := c.seen.Load()
		if v <= seen {
			return
		}
		if c.seen.CompareAndSwap(seen, v) {
			c.items.InvalidateAll()
			c.pages.InvalidateAll()
			return
		}
	}
}

// --- catalog ---

// CatalogVersion is the version known in memory: no store call.
func (c *Cache) CatalogVersion(ctx context.Context) (int64, error) {
	return c.version.CatalogVersion(ctx)
}

// Menu builds the menu from the store (callers keep the result per
// version) and learns its version, which may be newer than the one known.
func (c *Cache) Menu(ctx context.Context) (*shop.Menu, error) {
	m, err := c.Store.Menu(ctx)
	if err != nil {
		return nil, err
	}
	c.version.observe(m.Version)
	return m, nil
}

// Item answers from the item cache, loading a missing item once however
// many requests ask for it at the same time.
func (c *Cache) Item(ctx context.Context, id int64) (*shop.Item, error) {
	c.fresh()
	e, err := loadOnce(ctx, c.items, id, c.loadItem)
	if err != nil {
		return nil, err
	}
	e.ask()      // RefreshItems reads it again before it expires
	cp := e.item // callers may not change the cached value
	return &cp, nil
}

// loadItem reads the item from the store, noting when.
func (c *Cache) loadItem(ctx context.Context, id int64) (*cachedItem, error) {
	readAt := c.nowNano()
	it, err := c.Store.Item(ctx, id)
	if err != nil {
		return nil, err
	}
	return &cachedItem{item: *it, readAt: readAt}, nil
}

// errLoadedOnce ends a Get whose own load the cache has already refused
// (loadOnce).
var errLoadedOnce = errors.New("cache: loaded once already")

// loadOnce gets key from oc, loading it with load on a miss, once however
// many requests ask for it at the same time, and never twice for one
// request. otter drops a load that an invalidation overtook (the item was
// sold while it was read: a checkout invalidates what it sold or found
// sold out) and its Get loads again, until a load finishes between two
// invalidations. While loads are slow (a read replica timing out before
// the primary answers) and the item sells more often than that, none
// does, and the request waited out its deadline: the fault matrix's item
// pages got 503 under 1 s of replica latency. A request's own load is
// its answer instead, as it would have been had the sale come a moment
// later; the cache keeps it only if otter does. A request that had waited
// for another's load, dropped too, reads the store itself, uncached.
func loadOnce[K comparable, V any](ctx context.Context, oc *otter.Cache[K, V], key K, load func(context.Context, K) (V, error)) (V, error) {
	var own V
	loaded := false // otter calls the loader in this goroutine
	v, err := oc.Get(ctx, key, otter.LoaderFunc[K, V](func(ctx context.Context, key K) (V, error) {
		if loaded {
			var zero V
			return zero, errLoadedOnce
		}
		v, err := load(ctx, key)
		if err == nil {
			own, loaded = v, true
		}
		return v, err
	}))
	switch {
	case !errors.Is(err, errLoadedOnce):
		return v, err
	case loaded:
		return own, nil
	}
	return load(ctx, key)
}

// ListItems answers from the page cache, keyed by the whole filter, and
// loads a missing page once however many requests ask for it at the same
// time. A filter the store refuses is not cached: its error comes back
// each time.
func (c *Cache) ListItems(ctx context.Context, f shop.ItemFilter) (*shop.ItemPage, error) {
	c.fresh()
	p, err := loadOnce(ctx, c.pages, f, c.Store.ListItems)
	if err != nil {
		return nil, err
	}
	// Callers may not change the cached page.
	return &shop.ItemPage{Items: slices.Clone(p.Items), Next: p.Next}, nil
}

// UpdateItem changes the item and the catalog version at once.
func (c *Cache) UpdateItem(ctx context.Context, id int64, u shop.ItemUpdate) (*shop.Item, error) {
	it, err := c.Store.UpdateItem(ctx, id, u)
	c.items.Invalidate(id)
	c.pages.InvalidateAll() // also when the version did not move (a stock change)
	if err == nil {
		c.version.changed(ctx)
	}
	return it, err
}

// sold takes quantity units off the cached stock of the item, keeping the
// time it was read (so not its lifetime): what this process sold shows at
// once, without reading the item again.
func (c *Cache) sold(id int64, quantity int) {
	c.items.ComputeIfPresent(id, func(cur *cachedItem) (*cachedItem, otter.ComputeOp) {
		next := &cachedItem{item: cur.item, readAt: cur.readAt}
		next.item.Stock = max(cur.item.Stock-int64(quantity), 0)
		next.askedRefreshes.Store(cur.askedRefreshes.Load())
		return next, otter.WriteOp
	})
}

// --- sessions ---

// CreateSession stores the session and remembers it: the client's next
// request most often comes to this replica.
func (c *Cache) CreateSession(ctx context.Context, tokenHash string) (*shop.Session, error) {
	s, err := c.Store.CreateSession(ctx, tokenHash)
	if err == nil {
		cp := *s
		c.sessions.Set(tokenHash, &cp)
	}
	return s, err
}

// SessionByTokenHash answers from the session cache. Unknown tokens are not
// cached, so a session created on another replica works here at once.
func (c *Cache) SessionByTokenHash(ctx context.Context, tokenHash string) (*shop.Session, error) {
	s, err := c.sessions.Get(ctx, tokenHash, otter.LoaderFunc[string, *shop.Session](func(ctx context.Context, h string) (*shop.Session, error) {
		return c.Store.SessionByTokenHash(ctx, h)
	}))
	if err != nil {
		return nil, err
	}
	if !c.cfg.now().Before(s.ExpiresAt) {
		c.sessions.Invalidate(tokenHash)
		return c.Store.SessionByTokenHash(ctx, tokenHash) // expired: the store's answer, with its error
	}
	cp := *s
	return &cp, nil
}

// --- orders ---

// Ordering returns next with checkouts made known to the cache: the items
// an order sold are read afresh next time, and if one sold out (a new
// catalog version) the menu follows at once. Only then is the version read
// again (Order.SoldOut): a checkout that sold nothing out leaves it as it
// was, and reading it after every order cost the store a statement (and,
// on PostgreSQL, a commit) per order. Order reads pass through.
func (c *Cache) Ordering(next shop.Ordering) shop.Ordering { return &ordering{Ordering: next, c: c} }

type ordering struct {
	shop.Ordering
	c *Cache
}

func (o *ordering) PlaceOrder(ctx context.Context, p shop.PlaceOrder) (*shop.Order, bool, error) {
	order, created, err := o.Ordering.PlaceOrder(ctx, p)
	if err == nil && created {
		if order.SoldOut {
			o.c.version.changed(ctx) // every item and page goes
		}
		for _, l := range order.Lines {
			o.c.sold(l.ItemID, l.Quantity)
		}
	}
	var short *shop.OutOfStockError
	if errors.As(err, &short) {
		for _, it := range short.Items {
			o.c.items.Invalidate(it.ItemID)
		}
	}
	return order, created, err
}
