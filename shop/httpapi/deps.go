package httpapi

import (
	"context"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// The handlers' dependencies beyond the domain's own interfaces (the
// catalog, sessions, carts and ordering are shop.CatalogService,
// shop.SessionService, shop.CartService and shop.Ordering, see Config),
// each as small as the handlers use it. shop/app builds the store, wraps it
// (timing, caches) and hands it over; nothing here knows which store runs
// or how it is measured.

// Pinger answers readiness: is the state reachable?
type Pinger interface {
	Ping(ctx context.Context) error
}

// SharedMenus is a cache of encoded menus shared by the replicas (Redis):
// one replica builds a catalog version's menu, the others fetch its bytes
// instead of querying the database and compressing it again.
type SharedMenus interface {
	// GetMenu returns the bytes of each content coding ("br", "gzip",
	// "identity") of version's menu; ok is false on a miss or when the
	// cache is unreachable.
	GetMenu(ctx context.Context, version int64) (bodies map[string][]byte, ok bool)
	// PutMenu shares version's menu; failures only cost the others a build.
	PutMenu(ctx context.Context, version int64, bodies map[string][]byte)
}

// AdminReads are the admin's reads over every order, of every shard on a
// sharded store, each under a deadline (timeout). When some shards did
// not answer, the error says which (see partialAnswer) and the result is
// the others'.
type AdminReads interface {
	// Shards is how many shards a read asks (1 on one database).
	Shards() int
	SalesPerItem(ctx context.Context, timeout time.Duration) (map[int64]int64, error)
	OrdersByStatus(ctx context.Context, status shop.Status, limit int, timeout time.Duration) ([]shop.Order, error)
}

// partialAnswer is an AdminReads error that names the shards (numbered
// from 1) that did not answer, with their causes, out of asked
// (shard.PartialError is one).
type partialAnswer interface {
	error
	MissingShards() (asked int, missing map[int]error)
}

// noAdminReads answers for a handler built without AdminReads.
type noAdminReads struct{}

func (noAdminReads) Shards() int { return 0 }

func (noAdminReads) SalesPerItem(context.Context, time.Duration) (map[int64]int64, error) {
	return nil, errNoAdminReads
}

func (noAdminReads) OrdersByStatus(context.Context, shop.Status, int, time.Duration) ([]shop.Order, error) {
	return nil, errNoAdminReads
}

var errNoAdminReads = shop.Errorf(shop.ENOTFOUND, "this process serves no admin reads")
