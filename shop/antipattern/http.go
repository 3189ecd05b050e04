package antipattern

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WithoutCompression is no-compression: it drops the request's
// Accept-Encoding, so the handler answers every request uncompressed, as a
// service that never negotiates a content coding does.
func WithoutCompression(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Accept-Encoding")
		next.ServeHTTP(w, r)
	})
}

// Locker is the global lock: Lock blocks until the caller holds it (write
// for a request that changes state, else read) and returns the function
// that releases it. A Locker may let reads through without locking.
type Locker interface {
	Lock(ctx context.Context, write bool) (unlock func(), err error)
}

// WithGlobalLock is global-lock: every request (but health, readiness and
// the long-lived order event streams, which would hold it for minutes)
// runs under lock, a write lock for every method but GET and HEAD.
func WithGlobalLock(lock Locker, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || strings.HasSuffix(r.URL.Path, "/events") {
			next.ServeHTTP(w, r)
			return
		}
		write := r.Method != http.MethodGet && r.Method != http.MethodHead
		unlock, err := lock.Lock(r.Context(), write)
		if err != nil {
			problem(w, http.StatusServiceUnavailable, fmt.Sprintf("the global lock (anti-pattern %s) could not be taken: %v", GlobalLock, err))
			return
		}
		defer unlock()
		next.ServeHTTP(w, r)
	})
}

// ProcessLock is global-lock on the embedded default: one read/write lock
// in the process, which every request takes (reads shared, writes alone).
type ProcessLock struct{ mu sync.RWMutex }

// Lock takes the lock; it does not give up when ctx ends, as a plain
// mutex does not.
func (l *ProcessLock) Lock(_ context.Context, write bool) (func(), error) {
	if write {
		l.mu.Lock()
		return l.mu.Unlock, nil
	}
	l.mu.RLock()
	return l.mu.RUnlock, nil
}

// problem writes an RFC 9457 problem.
func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{ //nolint:errcheck // the client went away
		"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail,
	})
}

// DefaultHops is extra-hops' number of hops unless --hops says otherwise:
// the articles' checkout took four.
const DefaultHops = 4

// checkoutPath is the request extra-hops sends through its hops.
const checkoutPath = "/v1/orders"

// hopHeader carries, between the hops, the process's hop secret and the
// hop's number, so a client cannot skip the hops by sending it.
const hopHeader = "X-Shop-Hop"

// Hops is extra-hops: a checkout (POST /v1/orders) does not go straight to
// the handler but through K internal HTTP hops, each a real request over
// loopback to an internal listener of this process, as a checkout passing
// through K services does. Other requests go straight to the handler.
type Hops struct {
	k      int
	secret string
	next   http.Handler
	proxy  *httputil.ReverseProxy
	srv    *http.Server
	ln     net.Listener
	served atomic.Int64
}

// NewHops listens on a loopback port for the hops and returns the handler
// that sends checkouts through k of them before next; Close stops it.
func NewHops(k int, next http.Handler) (*Hops, error) {
	if k < 1 {
		return nil, fmt.Errorf("extra-hops needs at least one hop, got %d", k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("extra-hops listener: %w", err)
	}
	h := &Hops{k: k, secret: rand.Text(), next: next, ln: ln}
	target := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	h.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Set(hopHeader, h.secret+" "+strconv.Itoa(h.hop(pr.In)+1))
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			problem(w, http.StatusBadGateway, fmt.Sprintf("an internal hop (anti-pattern %s) failed: %v", ExtraHops, err))
		},
	}
	h.srv = &http.Server{Handler: http.HandlerFunc(h.serveHop), ReadHeaderTimeout: 10 * time.Second}
	go h.srv.Serve(ln) //nolint:errcheck // ErrServerClosed at Close
	return h, nil
}

// hop is the number of hops r has passed through: 0 from a client.
func (h *Hops) hop(r *http.Request) int {
	secret, n, ok := strings.Cut(r.Header.Get(hopHeader), " ")
	if !ok || secret != h.secret {
		return 0
	}
	i, err := strconv.Atoi(n)
	if err != nil {
		return 0
	}
	return i
}

// ServeHTTP sends a client's checkout to the first hop; everything else
// goes to the handler.
func (h *Hops) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Header.Del(hopHeader) // only the hops set it
	if r.Method == http.MethodPost && r.URL.Path == checkoutPath {
		h.proxy.ServeHTTP(w, r)
		return
	}
	h.next.ServeHTTP(w, r)
}

// serveHop is one hop: the next one, or the handler after the last.
func (h *Hops) serveHop(w http.ResponseWriter, r *http.Request) {
	n := h.hop(r)
	if n == 0 {
		problem(w, http.StatusForbidden, "not a hop of this process")
		return
	}
	h.served.Add(1)
	if n < h.k {
		h.proxy.ServeHTTP(w, r)
		return
	}
	r.Header.Del(hopHeader)
	h.next.ServeHTTP(w, r)
}

// Served is how many hops have been served so far.
func (h *Hops) Served() int64 { return h.served.Load() }

// Close stops the hops' listener.
func (h *Hops) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
