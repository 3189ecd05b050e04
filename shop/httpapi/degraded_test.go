package httpapi_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/httpapi"
)

// failingCatalog answers until down is set, then fails as a lost database
// does; the version moves on when bumped, so the menu must be rebuilt.
type failingCatalog struct {
	shop.CatalogService // only the menu's two methods are called
	down                atomic.Bool
	version             atomic.Int64
}

var errLost = shop.Errorf(shop.EUNAVAILABLE, "the database is failing")

func (c *failingCatalog) CatalogVersion(context.Context) (int64, error) {
	if c.down.Load() {
		return 0, errLost
	}
	return c.version.Load(), nil
}

func (c *failingCatalog) Menu(context.Context) (*shop.Menu, error) {
	if c.down.Load() {
		return nil, errors.New("dial tcp: connection refused")
	}
	return &shop.Menu{Version: c.version.Load(), Categories: []shop.MenuCategory{{Name: "Pizza", Items: []shop.MenuItem{{ID: 1, Name: "Margherita", PriceCents: 900, Available: true}}}}}, nil
}

// With the database down, the menu is served from the last good copy, with
// Age and a Warning that it is stale, instead of a 503: when the version
// cannot be read, and when the database is known to be failing though the
// version in memory still reads.
func TestTheMenuIsServedStaleWhileTheDatabaseIsDown(t *testing.T) {
	cat := &failingCatalog{}
	cat.version.Store(1)
	var stale atomic.Bool
	h := httpapi.NewHandler(httpapi.Config{Catalog: cat, Stale: stale.Load})
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func() (*http.Response, string) {
		t.Helper()
		res, err := http.Get(srv.URL + "/v1/menu")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	fresh, freshBody := get()
	if fresh.StatusCode != 200 || fresh.Header.Get("Warning") != "" || fresh.Header.Get("Age") != "" {
		t.Fatalf("the menu with the database up: %d, Warning %q, Age %q", fresh.StatusCode, fresh.Header.Get("Warning"), fresh.Header.Get("Age"))
	}

	cat.down.Store(true)
	cat.version.Store(2) // a change the replica cannot build
	for _, how := range []string{"version unreadable", "database known down"} {
		if how == "database known down" {
			cat.down.Store(false) // the version reads (memory), the database fails
			cat.version.Store(1)
			stale.Store(true)
		}
		res, body := get()
		if res.StatusCode != 200 || body != freshBody {
			t.Fatalf("%s: %d %s, want the last good copy", how, res.StatusCode, body)
		}
		if w := res.Header.Get("Warning"); w != `110 - "Response is Stale"` {
			t.Errorf("%s: Warning %q", how, w)
		}
		if age, err := strconv.Atoi(res.Header.Get("Age")); err != nil || age < 0 {
			t.Errorf("%s: Age %q", how, res.Header.Get("Age"))
		}
	}
}

// Without a good copy to serve, a lost database is a 503 with Retry-After.
func TestTheMenuWithoutACopyIs503WhileTheDatabaseIsDown(t *testing.T) {
	cat := &failingCatalog{}
	cat.down.Store(true)
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Config{Catalog: cat}))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/v1/menu")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("%d, Retry-After %q; want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
}

// copyCatalog answers item reads (from a cache, or another shard's copy
// of the catalog) whatever the database does.
type copyCatalog struct{ failingCatalog }

func (*copyCatalog) Item(_ context.Context, id int64) (*shop.Item, error) {
	return &shop.Item{ID: id, Name: "Margherita", PriceCents: 900, Available: true, Stock: 3}, nil
}

func (*copyCatalog) ListItems(context.Context, shop.ItemFilter) (*shop.ItemPage, error) {
	return &shop.ItemPage{Items: []shop.Item{{ID: 1, Name: "Margherita", PriceCents: 900, Available: true, Stock: 3}}}, nil
}

// An item page or a page of the listing answered while the catalog's
// database cannot be read says it is not current (Warning 110, as the
// menu's last good copy does); while it can, it says nothing. Before,
// item pages never said so.
func TestItemPagesAnsweredWhileTheDatabaseCannotBeReadAreMarkedStale(t *testing.T) {
	var stale atomic.Bool
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Config{Catalog: &copyCatalog{}, Stale: stale.Load}))
	defer srv.Close()
	for _, down := range []bool{false, true} {
		stale.Store(down)
		for _, path := range []string{"/v1/items/1", "/v1/items"} {
			res, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			want := ""
			if down {
				want = `110 - "Response is Stale"`
			}
			if res.StatusCode != 200 || res.Header.Get("Warning") != want {
				t.Errorf("GET %s, database readable %v: %d, Warning %q; want 200, Warning %q", path, !down, res.StatusCode, res.Header.Get("Warning"), want)
			}
		}
	}
}
