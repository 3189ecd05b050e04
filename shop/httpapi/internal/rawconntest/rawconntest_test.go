package rawconntest_test

import (
	"testing"

	"github.com/perfscale/perfscale/shop/httpapi/internal/rawconntest"
)

func TestStripDate(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"one answer", "HTTP/1.1 200 OK\r\nDate: Mon, 07 Dec 2026 19:50:00 GMT\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"two answers", "HTTP/1.1 503 x\r\nDate: a\r\n\r\nHTTP/1.1 200 OK\r\nDate: b\r\nX: y\r\n\r\n", "HTTP/1.1 503 x\r\n\r\nHTTP/1.1 200 OK\r\nX: y\r\n\r\n"},
		{"none", "HTTP/1.1 200 OK\r\n\r\nbody", "HTTP/1.1 200 OK\r\n\r\nbody"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rawconntest.StripDate(tc.in); got != tc.want {
				t.Errorf("StripDate(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
