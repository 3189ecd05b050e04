//go:build !race

// The race detector instruments allocations: counts taken under it say
// nothing of the build that runs.

package shedconn_test

import (
	"testing"

	"github.com/perfscale/perfscale/shop/httpapi/shedconn"
)

// The fast path reads a head without allocating but for the strings it
// keeps (the path, and the request id when one is sent).
func TestParseHeadAllocatesOnlyThePath(t *testing.T) {
	head := []byte("PUT /v1/cart/items/7 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer x.y\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n")
	var r shedconn.Request
	if n := testing.AllocsPerRun(100, func() { shedconn.ParseHead(head, &r) }); n > 1 {
		t.Fatalf("%.0f allocations a head, want 1 (the path)", n)
	}
}
