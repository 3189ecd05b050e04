package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
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

	ln     net.Listener
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
