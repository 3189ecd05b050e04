package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andybalholm/brotli"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/httpapi"
	"github.com/perfscale/perfscale/shop/seed"
)

// blockingCatalog is a catalog whose version is known at once and whose
// menu build blocks until released, counting the builds.
type blockingCatalog struct {
	shop.CatalogService // only the menu's two methods are called
	versionCalls        atomic.Int64
	allAsked            chan struct{} // closed when want requests asked the version
	want                int64
	builds              atomic.Int64
	building            chan struct{} // closed when the first build starts
	release             chan struct{}
	once                sync.Once
}

func (c *blockingCatalog) CatalogVersion(context.Context) (int64, error) {
	if c.versionCalls.Add(1) == c.want {
		close(c.allAsked)
	}
	return 7, nil
}

func (c *blockingCatalog) Menu(context.Context) (*shop.Menu, error) {
	c.builds.Add(1)
	c.once.Do(func() { close(c.building) })
	<-c.release
	m := &shop.Menu{Version: 7}
	for _, it := range seed.Items(40) {
		m.Categories = append(m.Categories, shop.MenuCategory{Name: it.Category, Items: []shop.MenuItem{{ID: it.ID, Name: it.Name, Category: it.Category, Available: true}}})
	}
	return m, nil
}

// TestColdMenuIsBuiltOnce: 200 concurrent reads of a cold menu make one
// store build; the rest wait for it and get the same document.
func TestColdMenuIsBuiltOnce(t *testing.T) {
	const n = 200
	cat := &blockingCatalog{want: n, allAsked: make(chan struct{}), building: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Config{Catalog: cat}))
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	bodies := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := client.Get(srv.URL + "/v1/menu")
			if err != nil {
				errs[i] = err
				return
			}
			defer res.Body.Close()
			bodies[i], errs[i] = io.ReadAll(res.Body)
			if res.StatusCode != http.StatusOK {
				t.Errorf("request %d: status %d: %s", i, res.StatusCode, bodies[i])
			}
		})
	}
	// Every request has asked for the version and found no menu, and one
	// build is under way: only now may it finish.
	<-cat.allAsked
	<-cat.building
	close(cat.release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !bytes.Equal(bodies[i], bodies[0]) {
			t.Fatalf("request %d got another document", i)
		}
	}
	if got := cat.builds.Load(); got != 1 {
		t.Errorf("%d store builds for %d concurrent cold reads, want 1", got, n)
	}
}

// TestMenuContentCodings: the menu comes in brotli, gzip or identity as
// Accept-Encoding asks, each with its own strong ETag, Vary and the same
// document inside, and each revalidates to 304.
func TestMenuContentCodings(t *testing.T) {
	a := newAPI(t, options{})
	plain := a.do(req{method: "GET", path: "/v1/menu", header: map[string]string{"Accept-Encoding": "identity"}})
	if plain.status != 200 || plain.header.Get("Content-Encoding") != "" {
		t.Fatalf("identity: %d, Content-Encoding %q", plain.status, plain.header.Get("Content-Encoding"))
	}
	etags := map[string]string{}
	for _, tc := range []struct {
		accept, coding string
		decode         func(io.Reader) (io.Reader, error)
	}{
		{"gzip, deflate, br", "br", func(r io.Reader) (io.Reader, error) { return brotli.NewReader(r), nil }},
		{"gzip", "gzip", func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
		{"br;q=0.5, gzip;q=0.8", "gzip", func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
		{"identity", "", nil},
	} {
		t.Run(tc.accept, func(t *testing.T) {
			r := a.do(req{method: "GET", path: "/v1/menu", header: map[string]string{"Accept-Encoding": tc.accept}})
			if r.status != 200 {
				t.Fatalf("status %d", r.status)
			}
			if got := r.header.Get("Content-Encoding"); got != tc.coding {
				t.Fatalf("Content-Encoding %q, want %q", got, tc.coding)
			}
			if v := r.header.Get("Vary"); v != "Accept-Encoding" {
				t.Errorf("Vary %q", v)
			}
			if cc := r.header.Get("Cache-Control"); cc != "public, max-age=1, stale-while-revalidate=1" {
				t.Errorf("Cache-Control %q", cc)
			}
			body := r.body
			if tc.decode != nil {
				if len(body) >= len(plain.body) {
					t.Errorf("%s body is %d bytes, identity %d: not compressed", tc.coding, len(body), len(plain.body))
				}
				dr, err := tc.decode(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(dr); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(body, plain.body) {
				t.Fatalf("decoded %s body differs from the identity body", tc.coding)
			}
			etag := r.header.Get("ETag")
			if prev, ok := etags[etag]; ok && prev != tc.coding {
				t.Errorf("ETag %s names both %q and %q", etag, prev, tc.coding)
			}
			etags[etag] = tc.coding
			nm := a.do(req{method: "GET", path: "/v1/menu", header: map[string]string{"Accept-Encoding": tc.accept, "If-None-Match": etag}})
			if nm.status != http.StatusNotModified || len(nm.body) != 0 {
				t.Errorf("revalidation: %d with %d bytes, want 304 without a body", nm.status, len(nm.body))
			}
		})
	}
}

// TestSlowMenuBuildOutlivesTheRequest: a build slower than the request's
// deadline answers that request 503 but is not abandoned: it finishes, and
// the next request is served from it without a second build.
func TestSlowMenuBuildOutlivesTheRequest(t *testing.T) {
	cat := &blockingCatalog{want: 1, allAsked: make(chan struct{}), building: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Config{Catalog: cat, RequestTimeout: 2 * time.Second}))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/v1/menu") // the build blocks until released
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("first request: status %d, want 503 while the menu is built", res.StatusCode)
	}
	close(cat.release)
	res, err = http.Get(srv.URL + "/v1/menu")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("second request: status %d, want 200", res.StatusCode)
	}
	if got := cat.builds.Load(); got != 1 {
		t.Errorf("%d builds, want 1", got)
	}
}

// pingable is a store that always answers its ping.
type pingable struct{}

func (pingable) Ping(context.Context) error { return nil }

// TestReadinessWaitsForTheFirstMenu: /readyz says ready only once the menu
// is built, so that the first menu request after it builds nothing. Built
// by the first menu request instead, its compression held a 0.1-core
// replica's CPU for most of a second as the load began, and admission
// read the browsing it could not serve meanwhile as an overload
// (overload.sh: 0.5x refused 179 requests, all in the first second).
func TestReadinessWaitsForTheFirstMenu(t *testing.T) {
	cat := &blockingCatalog{allAsked: make(chan struct{}), building: make(chan struct{}), release: make(chan struct{})}
	close(cat.release) // builds at once
	h := httpapi.NewHandler(httpapi.Config{Catalog: cat, Health: pingable{}})
	get := func(path string) int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w.Code
	}
	if code := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz: %d, want 200", code)
	}
	if got := cat.builds.Load(); got != 1 {
		t.Fatalf("%d menu builds when /readyz said ready, want 1: the first menu request would build it", got)
	}
	for range 2 {
		if code := get("/readyz"); code != http.StatusOK {
			t.Fatalf("/readyz again: %d, want 200", code)
		}
		if code := get("/v1/menu"); code != http.StatusOK {
			t.Fatalf("/v1/menu: %d, want 200", code)
		}
	}
	if got := cat.builds.Load(); got != 1 {
		t.Errorf("%d menu builds after readiness and two menu requests, want 1", got)
	}
}

// TestAFailedMenuBuildLeavesTheReplicaReady: readiness waits for the
// menu's first build, not for its success: a menu that cannot be built
// now is the menu's requests' error (and a retry), not a replica to take
// out of the balancer.
func TestAFailedMenuBuildLeavesTheReplicaReady(t *testing.T) {
	cat := &failingCatalog{}
	cat.down.Store(true)
	h := httpapi.NewHandler(httpapi.Config{Catalog: cat, Health: pingable{}})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("/readyz with a menu that cannot be built: %d %s, want 200", w.Code, w.Body)
	}
}
