//go:build linux

package postgres

import (
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// pgx's background reader waits in a read of the socket while the
// connection sits idle in the pool (it starts when a write is slow and
// stops only when the server sends something). A look at that connection
// before it is handed out must not wait for that read: it once did, and an
// Acquire (a worker's job, a request) hung until the server spoke.
func TestPeekingAtAnIdleConnectionDoesNotWaitForAReaderOfIt(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	defer server.Close()

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		backgroundReaderOf(client)
	}()
	waitUntilParkedInARead(t, "backgroundReaderOf")

	peeked := make(chan idleState, 1)
	go func() {
		state, _ := peekIdle(client)
		peeked <- state
	}()
	select {
	case state := <-peeked:
		if state != idleQuiet {
			t.Errorf("a connection nothing was sent on: %v, want quiet", state)
		}
	case <-time.After(30 * time.Second): // a hang guard, not a measurement
		t.Fatal("the peek waited for the other goroutine's read")
	}
	if _, err := server.Write([]byte{'Z'}); err != nil {
		t.Fatal(err)
	}
	<-readDone
}

// backgroundReaderOf reads c as pgx's background reader does: a blocking
// read, holding the socket's read lock while it waits.
func backgroundReaderOf(c net.Conn) {
	var b [1]byte
	_, _ = c.Read(b[:])
}

// waitUntilParkedInARead returns once a goroutine running fn is parked in
// the network poller (IO wait), that is, inside its read.
func waitUntilParkedInARead(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "[IO wait") && strings.Contains(g, fn) {
				return
			}
		}
		if t.Context().Err() != nil {
			t.Fatal("the reader never waited in its read")
		}
		runtime.Gosched()
	}
}
