package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/httpapi"
)

// refusingHandler is the real handler with split admission control whose
// one write slot a checkout holds until the test or benchmark ends, so
// every cart update with the returned token is refused before any work:
// at once, as under a sustained overload, because a cart update answered
// first gave the bound its service time (a bound that has none yet queues
// a request, and refuses it once its wait is spent).
func refusingHandler(tb testing.TB) (http.Handler, string) {
	tb.Helper()
	held := &heldOrders{entered: make(chan struct{}, 16), release: make(chan struct{})}
	h, be, _ := compose(tb, options{
		admission:      httpapi.AdmissionConfig{On: true, Split: true, ReadSlots: 1, WriteSlots: 1, MaxWait: time.Nanosecond, Sustained: -1},
		requestTimeout: time.Minute,
		orders:         func(s shop.Ordering) shop.Ordering { held.Ordering = s; return held },
	}, nil)
	token, hash := shop.NewToken()
	sess, err := be.Store.CreateSession(tb.Context(), hash)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := be.Store.SetCartItem(tb.Context(), sess.ID, 3, 1); err != nil {
		tb.Fatal(err)
	}
	first := httptest.NewRecorder()
	h.ServeHTTP(first, cartUpdate(token))
	if first.Code != http.StatusOK {
		tb.Fatalf("a cart update with the write bound free: %d %s, want 200", first.Code, first.Body)
	}
	done := make(chan int, 1)
	go func() {
		r := httptest.NewRequest("POST", "/v1/orders", strings.NewReader(`{"customer_name": "Ada Lovelace", "email": "ada@example.com"}`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("Idempotency-Key", "held-1")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		done <- w.Code
	}()
	<-held.entered
	tb.Cleanup(func() {
		close(held.release)
		if code := <-done; code != http.StatusCreated {
			tb.Errorf("the held checkout: %d, want 201", code)
		}
	})
	return h, token
}

// cartUpdate is a cart update with token, its body never read when it is
// refused.
func cartUpdate(token string) *http.Request {
	r := httptest.NewRequest("PUT", "/v1/cart/items/7", strings.NewReader(`{"quantity": 2}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

// BenchmarkRefusal is what a request admission control refuses costs the
// handler (no network), beside BenchmarkHandler's served requests: at ten
// times the capacity a replica refuses nine requests for each one it
// serves, so a refusal must cost a small part of a served request
// (scripts/overload.sh's arithmetic).
func BenchmarkRefusal(b *testing.B) {
	h, token := refusingHandler(b)
	b.ReportAllocs()
	start := processCPU(b)
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, cartUpdate(token))
		if w.Code != http.StatusServiceUnavailable {
			b.Fatalf("a cart update with the write bound held: %d %s, want 503", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
}
