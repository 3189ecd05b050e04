package httpapi

import (
	"context"
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
