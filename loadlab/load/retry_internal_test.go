package load

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// reloadingServer answers every request 200 on keep-alive connections,
// but when armed it does what nginx's old workers do on a reload: the
// next request that arrives on a connection which already served one
// meets a closed socket (a reset, before any byte of an answer). With
// resetFresh armed, the first request of a new connection is reset
// instead.
type reloadingServer struct {
	ln                net.Listener
	armed, resetFresh atomic.Bool
	mu                sync.Mutex
	received          map[string]int // by method, resets included
}

func newReloadingServer(t *testing.T) *reloadingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &reloadingServer{ln: ln, received: map[string]int{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(conn)
		}
	}()
	return s
}

func (s *reloadingServer) serve(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	for served := 0; ; served++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		s.mu.Lock()
		s.received[req.Method]++
		s.mu.Unlock()
		if (served > 0 && s.armed.CompareAndSwap(true, false)) || (served == 0 && s.resetFresh.CompareAndSwap(true, false)) {
			conn.(*net.TCPConn).SetLinger(0) // close with a reset
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

func (s *reloadingServer) count(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received[method]
}

// A request reset on a reused keep-alive connection before any byte of
// its answer (what an nginx reload does to the idle connections of its
// old workers) is sent again when its method is idempotent (RFC 9110
// 9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE), by both clients: Go's
// transport and fasthttp retry only some of them by themselves. A POST
// is not retried, and neither is a request reset on a new connection.
func TestARequestResetOnAReusedConnectionIsRetriedWhenIdempotent(t *testing.T) {
	for _, client := range []Client{ClientFastHTTP, ClientNetHTTP} {
		for _, tt := range []struct {
			method  string
			retried bool
		}{
			{"GET", true}, {"PUT", true}, {"DELETE", true}, {"POST", false},
		} {
			t.Run(string(client)+"/"+tt.method, func(t *testing.T) {
				s := newReloadingServer(t)
				snd := newSender(client, 4, 10*time.Second)
				defer snd.close()
				base := "http://" + s.ln.Addr().String()
				ctx := context.Background()
				if out, _ := snd.send(ctx, &Request{Method: "GET", URL: base + "/warm"}, false, nil); out.kind != okKind {
					t.Fatalf("warm-up: %+v", out)
				}
				before := s.count(tt.method)
				s.armed.Store(true)
				req := &Request{Method: tt.method, URL: base + "/cart/items/1", Body: []byte(`{"quantity":1}`)}
				out, _ := snd.send(ctx, req, false, nil)
				sent := s.count(tt.method) - before
				if tt.retried && (out.kind != okKind || out.status != 200 || sent != 2) {
					t.Fatalf("%s reset on a reused connection: %+v after %d sent, want 200 after 2 (retried once)", tt.method, out, sent)
				}
				if !tt.retried && (out.kind != connectionKind || sent != 1) {
					t.Fatalf("%s reset on a reused connection: %+v after %d sent, want a connection error after 1 (never retried)", tt.method, out, sent)
				}

				// On a new connection, a reset is the target's failure, not
				// connection reuse: counted, not retried.
				snd.close()
				before = s.count(tt.method)
				s.resetFresh.Store(true)
				out, _ = snd.send(ctx, req, false, nil)
				if sent := s.count(tt.method) - before; out.kind != connectionKind || sent != 1 {
					t.Fatalf("%s reset on a new connection: %+v after %d sent, want a connection error after 1", tt.method, out, sent)
				}
			})
		}
	}
}

func newSender(c Client, conns int, timeout time.Duration) sender {
	if c == ClientNetHTTP {
		return newNetSender(conns, timeout)
	}
	return newFastSender(conns, timeout)
}
