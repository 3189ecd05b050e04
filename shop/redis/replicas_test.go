package redis_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/cache"
	"github.com/perfscale/perfscale/shop/httpapi"
	shopredis "github.com/perfscale/perfscale/shop/redis"
	"github.com/perfscale/perfscale/shop/redis/redistest"
	"github.com/perfscale/perfscale/shop/sqlite"
)

// countingStore counts the menu builds that reach the database.
type countingStore struct {
	*sqlite.Store
	menus atomic.Int64
}

func (c *countingStore) Menu(ctx context.Context) (*shop.Menu, error) {
	c.menus.Add(1)
	return c.Store.Menu(ctx)
}

type replica struct {
	url   string
	store *countingStore
}

// newReplica composes one replica as cmd/shop does with --redis: memory,
// then Redis, then the (shared) database. Its version poll is an hour, so
// only the pub/sub announcement can bring another replica's change.
func newReplica(t *testing.T, store *sqlite.Store, redisURL string) *replica {
	t.Helper()
	ctx := t.Context()
	r := &replica{store: &countingStore{Store: store}}
	client, err := shopredis.Open(ctx, shopredis.Config{URL: redisURL, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	go client.Run(ctx)
	version, err := cache.NewVersion(ctx, r.store, cache.VersionConfig{PollInterval: time.Hour, Feed: client})
	if err != nil {
		t.Fatal(err)
	}
	go version.Run(ctx)
	layer := shopredis.NewStore(r.store, client, version.CatalogVersion)
	cached, err := cache.New(ctx, layer, cache.Config{Version: version})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Config{
		Catalog: cached, Sessions: cached, Carts: layer, Ordering: layer.Ordering(cached.Ordering(shop.NewOrderDesk(store, nil, nil))),
		Health: store, AdminToken: "admin", SharedMenus: client, OrderHistory: store,
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func get(t *testing.T, url string) (etag string, body []byte) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ = io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, body)
	}
	return res.Header.Get("ETag"), body
}

// waitSubscribers waits until n processes listen on the catalog channel,
// so that an announcement cannot go out before a replica listens.
func waitSubscribers(t *testing.T, redisURL string, n int64) {
	t.Helper()
	opt, _ := goredis.ParseURL(redisURL)
	rdb := goredis.NewClient(opt)
	defer rdb.Close()
	testwait.Eventually(t, 30*time.Second, func() error {
		m, err := rdb.PubSubNumSub(t.Context(), "shop:catalog").Result()
		if err == nil && m["shop:catalog"] >= n {
			return nil
		}
		return fmt.Errorf("fewer than %d subscribers on shop:catalog: %v %v", n, m, err)
	})
}

// TestMenuSharedAndChangesSeenAcrossReplicas: replica A builds the menu of
// a catalog version, replica B serves the same bytes from Redis without
// building it; an admin change on A is seen by B's next read through the
// pub/sub announcement (B's own poll is an hour away).
func TestMenuSharedAndChangesSeenAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	store := openStore(t)
	a, b := newReplica(t, store, srv.URL()), newReplica(t, store, srv.URL())
	waitSubscribers(t, srv.URL(), 2)

	etagA, bodyA := get(t, a.url+"/v1/menu")
	etagB, bodyB := get(t, b.url+"/v1/menu")
	if etagA != etagB || string(bodyA) != string(bodyB) {
		t.Fatalf("replicas serve different menus: %s vs %s", etagA, etagB)
	}
	if a.store.menus.Load() != 1 || b.store.menus.Load() != 0 {
		t.Fatalf("menu builds from the database: a %d, b %d; want 1 and 0 (b fetches a's bytes from Redis)",
			a.store.menus.Load(), b.store.menus.Load())
	}

	req, _ := http.NewRequest("PUT", a.url+"/v1/admin/items/5", strings.NewReader(`{"price_cents": 4321}`))
	req.Header.Set("Authorization", "Bearer admin")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("admin change: %d", res.StatusCode)
	}
	changed := time.Now()
	// Bounded wait for the announcement to arrive; the figure is logged,
	// not asserted (the machine is shared).
	testwait.Eventually(t, 30*time.Second, func() error {
		etag, body := get(t, b.url+"/v1/menu")
		if etag == etagB {
			return errors.New("replica b still serves the old menu (its poll is an hour: the announcement was lost)")
		}
		if !strings.Contains(string(body), `"price_cents":4321`) {
			t.Fatalf("b's new menu %s lacks the new price", etag)
		}
		return nil
	})
	t.Logf("replica b saw replica a's change within %v of a's answer", time.Since(changed).Round(time.Millisecond))
}
