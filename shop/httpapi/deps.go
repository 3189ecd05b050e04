package httpapi

import (
	"context"

	"github.com/perfscale/perfscale/shop"
)

// The handlers' dependencies, each as small as the handlers use it. cmd/shop
// builds the store, wraps it (timing, metrics) and hands it over as these;
// nothing here knows which store runs or how it is measured.

// Catalog reads the menu and items and applies admin changes.
type Catalog interface {
	CatalogVersion(ctx context.Context) (int64, error)
	Menu(ctx context.Context) (*shop.Menu, error)
	Item(ctx context.Context, id int64) (*shop.Item, error)
	ListItems(ctx context.Context, f shop.ItemFilter) (*shop.ItemPage, error)
	UpdateItem(ctx context.Context, id int64, u shop.ItemUpdate) (*shop.Item, error)
}

// Sessions creates guest sessions and resolves bearer tokens to them.
type Sessions interface {
	CreateSession(ctx context.Context, tokenHash string) (*shop.Session, error)
	SessionByTokenHash(ctx context.Context, tokenHash string) (*shop.Session, error)
}

// Carts keeps a session's cart.
type Carts interface {
	Cart(ctx context.Context, sessionID int64) (*shop.Cart, error)
	SetCartItem(ctx context.Context, sessionID, itemID int64, quantity int) (*shop.Cart, error)
	ClearCart(ctx context.Context, sessionID int64) error
}

// Orders checks out and reads a session's orders.
type Orders interface {
	PlaceOrder(ctx context.Context, p shop.PlaceOrder) (*shop.Order, bool, error)
	Order(ctx context.Context, sessionID, orderID int64) (*shop.Order, error)
	ListOrders(ctx context.Context, sessionID int64, f shop.OrderFilter) (*shop.OrderPage, error)
}

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
