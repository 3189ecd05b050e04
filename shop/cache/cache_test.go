package cache

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlite"
)

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	s := sqlite.NewStore(db, nil)
	t.Cleanup(func() { s.Close() })
	return s
}

func ptr[T any](v T) *T { return &v }

// twoProcesses seeds a catalog of n items and opens it twice, as two
// processes would: one with the cache c in front of it, and other.
func twoProcesses(t *testing.T, n int) (c *Cache, other *sqlite.Store) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shop.db")
	here := openStore(t, path)
	other = openStore(t, path)
	if _, err := here.SeedIfEmpty(ctx, seed.Items(n)); err != nil {
		t.Fatal(err)
	}
	c, err := New(ctx, here, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return c, other
}

// TestCatalogChanges: this process's changes are seen at once, another
// process's at the next poll, and an item read under the old version is
// read again under the new one.
func TestCatalogChanges(t *testing.T) {
	ctx := context.Background()
	c, other := twoProcesses(t, 20)
	v0, _ := c.CatalogVersion(ctx)
	it, err := c.Item(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}

	// Here: at once.
	if _, err := c.UpdateItem(ctx, 3, shop.ItemUpdate{PriceCents: ptr(it.PriceCents + 100)}); err != nil {
		t.Fatal(err)
	}
	v1, _ := c.CatalogVersion(ctx)
	if v1 <= v0 {
		t.Fatalf("version %d after a change here, was %d", v1, v0)
	}
	if got, _ := c.Item(ctx, 3); got.PriceCents != it.PriceCents+100 {
		t.Fatalf("item 3 costs %d after the change here, want %d", got.PriceCents, it.PriceCents+100)
	}

	// Another process: not before the poll, at the poll.
	if _, err := other.UpdateItem(ctx, 3, shop.ItemUpdate{PriceCents: ptr(int64(999))}); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.CatalogVersion(ctx); v != v1 {
		t.Fatalf("version moved to %d without a poll", v)
	}
	if err := c.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.CatalogVersion(ctx); v <= v1 {
		t.Fatalf("version %d after the poll, want past %d", v, v1)
	}
	if got, _ := c.Item(ctx, 3); got.PriceCents != 999 {
		t.Fatalf("item 3 costs %d after another process's change, want 999", got.PriceCents)
	}
}

// TestMenuTeachesTheVersion: a menu built from a newer version than the one
// known moves the known version on, so the menu is not rebuilt on every
// request until the poll.
func TestMenuTeachesTheVersion(t *testing.T) {
	ctx := context.Background()
	c, other := twoProcesses(t, 5)
	if _, err := other.UpdateItem(ctx, 1, shop.ItemUpdate{Available: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	m, err := c.Menu(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.CatalogVersion(ctx); v != m.Version {
		t.Fatalf("known version %d, menu version %d", v, m.Version)
	}
}

// countingStore answers sessions from a map and counts the lookups.
type countingStore struct {
	Store
	mu       sync.Mutex
	sessions map[string]*shop.Session
	lookups  atomic.Int64
	now      func() time.Time
	version  atomic.Int64
}

func (s *countingStore) CatalogVersion(context.Context) (int64, error) { return s.version.Load(), nil }

func (s *countingStore) SessionByTokenHash(_ context.Context, h string) (*shop.Session, error) {
	s.lookups.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.sessions[h]; ok && s.now().Before(sess.ExpiresAt) {
		cp := *sess
		return &cp, nil
	}
	return nil, shop.Errorf(shop.EUNAUTHORIZED, "unknown or expired")
}

func TestSessions(t *testing.T) {
	ctx := context.Background()
	var clock atomic.Int64
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return start.Add(time.Duration(clock.Load())) }
	st := &countingStore{now: now, sessions: map[string]*shop.Session{
		"live":  {ID: 1, ExpiresAt: start.Add(time.Hour)},
		"dying": {ID: 2, ExpiresAt: start.Add(time.Minute)},
	}}
	c, err := New(ctx, st, Config{now: now})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if s, err := c.SessionByTokenHash(ctx, "live"); err != nil || s.ID != 1 {
			t.Fatalf("live session: %v %v", s, err)
		}
	}
	if n := st.lookups.Load(); n != 1 {
		t.Errorf("%d store lookups for three reads of one session, want 1", n)
	}

	// An unknown token is asked every time: it may be a session another
	// replica has just created.
	for range 2 {
		if _, err := c.SessionByTokenHash(ctx, "unknown"); shop.ErrorCode(err) != shop.EUNAUTHORIZED {
			t.Fatalf("unknown token: %v", err)
		}
	}
	if n := st.lookups.Load(); n != 3 {
		t.Errorf("%d store lookups after two unknown tokens, want 3", n)
	}

	// A session past its expiry is refused even if it is still cached.
	if _, err := c.SessionByTokenHash(ctx, "dying"); err != nil {
		t.Fatal(err)
	}
	clock.Store(int64(2 * time.Minute))
	if _, err := c.SessionByTokenHash(ctx, "dying"); shop.ErrorCode(err) != shop.EUNAUTHORIZED {
		t.Fatalf("expired session: err %v, want unauthorized", err)
	}
}

// fakeFeed records what is published and lets the test announce versions.
type fakeFeed struct {
	published chan int64
	announce  chan int64
}

func (f *fakeFeed) Publish(_ context.Context, v int64) error { f.published <- v; return nil }

func (f *fakeFeed) Subscribe(ctx context.Context, fn func(int64)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case v := <-f.announce:
			fn(v)
			f.published <- -v // acknowledge, so the test knows fn ran
		}
	}
}

func TestFeed(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "shop.db")
	s := openStore(t, path)
	if _, err := s.SeedIfEmpty(ctx, seed.Items(5)); err != nil {
		t.Fatal(err)
	}
	feed := &fakeFeed{published: make(chan int64, 4), announce: make(chan int64)}
	c, err := New(ctx, s, Config{Feed: feed, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx)

	if _, err := c.UpdateItem(ctx, 2, shop.ItemUpdate{Stock: ptr(int64(5))}); err != nil {
		t.Fatal(err)
	}
	v, _ := c.CatalogVersion(ctx)
	if got := <-feed.published; got != v {
		t.Fatalf("published %d, want %d", got, v)
	}
	feed.announce <- v + 10
	<-feed.published
	if got, _ := c.CatalogVersion(ctx); got != v+10 {
		t.Fatalf("version %d after the feed announced %d", got, v+10)
	}
}

// versionReads counts the store's catalog version reads.
type versionReads struct {
	*sqlite.Store
	n atomic.Int64
}

func (v *versionReads) CatalogVersion(ctx context.Context) (int64, error) {
	v.n.Add(1)
	return v.Store.CatalogVersion(ctx)
}

// TestCheckoutRefreshesWhatItSold: after a checkout through the cache, the
// items it sold are read afresh (their stock changed); a checkout that sold
// nothing out leaves the catalog version unread, and selling the last unit
// moves the version at once.
func TestCheckoutRefreshesWhatItSold(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "shop.db"))
	its := seed.Items(5)
	its[2].Stock = 3
	if _, err := s.SeedIfEmpty(ctx, its); err != nil {
		t.Fatal(err)
	}
	counted := &versionReads{Store: s}
	c, err := New(ctx, counted, Config{})
	if err != nil {
		t.Fatal(err)
	}
	orders := c.Ordering(shop.NewOrderDesk(s, nil, nil))
	_, hash := shop.NewToken()
	sess, err := s.CreateSession(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	co := shop.Checkout{CustomerName: "Ada Lovelace", Email: "ada@example.com"}
	stock := int64(3)
	for i, sell := range []int{1, 2} {
		before, err := c.Item(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if before.Stock != stock {
			t.Fatalf("checkout %d: item 3 stock %d before it, want %d", i+1, before.Stock, stock)
		}
		v0, _ := c.CatalogVersion(ctx)
		reads := counted.n.Load()
		if _, err := s.SetCartItem(ctx, sess.ID, 3, sell); err != nil {
			t.Fatal(err)
		}
		if _, _, err := orders.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: fmt.Sprint("k", i), Checkout: co}); err != nil {
			t.Fatal(err)
		}
		stock -= int64(sell)
		after, err := c.Item(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if after.Stock != stock {
			t.Errorf("checkout %d: item 3 stock %d after selling %d, want %d", i+1, after.Stock, sell, stock)
		}
		v, _ := c.CatalogVersion(ctx)
		switch soldOut, read := stock == 0, counted.n.Load()-reads; {
		case soldOut && v <= v0:
			t.Errorf("checkout %d: version %d after item 3 sold out, was %d", i+1, v, v0)
		case !soldOut && read != 0:
			t.Errorf("checkout %d sold nothing out and read the catalog version %d times", i+1, read)
		case !soldOut && v != v0:
			t.Errorf("checkout %d sold nothing out and moved the version from %d to %d", i+1, v0, v)
		}
	}
}

// TestPagesFollowTheCatalog: a listing page read under one catalog version
// is read again under the next, whether the change was made here or by
// another process (seen at the poll); a refused filter is not cached.
func TestPagesFollowTheCatalog(t *testing.T) {
	ctx := context.Background()
	c, other := twoProcesses(t, 20)
	first := shop.ItemFilter{Limit: 5}
	priceOf3 := func() int64 {
		t.Helper()
		p, err := c.ListItems(ctx, first)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range p.Items {
			if it.ID == 3 {
				return it.PriceCents
			}
		}
		t.Fatalf("item 3 is not on the first page: %+v", p.Items)
		return 0
	}
	p0 := priceOf3()

	// A caller changing its copy does not change the cached page.
	p, _ := c.ListItems(ctx, first)
	p.Items[2].PriceCents = -1
	if got := priceOf3(); got != p0 {
		t.Fatalf("cached page changed through a caller's copy: item 3 costs %d, want %d", got, p0)
	}

	// Here: at once.
	if _, err := c.UpdateItem(ctx, 3, shop.ItemUpdate{PriceCents: ptr(p0 + 100)}); err != nil {
		t.Fatal(err)
	}
	if got := priceOf3(); got != p0+100 {
		t.Fatalf("item 3 costs %d on the page after the change here, want %d", got, p0+100)
	}

	// Another process: not before the poll (the page is served from
	// memory), at the poll.
	if _, err := other.UpdateItem(ctx, 3, shop.ItemUpdate{PriceCents: ptr(int64(999))}); err != nil {
		t.Fatal(err)
	}
	if got := priceOf3(); got != p0+100 {
		t.Fatalf("item 3 costs %d on the page before the poll; a cached page should still say %d", got, p0+100)
	}
	if err := c.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := priceOf3(); got != 999 {
		t.Fatalf("item 3 costs %d on the page after another process's change, want 999", got)
	}

	// A filter the store refuses keeps being refused, not cached.
	for range 2 {
		if _, err := c.ListItems(ctx, shop.ItemFilter{Limit: -1}); shop.ErrorCode(err) != shop.EINVALID {
			t.Fatalf("limit -1: error %v, want %s", err, shop.EINVALID)
		}
	}
}

// TestPagesAreBoundedByTheirItems: the page cache holds at most
// MaxPageItems items, however many different filters were asked for (a
// client can make up any number of searches).
func TestPagesAreBoundedByTheirItems(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "shop.db"))
	if _, err := s.SeedIfEmpty(ctx, seed.Items(100)); err != nil {
		t.Fatal(err)
	}
	c, err := New(ctx, s, Config{MaxPageItems: 50})
	if err != nil {
		t.Fatal(err)
	}
	for after := range int64(40) {
		if _, err := c.ListItems(ctx, shop.ItemFilter{Limit: 10, After: after}); err != nil {
			t.Fatal(err)
		}
	}
	c.pages.CleanUp()
	if w := c.pages.WeightedSize(); w > 50 {
		t.Fatalf("the page cache holds pages weighing %d, over its 50 items", w)
	}
	if n := c.pages.EstimatedSize(); n == 0 {
		t.Fatal("the page cache kept nothing")
	}
}

// fakeClock is the item cache's clock, moved by the test.
type fakeClock struct{ nanos atomic.Int64 }

func (c *fakeClock) NowNano() int64                      { return c.nanos.Load() }
func (c *fakeClock) Tick(time.Duration) <-chan time.Time { return nil }
func (c *fakeClock) advance(d time.Duration)             { c.nanos.Add(int64(d)) }

// itemReads counts the store's item reads, one by one and together, and
// runs afterItems (if set) after a read together, before it returns.
type itemReads struct {
	*sqlite.Store
	one, together, togetherIDs atomic.Int64
	afterItems                 func()
}

func (s *itemReads) Item(ctx context.Context, id int64) (*shop.Item, error) {
	s.one.Add(1)
	return s.Store.Item(ctx, id)
}

func (s *itemReads) Items(ctx context.Context, ids []int64) ([]shop.Item, error) {
	s.together.Add(1)
	s.togetherIDs.Add(int64(len(ids)))
	items, err := s.Store.Items(ctx, ids)
	if s.afterItems != nil {
		s.afterItems()
	}
	return items, err
}

// sell places an order of one unit of item through desk, for a new session
// of store.
func sell(t *testing.T, store *sqlite.Store, desk shop.Ordering, item int64) {
	t.Helper()
	ctx := context.Background()
	_, hash := shop.NewToken()
	sess, err := store.CreateSession(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.SetCartItem(ctx, sess.ID, item, 1); err != nil {
		t.Fatal(err)
	}
	co := shop.Checkout{CustomerName: "Ada Lovelace", Email: "ada@example.com"}
	if _, _, err := desk.PlaceOrder(ctx, shop.PlaceOrder{SessionID: sess.ID, IdempotencyKey: hash, Checkout: co}); err != nil {
		t.Fatal(err)
	}
}

// TestBrowsedItemsAreReadTogether: the items requests keep asking for are
// read again in one store call a refresh, before they expire, and stay
// cached past their first ItemTTL with what the refresh read (another
// replica's sale included); an item asked for once is read again by the
// next two refreshes, then left to expire.
// Without the refresh (RefreshItems a no-op) every item browsed is read
// again one by one as it expires: 45 reads here, against 25 and 4 reads
// together.
func TestBrowsedItemsAreReadTogether(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shop.db")
	here, other := openStore(t, path), openStore(t, path)
	if _, err := here.SeedIfEmpty(ctx, seed.Items(30)); err != nil {
		t.Fatal(err)
	}
	counted := &itemReads{Store: here}
	clock := &fakeClock{}
	c, err := New(ctx, counted, Config{ItemTTL: time.Second, clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	browse := func(ids ...int64) map[int64]shop.Item {
		t.Helper()
		got := map[int64]shop.Item{}
		for _, id := range ids {
			it, err := c.Item(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			got[id] = *it
		}
		return got
	}
	var hot []int64
	for id := range int64(20) {
		hot = append(hot, id+1)
	}
	browse(hot...)
	browse(21, 22, 23, 24, 25) // asked once: left to expire
	stock7 := browse(7)[7].Stock
	const periods = 4
	for p := range periods {
		browse(hot...)
		if p == 1 { // another replica sells item 7
			sell(t, other, shop.NewOrderDesk(other, nil, nil), 7)
			stock7--
		}
		clock.advance(750 * time.Millisecond)
		if err := c.RefreshItems(ctx); err != nil {
			t.Fatal(err)
		}
		if n := counted.together.Load(); n != int64(p+1) {
			t.Fatalf("period %d: %d reads together, want one a refresh (%d)", p+1, n, p+1)
		}
	}
	// The 20 browsed each period, and the 5 asked for once in the two
	// refreshes after.
	if want := int64(periods*20 + 2*5); counted.togetherIDs.Load() != want {
		t.Errorf("the refreshes asked for %d items, want %d", counted.togetherIDs.Load(), want)
	}
	if n := counted.one.Load(); n != 25 {
		t.Errorf("%d items read one by one over %d periods, want 25 (each once, when first asked for)", n, periods)
	}
	if got := browse(7)[7].Stock; got != stock7 {
		t.Errorf("item 7 stock %d after another replica's sale and a refresh, want %d", got, stock7)
	}
	one := counted.one.Load()
	browse(21)
	if counted.one.Load() != one+1 {
		t.Error("item 21, asked for once, was kept past its ItemTTL by the refreshes")
	}
}

// TestRefreshKeepsWhatACheckoutDid: an item a checkout here sold while a
// refresh was reading, and a request read again, is not put back as the
// refresh read it.
func TestRefreshKeepsWhatACheckoutDid(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "shop.db"))
	if _, err := s.SeedIfEmpty(ctx, seed.Items(5)); err != nil {
		t.Fatal(err)
	}
	counted := &itemReads{Store: s}
	c, err := New(ctx, counted, Config{clock: &fakeClock{}})
	if err != nil {
		t.Fatal(err)
	}
	orders := c.Ordering(shop.NewOrderDesk(s, nil, nil))
	for range 2 { // read, then asked for again: due for the refresh
		if _, err := c.Item(ctx, 3); err != nil {
			t.Fatal(err)
		}
	}
	it, _ := c.Item(ctx, 3)
	want := it.Stock - 1
	counted.afterItems = func() {
		counted.afterItems = nil
		sell(t, s, orders, 3)                            // drops item 3 from the cache
		if got, _ := c.Item(ctx, 3); got.Stock != want { // and a request reads it again
			t.Errorf("item 3 stock %d after the sale, want %d", got.Stock, want)
		}
	}
	if err := c.RefreshItems(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Item(ctx, 3); got.Stock != want {
		t.Errorf("item 3 stock %d after a sale during the refresh, want %d", got.Stock, want)
	}
}

// TestACheckoutHereReadsNoItemAgain: the units a checkout through this
// process sold come off the cached stock at once, without a store read
// (the code before read each sold item again: one store read, on
// PostgreSQL one statement and commit, per line of every order), and the
// item still expires ItemTTL after it was read, not after the sale.
func TestACheckoutHereReadsNoItemAgain(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "shop.db"))
	if _, err := s.SeedIfEmpty(ctx, seed.Items(5)); err != nil {
		t.Fatal(err)
	}
	counted := &itemReads{Store: s}
	clock := &fakeClock{}
	c, err := New(ctx, counted, Config{ItemTTL: time.Second, clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	orders := c.Ordering(shop.NewOrderDesk(s, nil, nil))
	before, err := c.Item(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(600 * time.Millisecond)
	sell(t, s, orders, 3)
	after, err := c.Item(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if after.Stock != before.Stock-1 {
		t.Errorf("item 3 stock %d after selling one of %d here", after.Stock, before.Stock)
	}
	if n := counted.one.Load(); n != 1 {
		t.Errorf("item 3 read %d times from the store, want once (before the sale)", n)
	}
	clock.advance(500 * time.Millisecond) // 1.1 s after the read, 0.5 s after the sale
	if _, err := c.Item(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if n := counted.one.Load(); n != 2 {
		t.Errorf("item 3 read %d times from the store, want twice: it expires ItemTTL after its read", n)
	}
}
