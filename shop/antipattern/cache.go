package antipattern

import (
	"context"
	"slices"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/perfscale/perfscale/shop"
)

// LocalCacheTTL is how long local-cache keeps what it read: a change made
// anywhere reaches a replica's readers only when its copy expires.
const LocalCacheTTL = 10 * time.Second

// LocalCatalog is local-cache: the catalog cached in this process for a
// fixed time, with no layer shared by the replicas and no invalidation,
// not even of its own admin changes. Each replica misses on its own, and
// two replicas may show two prices for one item until their copies expire.
type LocalCatalog struct {
	shop.CatalogService
	versions *otter.Cache[struct{}, int64]
	items    *otter.Cache[int64, *shop.Item]
	pages    *otter.Cache[shop.ItemFilter, *shop.ItemPage]
}

// NewLocalCatalog caches next's catalog version, items and listing pages
// for ttl (LocalCacheTTL when 0).
func NewLocalCatalog(next shop.CatalogService, ttl time.Duration) (*LocalCatalog, error) {
	if ttl <= 0 {
		ttl = LocalCacheTTL
	}
	c := &LocalCatalog{CatalogService: next}
	var err error
	if c.versions, err = otter.New(&otter.Options[struct{}, int64]{MaximumSize: 1,
		ExpiryCalculator: otter.ExpiryWriting[struct{}, int64](ttl)}); err != nil {
		return nil, err
	}
	if c.items, err = otter.New(&otter.Options[int64, *shop.Item]{MaximumSize: 100_000,
		ExpiryCalculator: otter.ExpiryWriting[int64, *shop.Item](ttl)}); err != nil {
		return nil, err
	}
	if c.pages, err = otter.New(&otter.Options[shop.ItemFilter, *shop.ItemPage]{MaximumSize: 10_000,
		ExpiryCalculator: otter.ExpiryWriting[shop.ItemFilter, *shop.ItemPage](ttl)}); err != nil {
		return nil, err
	}
	return c, nil
}

// CatalogVersion is the version this process read last, until it expires:
// the menu, kept per version by the HTTP adapter, is as stale as it.
func (c *LocalCatalog) CatalogVersion(ctx context.Context) (int64, error) {
	return c.versions.Get(ctx, struct{}{}, otter.LoaderFunc[struct{}, int64](func(ctx context.Context, _ struct{}) (int64, error) {
		return c.CatalogService.CatalogVersion(ctx)
	}))
}

// Item is the item as this process read it last, until it expires.
func (c *LocalCatalog) Item(ctx context.Context, id int64) (*shop.Item, error) {
	it, err := c.items.Get(ctx, id, otter.LoaderFunc[int64, *shop.Item](func(ctx context.Context, id int64) (*shop.Item, error) {
		return c.CatalogService.Item(ctx, id)
	}))
	if err != nil {
		return nil, err
	}
	cp := *it
	return &cp, nil
}

// ListItems is the page as this process read it last, until it expires.
func (c *LocalCatalog) ListItems(ctx context.Context, f shop.ItemFilter) (*shop.ItemPage, error) {
	p, err := c.pages.Get(ctx, f, otter.LoaderFunc[shop.ItemFilter, *shop.ItemPage](func(ctx context.Context, f shop.ItemFilter) (*shop.ItemPage, error) {
		return c.CatalogService.ListItems(ctx, f)
	}))
	if err != nil {
		return nil, err
	}
	return &shop.ItemPage{Items: slices.Clone(p.Items), Next: p.Next}, nil
}
