package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/shop/httpapi/shedconn"
)

// Server is an HTTP listener with the timeouts a public service needs, so a
// slow or idle client cannot hold a connection (and its goroutine) forever.
type Server struct {
	Addr    string // host:port; port 0 picks a free one (see Port)
	Handler http.Handler
	// ReadTimeout and WriteTimeout bound reading a whole request and
	// writing its answer, both counted from the request's start (15 s and
	// 30 s when zero). An event stream lifts them for itself.
	ReadTimeout, WriteTimeout time.Duration
	// Registry and Logger, when set, count (shop_http_requests_total,
	// route net/http) and log the requests net/http refuses itself before
	// any handler: a malformed request (400), headers too large (431), an
	// unknown transfer coding (501), an HTTP version it does not serve
	// (505). Otherwise nothing would see them.
	Registry prometheus.Registerer
	Logger   *slog.Logger
	// NetHTTPRefusals keeps every refused request in net/http: no
	// connection goes to the fast path (fastpath.go). For comparisons
	// (BenchmarkLoopback); what a client sees is the same either way.
	NetHTTPRefusals bool

	ln     net.Listener
	shed   *shedconn.Listener // nil with NetHTTPRefusals
	srv    *http.Server
	err    chan error
	closed bool
}

// Listen binds the address without serving yet, so the caller can learn
// the port (see Port, URL) before it chooses the handler. Open calls it when
// it has not been called.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		// net's error repeats the address ("listen tcp ADDR: bind: ..."):
		// its cause is enough after ours.
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err
		}
		return fmt.Errorf("listen on %s: %w", s.Addr, err)
	}
	s.ln = ln
	return nil
}

// Open starts listening and serving in the background.
func (s *Server) Open() error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	ln := s.ln
	if s.Registry != nil || s.Logger != nil {
		ln = newRefusalListener(ln, s.Registry, s.Logger)
	}
	read, write := s.ReadTimeout, s.WriteTimeout
	if read <= 0 {
		read = 15 * time.Second
	}
	if write <= 0 {
		write = 30 * time.Second
	}
	s.srv = &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: min(5*time.Second, read),
		ReadTimeout:       read,
		WriteTimeout:      write,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	if !s.NetHTTPRefusals {
		// A handler that refuses a request under sustained overload
		// may hand its connection to the fast path (fastpath.go),
		// which keeps the same limits.
		s.srv.ConnContext = shedconn.ConnContext
		s.shed = shedconn.Listen(ln, shedconn.Options{ReadHeaderTimeout: s.srv.ReadHeaderTimeout, ReadTimeout: read, WriteTimeout: write, IdleTimeout: s.srv.IdleTimeout})
		ln = s.shed
	}
	s.err = make(chan error, 1)
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.err <- err
	}()
	return nil
}

// FastPathConnections is how many connections are on the fast path now.
func (s *Server) FastPathConnections() int {
	if s.shed == nil {
		return 0
	}
	return s.shed.Shedding()
}

// Port is the port the server listens on.
func (s *Server) Port() int {
	if s.ln == nil {
		return 0
	}
	return s.ln.Addr().(*net.TCPAddr).Port
}

// URL is the server's base URL.
func (s *Server) URL() string {
	host, _, _ := net.SplitHostPort(s.ln.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(s.Port()))
}

// Close stops accepting connections and waits, until ctx ends, for
// in-flight requests to finish. A listener bound but never served is
// closed; a second Close does nothing.
func (s *Server) Close(ctx context.Context) error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.srv == nil {
		if s.ln != nil {
			return s.ln.Close()
		}
		return nil
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
		return fmt.Errorf("drain %s: %w", s.Addr, err)
	}
	return <-s.err
}

// refusalListener's connections watch what net/http writes on them for its
// own refusals, which it writes straight to the connection, in one write,
// with a header block no handler's answer has (net/http sorts a handler's
// headers; this block is not sorted).
type refusalListener struct {
	net.Listener
	count func(status int)
}

// netHTTPRefusal is what follows the status line of every refusal net/http
// writes itself (net/http's errorHeaders).
var netHTTPRefusal = []byte("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")

func newRefusalListener(ln net.Listener, reg prometheus.Registerer, log *slog.Logger) net.Listener {
	var requests *prometheus.CounterVec
	if reg != nil {
		requests = requestsTotal(reg)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &refusalListener{Listener: ln, count: func(status int) {
		if requests != nil {
			requests.WithLabelValues("net/http", strconv.Itoa(status)).Inc()
		}
		log.Info("request refused by net/http", "status", status)
	}}
}

func (l *refusalListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &refusalConn{Conn: c, count: l.count}, nil
}

type refusalConn struct {
	net.Conn
	count func(status int)
}

func (c *refusalConn) Write(p []byte) (int, error) {
	// "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: ..."
	if len(p) > 13 && bytes.HasPrefix(p, []byte("HTTP/1.1 ")) && p[12] == ' ' {
		if eol := bytes.IndexByte(p, '\r'); eol > 0 && bytes.HasPrefix(p[eol:], netHTTPRefusal) {
			if status, err := strconv.Atoi(string(p[9:12])); err == nil {
				c.count(status)
			}
		}
	}
	return c.Conn.Write(p)
}

// CloseWrite lets net/http half-close, as it does after a 431, when the
// connection can.
func (c *refusalConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
