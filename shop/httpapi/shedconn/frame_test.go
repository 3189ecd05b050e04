package shedconn_test

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop/httpapi/shedconn"
)

// smuggling are request heads the fast path must leave to net/http:
// each is read differently by some server or proxy, or is one net/http
// refuses, or carries something the fast path does not answer for.
var smuggling = []struct{ name, head string }{
	{"length and chunked", "PUT /shed/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{"chunked", "PUT /shed/1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{"two equal lengths", "PUT /shed/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"},
	{"two lengths", "PUT /shed/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\n"},
	{"length list", "PUT /shed/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n"},
	{"signed length", "PUT /shed/1 HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n"},
	{"length with leading zero", "PUT /shed/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 03\r\n\r\n"},
	{"length past the bound", "PUT /shed/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 65537\r\n\r\n"},
	{"obs-fold", "GET /shed/1 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"},
	{"space before the colon", "GET /shed/1 HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\n"},
	{"bare LF", "GET /shed/1 HTTP/1.1\nHost: a\n\n"},
	{"bare LF inside", "GET /shed/1 HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n"},
	{"bare CR", "GET /shed/1 HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n"},
	{"no host", "GET /shed/1 HTTP/1.1\r\n\r\n"},
	{"two hosts", "GET /shed/1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
	{"HTTP/1.0", "GET /shed/1 HTTP/1.0\r\nHost: a\r\n\r\n"},
	{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\n"},
	{"lower-case method", "get /shed/1 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"HEAD", "HEAD /shed/1 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"absolute form", "GET http://a/shed/1 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"two slashes", "GET //shed/1 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"dot segment", "GET /shed/../1 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"escaped", "GET /shed/%2e%2e/1 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"expect", "PUT /shed/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"},
	{"upgrade", "GET /shed/1 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
	{"connection close", "GET /shed/1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"},
	{"control character", "GET /shed/1 HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n"},
	{"non-ASCII value", "GET /shed/1 HTTP/1.1\r\nHost: a\r\nX-A: \xff\r\n\r\n"},
	{"two spaces", "GET  /shed/1 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{"bad host", "GET /shed/1 HTTP/1.1\r\nHost: a b\r\n\r\n"},
}

// understood are heads the fast path reads, and what it reads of them.
var understood = []struct {
	head string
	want shedconn.Request
}{
	{"GET /v1/menu HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", shedconn.Request{Method: "GET", Path: "/v1/menu"}},
	{"GET /v1/items?limit=20&after=3 HTTP/1.1\r\nhost: a\r\nAccept: */*\r\n\r\n", shedconn.Request{Method: "GET", Path: "/v1/items"}},
	{"PUT /v1/cart/items/7 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x.y\r\ncontent-length: 15\r\nx-request-id:  abc-1 \r\nX-Request-Id: second\r\n\r\n",
		shedconn.Request{Method: "PUT", Path: "/v1/cart/items/7", ContentLength: 15, RequestID: "abc-1"}},
	{"DELETE /v1/cart/ HTTP/1.1\r\nHost:\r\nContent-Length: 0\r\n\r\n", shedconn.Request{Method: "DELETE", Path: "/v1/cart/"}},
}

func TestParseHead(t *testing.T) {
	for _, tc := range smuggling {
		t.Run(tc.name, func(t *testing.T) {
			var r shedconn.Request
			if shedconn.ParseHead([]byte(tc.head), &r) {
				t.Fatalf("ParseHead(%q) = true, %+v; want false (left to net/http)", tc.head, r)
			}
		})
	}
	for _, tc := range understood {
		var r shedconn.Request
		if !shedconn.ParseHead([]byte(tc.head), &r) || r != tc.want {
			t.Errorf("ParseHead(%q): %+v; want %+v", tc.head, r, tc.want)
		}
		// net/http reads it the same way.
		sameAsNetHTTP(t, []byte(tc.head), r)
	}
}

// sameAsNetHTTP fails unless net/http reads head as the request r.
func sameAsNetHTTP(t *testing.T, head []byte, r shedconn.Request) {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		t.Fatalf("the fast path read %q as %+v; net/http refuses it: %v", head, r, err)
	}
	if req.Method != r.Method || req.URL.Path != r.Path || req.URL.RawPath != "" || req.ContentLength != r.ContentLength ||
		len(req.TransferEncoding) > 0 || req.Close || req.Header.Get("X-Request-Id") != r.RequestID ||
		!req.ProtoAtLeast(1, 1) || strings.Contains(req.RequestURI, "://") {
		t.Fatalf("the fast path read %q as %+v; net/http as %s %q (raw %q) length %d, coding %v, close %v, id %q, %s",
			head, r, req.Method, req.URL.Path, req.URL.RawPath, req.ContentLength, req.TransferEncoding, req.Close, req.Header.Get("X-Request-Id"), req.Proto)
	}
}

// FuzzParseHead: whatever head the fast path reads, net/http reads as
// the same request (method, path, body length, request id), with no
// transfer coding and keep-alive.
//
//	go test ./shop/httpapi/shedconn -run '^$' -fuzz FuzzParseHead -fuzztime 60s
func FuzzParseHead(f *testing.F) {
	for _, tc := range smuggling {
		f.Add([]byte(tc.head))
	}
	for _, tc := range understood {
		f.Add([]byte(tc.head))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		var r shedconn.Request
		if shedconn.ParseHead(head, &r) {
			sameAsNetHTTP(t, head, r)
		}
	})
}
