package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/perfscale/perfscale/shop"
)

// brokenStore fails the way a real store can fail: with internal errors
// whose text must not reach clients, with a panic (a bug), with a timeout,
// or by being unreachable. Only these failures are injected; everything
// else about the handler is real.
type brokenStore struct {
	shop.Store
	mode string
}

func (b brokenStore) CatalogVersion(ctx context.Context) (int64, error) {
	switch b.mode {
	case "panic":
		panic("bug in the store")
	case "timeout":
		return 0, fmt.Errorf("catalog version: %w", context.DeadlineExceeded)
	}
	return 0, fmt.Errorf("catalog version: %w", errors.New(`SQL logic error: no such table: catalog_version (1) at /var/lib/shop/shop.db`))
}

func (b brokenStore) Ping(context.Context) error {
	return errors.New("dial tcp 10.0.0.7:5432: connection refused")
}

func TestFailuresBecomeProblemsWithoutLeakingCauses(t *testing.T) {
	tests := []struct {
		mode   string
		path   string
		status int
		detail string
	}{
		{"internal", "/v1/menu", 500, "internal error"},
		{"panic", "/v1/menu", 500, "internal error"},
		{"timeout", "/v1/menu", 503, "took too long"},
		{"internal", "/readyz", 503, "store is not reachable"},
	}
	for _, tt := range tests {
		t.Run(tt.mode+" "+tt.path, func(t *testing.T) {
			var logs bytes.Buffer
			reg := NewRegistry()
			h := NewHandler(Config{Catalog: brokenStore{mode: tt.mode}, Health: brokenStore{mode: tt.mode}, Registry: reg, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", tt.path, nil))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tt.status || rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("status %d %q, want %d problem: %s", rec.Code, rec.Header().Get("Content-Type"), tt.status, body)
			}
			if !strings.Contains(string(body), tt.detail) {
				t.Fatalf("body %s lacks %q", body, tt.detail)
			}
			for _, secret := range []string{"SQL", "/var/lib", "10.0.0.7", "bug in the store"} {
				if strings.Contains(string(body), secret) {
					t.Fatalf("the response leaks %q: %s", secret, body)
				}
			}
			if tt.status == 500 && !strings.Contains(logs.String(), `"level":"ERROR"`) {
				t.Fatalf("the cause was not logged: %s", logs.String())
			}
			// The request is counted and no longer in flight, panic or not.
			m := httptest.NewRecorder()
			promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(m, httptest.NewRequest("GET", "/metrics", nil))
			if want := `shop_http_requests_in_flight{route="GET ` + tt.path + `"} 0`; !strings.Contains(m.Body.String(), want) {
				t.Fatalf("metrics lack %s", want)
			}
			if tt.status == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
		})
	}
}
