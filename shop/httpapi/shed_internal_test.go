package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// writeShed writes, byte for byte and header for header, what
// writeProblem writes for the refusal, whatever the path and request id:
// the fast path changes the cost, not the answer.
func TestARefusalIsTheProblemWriteProblemWrites(t *testing.T) {
	paths := []string{"/v1/menu", "/v1/items/7", "/v1/cart/items/12", "", "/a\"b", `/back\slash`, "/<script>&", "/caf\u00e9", "/\u2028", "/tab\there", "/\x00", "/\xff"}
	ids := []string{"", "4f2a9c0e1b7d3a65", "client-id_1.2", "a<b"}
	for _, path := range paths {
		for _, id := range ids {
			r := httptest.NewRequest("GET", "/", nil)
			r.URL = &url.URL{Path: path}
			if id != "" {
				r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
			}
			want, got := httptest.NewRecorder(), httptest.NewRecorder()
			writeProblem(want, r, shedProblem)
			writeShed(got, r, id)
			if got.Code != http.StatusServiceUnavailable || got.Code != want.Code {
				t.Errorf("path %q, id %q: status %d, want %d", path, id, got.Code, want.Code)
			}
			if got.Body.String() != want.Body.String() {
				t.Errorf("path %q, id %q: body\n%s\nwant\n%s", path, id, got.Body, want.Body)
			}
			for _, h := range []string{"Content-Type", "Content-Length"} {
				if got.Header().Get(h) != want.Header().Get(h) {
					t.Errorf("path %q, id %q: %s %q, want %q", path, id, h, got.Header().Get(h), want.Header().Get(h))
				}
			}
		}
	}
}

// A refusal drops the validators and caching headers a handler may have
// set before it, as writeProblem does.
func TestARefusalDropsCachingHeaders(t *testing.T) {
	w := httptest.NewRecorder()
	w.Header().Set("ETag", `"v1"`)
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeShed(w, httptest.NewRequest("GET", "/v1/menu", nil), "")
	if w.Header().Get("ETag") != "" || w.Header().Get("Cache-Control") != "" {
		t.Errorf("a refusal kept %v", w.Header())
	}
}
