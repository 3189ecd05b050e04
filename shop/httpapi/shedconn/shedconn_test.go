package shedconn_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perfscale/perfscale/shop/httpapi/internal/rawconntest"
	"github.com/perfscale/perfscale/shop/httpapi/shedconn"
)

// The tests' server refuses every request whose path starts with /shed
// (503, its body the path) and answers others 200 with their body's
// length; a refusal hands its connection to the fast path, whose judge
// refuses the same requests with the same answer but an X-Via header that
// says which path wrote it.

func refusal(path, via string) []byte {
	body := "refused " + path
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nContent-Type: text/plain\r\nX-Via: " + via + "\r\n\r\n" + body)
}

type judge struct{}

func (judge) Refuse(dst []byte, r *shedconn.Request) ([]byte, bool) {
	if !strings.HasPrefix(r.Path, "/shed") {
		return dst, false
	}
	return append(dst, refusal(r.Path, "fast")...), true
}

func handler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Via", "net/http")
	w.Header().Set("Content-Type", "text/plain")
	if strings.HasPrefix(r.URL.Path, "/shed") {
		// Refused before any work, as httpapi refuses: the body unread.
		body := "refused " + r.URL.Path
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, body) //nolint:errcheck // the client sees
		shedconn.Take(w, r, func() shedconn.Judge {
			// Before the answer is flushed: a test that reads it
			// sees the count.
			taken.Add(1)
			return judge{}
		})
		return
	}
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "answered %s %s body %d", r.Method, r.URL.Path, n)
}

// taken counts the connections handed to the fast path.
var taken atomic.Int64

type testServer struct {
	addr string
	srv  *http.Server
	ln   *shedconn.Listener // nil: plain net/http
}

// serve starts the tests' server, with the fast path (fast) or without,
// with a ReadHeaderTimeout of head and a ReadTimeout of read.
func serve(t *testing.T, fast bool, head, read time.Duration) *testServer {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: tcp.Addr().String(), srv: &http.Server{Handler: http.HandlerFunc(handler),
		ReadHeaderTimeout: head, ReadTimeout: read, WriteTimeout: time.Minute, IdleTimeout: time.Minute}}
	var ln net.Listener = tcp
	if fast {
		ts.ln = shedconn.Listen(tcp, shedconn.Options{ReadHeaderTimeout: head, ReadTimeout: read, WriteTimeout: time.Minute, IdleTimeout: time.Minute})
		ts.srv.ConnContext = shedconn.ConnContext
		ln = ts.ln
	}
	served := make(chan error, 1)
	go func() { served <- ts.srv.Serve(ln) }()
	t.Cleanup(func() {
		ts.srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		if ts.ln != nil && ts.ln.Shedding() != 0 {
			t.Errorf("%d connections left on the fast path after Close", ts.ln.Shedding())
		}
	})
	return ts
}

func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: a\r\n\r\n" }

// closing is a GET that asks the server to close after its answer.
func closing(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
}

func put(path, body string) string {
	return "PUT " + path + " HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// Pipelined requests, refused and answered mixed, get their answers in
// order: the first refusal is net/http's and hands the connection over;
// the fast path refuses what follows until a request it does not refuse,
// which goes back to net/http with the bytes after it; a refused request's
// body is skipped so the next one parses.
func TestPipelinedRequestsAreAnsweredInOrder(t *testing.T) {
	ts := serve(t, true, time.Minute, time.Minute)
	got := rawconntest.Exchange(t, ts.addr, get("/shed/1")+put("/shed/2", "abc")+get("/shed/3")+put("/a", "hello")+
		put("/shed/4", "GET /shed/9 HTTP/1.1\r\n\r\n")+get("/shed/5")+closing("/b"))
	r := bufio.NewReader(strings.NewReader(got))
	for i, want := range []struct{ status, body, via string }{
		{"503", "refused /shed/1", "net/http"},
		{"503", "refused /shed/2", "fast"},
		{"503", "refused /shed/3", "fast"},
		{"200", "answered PUT /a body 5", "net/http"},
		{"503", "refused /shed/4", "net/http"},
		{"503", "refused /shed/5", "fast"},
		{"200", "answered GET /b body 0", "net/http"},
	} {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("answer %d: %v; all: %q", i+1, err, got)
		}
		body, _ := io.ReadAll(resp.Body)
		if strconv.Itoa(resp.StatusCode) != want.status || string(body) != want.body || resp.Header.Get("X-Via") != want.via {
			t.Fatalf("answer %d: %d %q via %s; want %s %q via %s", i+1, resp.StatusCode, body, resp.Header.Get("X-Via"), want.status, want.body, want.via)
		}
	}
	if rest, _ := io.ReadAll(r); len(rest) > 0 {
		t.Fatalf("more than the answers: %q", rest)
	}
}

// Every request the fast path does not understand goes back to net/http
// with its connection and gets net/http's answer: on a connection on the
// fast path, the server writes what net/http alone writes.
func TestWhatTheFastPathDoesNotReadGetsNetHTTPsAnswer(t *testing.T) {
	// A body that never comes whole (a chunked one, one past the
	// bound) ends the connection after ReadTimeout, in both.
	fast, plain := serve(t, true, time.Minute, time.Second), serve(t, false, time.Minute, time.Second)
	cases := append([]struct{ name, head string }{
		{"too long a head", "GET /shed/1 HTTP/1.1\r\nHost: a\r\nX-A: " + strings.Repeat("b", shedconn.MaxHead) + "\r\n\r\n"},
		{"a head cut short", "GET /shed/1 HTTP/1.1\r\nHost: a\r\n"},
		{"an answered request", get("/a")},
	}, smuggling...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The body after the head, for those that announce one.
			requests := get("/shed/0") + tc.head + "abc0\r\n\r\n" + get("/shed/2") + closing("/shed/3")
			want := rawconntest.Exchange(t, plain.addr, requests)
			before := taken.Load()
			got := rawconntest.Exchange(t, fast.addr, requests)
			if taken.Load() == before {
				t.Fatal("the connection did not go to the fast path")
			}
			if got != want {
				t.Fatalf("on the fast path:\n%q\nnet/http alone:\n%q", got, want)
			}
			if !strings.Contains(want, "refused /shed/0") {
				t.Fatalf("the first refusal is not in %q", want)
			}
		})
	}
}

// A head that does not come whole within ReadHeaderTimeout, or a refused
// request's body within ReadTimeout, ends the connection on the fast path
// as in net/http; an idle one stays until IdleTimeout.
func TestASlowRequestOnTheFastPathTimesOut(t *testing.T) {
	fast, plain := serve(t, true, 200*time.Millisecond, 200*time.Millisecond), serve(t, false, 200*time.Millisecond, 200*time.Millisecond)
	for _, tc := range []struct{ name, requests string }{
		{"head", get("/shed/0") + "GET /shed/1 HTTP/1.1\r\nHost: a\r\n"},
		{"body", get("/shed/0") + "PUT /shed/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rawconntest.Exchange(t, fast.addr, tc.requests)
			want := rawconntest.Exchange(t, plain.addr, tc.requests)
			// net/http answers a body that timed out with Connection:
			// close; the fast path answers it and closes.
			got = strings.Replace(got, "X-Via: fast\r\n", "X-Via: net/http\r\nConnection: close\r\n", 1)
			if got != want {
				t.Fatalf("on the fast path:\n%q\nnet/http alone:\n%q", got, want)
			}
		})
	}
}

// Closing the listener (a server's shutdown) closes the connections on the
// fast path and ends their goroutines.
func TestShutdownClosesFastPathConnections(t *testing.T) {
	ts := serve(t, true, time.Minute, time.Minute)
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, path := range []string{"/shed/1", "/shed/2"} {
		io.WriteString(c, get(path)) //nolint:errcheck // the read says
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) //nolint:errcheck // only the header matters
		resp.Body.Close()
	}
	if n := ts.ln.Shedding(); n != 1 {
		t.Fatalf("%d connections on the fast path, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := ts.ln.Shedding(); n != 0 {
		t.Fatalf("%d connections on the fast path after shutdown, want 0", n)
	}
	c.SetReadDeadline(time.Now().Add(time.Minute)) //nolint:errcheck // a failed read says
	if b, err := r.ReadByte(); err == nil {
		t.Fatalf("read %q after shutdown, want the connection closed", b)
	}
}
