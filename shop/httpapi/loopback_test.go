package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/httpapi"
)

// BenchmarkLoopback is what a request costs the shop's whole HTTP stack,
// net/http included: the real handler (as cmd/shop composes it, behind
// WithReplica) served by httpapi.Server on a loopback port, and driven
// over one HTTP/1.1 keep-alive connection by a client that writes
// prepared request bytes and reads the answer without allocating, so
// that what the process spends is nearly all the server's. The refusal-*
// cases are refused by admission control (its slots held for the whole
// benchmark), the others are the built-in journey's requests answered
// with admission on as a replica runs it. A replica at ten times its
// capacity refuses nine requests for each one it answers, so a refusal
// must cost a small part of an answer (scripts/overload.sh's arithmetic).
//
// CPU time under load is an indication only; scripts/refusalcost.sh counts
// each case's instructions with valgrind's callgrind instead, which stands
// whatever else the machine runs:
//
//	go test ./shop/httpapi -run '^$' -bench Loopback -benchmem
func BenchmarkLoopback(b *testing.B) {
	// Every route's deadline an hour (the first menu is built and
	// compressed within it, under valgrind too): a deadline costs a
	// request the same whatever its length.
	answering := serveLoopback(b, httpapi.DefaultAdmission(1), func(o *options) { o.requestTimeout = time.Hour })
	token, hash := shop.NewToken()
	sess, err := answering.be.Store.CreateSession(b.Context(), hash)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := answering.be.Store.SetCartItem(b.Context(), sess.ID, 3, 1); err != nil {
		b.Fatal(err)
	}
	refusing, refusedToken := refusingLoopback(b, true)
	fast, fastToken := refusingLoopback(b, false)

	type exchange struct {
		name   string
		srv    *loopback
		req    []byte
		status int
		// redial: each request on a new connection, as when the server
		// closes it after each answer (Connection: close) and the client
		// sends again at once.
		redial bool
		// then, when set, is sent on the same connection after req's
		// answer, in the same iteration, and answered with thenStatus.
		then       []byte
		thenStatus int
	}
	cases := []exchange{
		{"refusal-menu", refusing, rawRequest("GET", "/v1/menu", "", ""), http.StatusServiceUnavailable, false, nil, 0},
		{"refusal-menu-new-connection", refusing, rawRequest("GET", "/v1/menu", "", ""), http.StatusServiceUnavailable, true, nil, 0},
		{"refusal-cart-update", refusing, rawRequest("PUT", "/v1/cart/items/7", refusedToken, `{"quantity": 2}`), http.StatusServiceUnavailable, false, nil, 0},
		// The same refusals on the fast path (fastpath.go): the
		// connection was handed over at the first, and the rest never
		// reach net/http.
		{"refusal-menu-fast", fast, rawRequest("GET", "/v1/menu", "", ""), http.StatusServiceUnavailable, false, nil, 0},
		{"refusal-cart-update-fast", fast, rawRequest("PUT", "/v1/cart/items/7", fastToken, `{"quantity": 2}`), http.StatusServiceUnavailable, false, nil, 0},
		// A refusal, then a request admitted on the same connection, as
		// a journey's user alternates browsing (refused) and a request
		// of a class kept: net/http refuses the menu and hands the
		// connection to the fast path, which reads the next head, does
		// not refuse it (health is never shed) and hands the connection
		// back (the Listener's Accept, a new http.conn); the pair less
		// refusal-menu and answer-health is what the round trip through
		// the fast path costs.
		{"refusal-then-admitted-fast", fast, rawRequest("GET", "/v1/menu", "", ""), http.StatusServiceUnavailable, false, rawRequest("GET", "/healthz", "", ""), http.StatusOK},
		{"answer-health", answering, rawRequest("GET", "/healthz", "", ""), http.StatusOK, false, nil, 0},
		// The built-in journey's requests but checkout (weights 10, 3, 4,
		// 2, 1, 1 in loadlab/scenario/shop.yaml).
		{"answer-menu", answering, rawRequest("GET", "/v1/menu", "", ""), http.StatusOK, false, nil, 0},
		{"answer-list", answering, rawRequest("GET", "/v1/items?limit=20", "", ""), http.StatusOK, false, nil, 0},
		{"answer-item", answering, rawRequest("GET", "/v1/items/7", "", ""), http.StatusOK, false, nil, 0},
		{"answer-cart-update", answering, rawRequest("PUT", "/v1/cart/items/7", token, `{"quantity": 2}`), http.StatusOK, false, nil, 0},
		{"answer-cart", answering, rawRequest("GET", "/v1/cart", token, ""), http.StatusOK, false, nil, 0},
		{"answer-orders", answering, rawRequest("GET", "/v1/orders", token, ""), http.StatusOK, false, nil, 0},
	}
	for _, ex := range cases {
		b.Run(ex.name, func(b *testing.B) {
			c := &rawClient{addr: ex.srv.addr, redial: ex.redial}
			defer c.close()
			// One exchange before counting: the connection is open and
			// the server's buffers for it are made.
			exchange := func() {
				if status, err := c.do(ex.req); err != nil || status != ex.status {
					b.Fatalf("%s: %d %v, want %d", ex.name, status, err, ex.status)
				}
				if ex.then == nil {
					return
				}
				if status, err := c.do(ex.then); err != nil || status != ex.thenStatus {
					b.Fatalf("%s, then: %d %v, want %d", ex.name, status, err, ex.thenStatus)
				}
			}
			exchange()
			b.ReportAllocs()
			user, sys := userSystemCPU(b)
			dials := c.dials
			for b.Loop() {
				exchange()
			}
			user2, sys2 := userSystemCPU(b)
			n := float64(b.N)
			b.ReportMetric(float64(user2-user+sys2-sys)/n, "cpu-ns/op")
			b.ReportMetric(float64(sys2-sys)/n, "sys-ns/op")
			b.ReportMetric(float64(c.dials-dials)/n, "dials/op")
		})
	}
}

// userSystemCPU is this process's user and system (kernel) CPU time so far.
func userSystemCPU(b *testing.B) (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// loopback is the real handler served on a loopback port.
type loopback struct {
	addr string
	be   *backendOf
	reg  *prometheus.Registry
	srv  *httpapi.Server
}

// backendOf is the part of compose's backend a benchmark uses.
type backendOf struct {
	Store shop.Store
}

// serveLoopback serves the handler compose builds with admission adm,
// behind WithReplica and httpapi.Server with a registry and a logger at
// warn, as cmd/shop does under overload.sh.
func serveLoopback(tb testing.TB, adm httpapi.AdmissionConfig, wrap func(*options)) *loopback {
	tb.Helper()
	o := options{admission: adm, registry: prometheus.NewRegistry()}
	if wrap != nil {
		wrap(&o)
	}
	h, be, cfg := compose(tb, o, nil)
	log := slog.New(slog.DiscardHandler)
	if cfg.Logger != nil {
		log = cfg.Logger
	}
	// Timeouts as long as a run under valgrind may take (the first menu
	// is built and compressed in the warm-up): any timeout costs a
	// request the same deadline calls.
	srv := &httpapi.Server{Addr: "127.0.0.1:0", Handler: httpapi.WithReplica("bench", h), Registry: o.registry, Logger: log,
		ReadTimeout: time.Hour, WriteTimeout: time.Hour, NetHTTPRefusals: o.netHTTPRefusals}
	if err := srv.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Close(ctx) //nolint:errcheck // the held requests are cut
	})
	return &loopback{addr: srv.URL()[len("http://"):], be: &backendOf{Store: be.Store}, reg: o.registry, srv: srv}
}

// refusingLoopback serves a handler whose one read slot and one write slot
// are held until the benchmark ends (a cart read and a checkout that wait
// for it), so every browsing and cart request is refused before any work,
// in net/http (netHTTP) or on the fast path; it returns the session the
// held requests belong to.
func refusingLoopback(tb testing.TB, netHTTP bool) (*loopback, string) {
	tb.Helper()
	held := &heldOrders{entered: make(chan struct{}, 1), release: make(chan struct{})}
	carts := &heldCarts{entered: make(chan struct{}, 1), release: held.release}
	srv := serveLoopback(tb, httpapi.AdmissionConfig{On: true, Split: true, ReadSlots: 1, WriteSlots: 1, MaxWait: time.Nanosecond, Sustained: -1}, func(o *options) {
		o.requestTimeout = time.Hour
		o.netHTTPRefusals = netHTTP
		o.orders = func(s shop.Ordering) shop.Ordering { held.Ordering = s; return held }
		o.carts = func(s shop.CartService) shop.CartService { carts.CartService = s; return carts }
	})
	token, hash := shop.NewToken()
	sess, err := srv.be.Store.CreateSession(tb.Context(), hash)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := srv.be.Store.SetCartItem(tb.Context(), sess.ID, 3, 1); err != nil {
		tb.Fatal(err)
	}
	// A read and a write answered first give each bound its service
	// time: a refusal is then made at once, as under a sustained
	// overload (a bound with none yet queues a request, and refuses it
	// once its wait is spent).
	warm := &rawClient{addr: srv.addr}
	for _, req := range [][]byte{rawRequest("GET", "/v1/menu", "", ""), rawRequest("PUT", "/v1/cart/items/7", token, `{"quantity": 2}`)} {
		if status, err := warm.do(req); err != nil || status != http.StatusOK {
			tb.Fatalf("%.30q with the bounds free: %d %v, want 200", req, status, err)
		}
	}
	warm.close()
	done := make(chan int, 2)
	for _, req := range [][]byte{
		rawRequest("GET", "/v1/cart", token, ""),
		rawRequest("POST", "/v1/orders", token, `{"customer_name": "Ada Lovelace", "email": "ada@example.com"}`),
	} {
		go func() {
			c := &rawClient{addr: srv.addr, idempotencyKey: "held-1"}
			defer c.close()
			status, err := c.do(req)
			if err != nil {
				status = 0
			}
			done <- status
		}()
	}
	<-held.entered
	<-carts.entered
	tb.Cleanup(func() {
		close(held.release)
		for range 2 {
			if code := <-done; code != http.StatusOK && code != http.StatusCreated {
				tb.Errorf("a held request: %d, want 200 or 201", code)
			}
		}
	})
	return srv, token
}

// heldCarts holds every cart read until release is closed.
type heldCarts struct {
	shop.CartService
	entered chan struct{}
	release chan struct{}
}

func (h *heldCarts) Cart(ctx context.Context, session int64) (*shop.Cart, error) {
	h.entered <- struct{}{}
	<-h.release
	return h.CartService.Cart(ctx, session)
}

// rawRequest is an HTTP/1.1 request's bytes as a client such as loadlab
// sends them: a Host, a bearer token when given, a JSON body when given.
func rawRequest(method, path, token, body string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", method, path)
	if token != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", token)
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes()
}

// rawClient sends prepared requests on one keep-alive connection and
// reads each answer's status and skips its body, allocating nothing once
// connected; it dials again when the server closes the connection.
type rawClient struct {
	addr           string
	idempotencyKey string // sent, if set, by rawRequest's caller in the bytes
	redial         bool   // a new connection for each request
	c              net.Conn
	br             *bufio.Reader
	dials          int
}

func (rc *rawClient) close() {
	if rc.c != nil {
		rc.c.Close()
		rc.c = nil
	}
}

func (rc *rawClient) do(req []byte) (int, error) {
	if rc.idempotencyKey != "" && bytes.HasPrefix(req, []byte("POST ")) {
		req = bytes.Replace(req, []byte("\r\n\r\n"), []byte("\r\nIdempotency-Key: "+rc.idempotencyKey+"\r\n\r\n"), 1)
	}
	if rc.c == nil {
		c, err := net.Dial("tcp", rc.addr)
		if err != nil {
			return 0, err
		}
		rc.c, rc.dials = c, rc.dials+1
		if rc.br == nil {
			rc.br = bufio.NewReaderSize(c, 64<<10)
		} else {
			rc.br.Reset(c)
		}
	}
	if _, err := rc.c.Write(req); err != nil {
		return 0, err
	}
	line, err := rc.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("not a status line: %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, err
	}
	length, chunked, closing := -1, false, false
	for {
		line, err = rc.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		switch k, v, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(":")); {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, err = strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				return 0, err
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			closing = bytes.Contains(bytes.ToLower(v), []byte("close"))
		}
	}
	switch {
	case chunked:
		err = rc.skipChunks()
	case length > 0:
		_, err = rc.br.Discard(length)
	}
	if err != nil {
		return 0, err
	}
	if closing || rc.redial {
		rc.close()
	}
	return status, nil
}

// skipChunks reads a chunked body to its end.
func (rc *rawClient) skipChunks() error {
	for {
		line, err := rc.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.SplitN(line, []byte(";"), 2)[0])), 16, 64)
		if err != nil {
			return err
		}
		if _, err := rc.br.Discard(int(size) + 2); err != nil {
			return err
		}
		if size == 0 {
			return nil
		}
	}
}
