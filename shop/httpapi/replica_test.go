package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/perfscale/perfscale/shop/httpapi"
)

func TestEveryResponseNamesTheReplica(t *testing.T) {
	a := newAPI(t, options{items: nil})
	s := a.store
	inner := httpapi.NewHandler(httpapi.Config{Catalog: s, Sessions: s, Carts: s, Ordering: a.orders, Health: s})
	srv := httptest.NewServer(httpapi.WithReplica("replica-7", inner))
	t.Cleanup(srv.Close)
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/v1/menu", 200},
		{"GET", "/readyz", 200},
		{"GET", "/v1/items/999999", 404}, // a problem from a handler
		{"GET", "/v2/nothing", 404},      // no route at all
		{"DELETE", "/v1/menu", 405},
		{"GET", "/v1/cart", 401},
	} {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tt.status || res.Header.Get("X-Replica") != "replica-7" {
			t.Errorf("%s %s: %d, X-Replica %q; want %d and replica-7", tt.method, tt.path, res.StatusCode, res.Header.Get("X-Replica"), tt.status)
		}
	}
}
