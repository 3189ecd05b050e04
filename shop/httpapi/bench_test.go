package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop"
)

// The hot handlers, as cmd/shop composes them (cache layer in front of the
// timed SQLite store), called without a network so that time and
// allocations are the handler's own. Besides wall time it reports the
// process's CPU time per request (cpu-ns/op), which other processes on a
// shared machine disturb much less. Run with:
//
//	go test ./shop/httpapi -run '^$' -bench Handler -benchmem
func BenchmarkHandler(b *testing.B) {
	h, be, _ := compose(b, options{}, nil)
	token, hash := shop.NewToken()
	sess, err := be.Store.CreateSession(b.Context(), hash)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := be.Store.SetCartItem(b.Context(), sess.ID, 3, 1); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, method, path, accept, body string
		auth                             bool
	}{
		{name: "menu", method: "GET", path: "/v1/menu"},
		{name: "menu-br", method: "GET", path: "/v1/menu", accept: "gzip, deflate, br"},
		{name: "item", method: "GET", path: "/v1/items/7"},
		{name: "list", method: "GET", path: "/v1/items?limit=20"},
		{name: "cart", method: "GET", path: "/v1/cart", auth: true},
		{name: "cart-update", method: "PUT", path: "/v1/cart/items/7", body: `{"quantity": 2}`, auth: true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			start := processCPU(b)
			for b.Loop() {
				var body *strings.Reader
				if bc.body != "" {
					body = strings.NewReader(bc.body)
				}
				var r *http.Request
				if body != nil {
					r = httptest.NewRequest(bc.method, bc.path, body)
					r.Header.Set("Content-Type", "application/json")
				} else {
					r = httptest.NewRequest(bc.method, bc.path, nil)
				}
				if bc.accept != "" {
					r.Header.Set("Accept-Encoding", bc.accept)
				}
				if bc.auth {
					r.Header.Set("Authorization", "Bearer "+token)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("%s %s: %d %s", bc.method, bc.path, w.Code, w.Body)
				}
			}
			b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is this process's user and system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
