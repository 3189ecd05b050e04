// Package rawconntest is a test helper for the HTTP server's tests that must
// see the bytes on the wire: pipelined requests in one write, answers
// written by the connection's fast path rather than net/http. It is
// imported by tests only.
package rawconntest

import (
	"io"
	"net"
	"regexp"
	"testing"
	"time"
)

// Exchange writes requests on a new connection to addr in one write and
// returns every byte the server writes until it closes, its Date header
// lines taken out (they differ from one second to the next). The last
// request should say Connection: close, or the server close by itself: a
// client that half-closes may be taken for one gone. A read waits at most
// a minute, so a server that never closes fails the test rather than
// hanging it.
func Exchange(t testing.TB, addr, requests string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, requests); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Minute)) //nolint:errcheck // a failed read says
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answers: %v (so far %q)", err, got)
	}
	return StripDate(string(got))
}

// StripDate takes the Date header lines out of raw answers.
func StripDate(answers string) string {
	return dateLine.ReplaceAllString(answers, "")
}

var dateLine = regexp.MustCompile(`Date: [^\r]*\r\n`)
