// Package httpapi is the HTTP adapter of the ordering service: routes,
// request decoding and validation, RFC 9457 problem responses, bearer-token
// sessions, the menu's ETag, Prometheus metrics, request logs and the
// OpenAPI document. It holds no state of its own: every replica can serve
// every request.
package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/perfscale/perfscale/shop"
)

// Config is what the handler needs from the outside.
type Config struct {
	// The state the handlers read and change, as the narrow interfaces
	// they use (see deps.go). OpsOnly needs only Health.
	Catalog  shop.CatalogService
	Sessions shop.SessionService
	Carts    shop.CartService
	Ordering shop.Ordering
	Health   Pinger
	Logger   *slog.Logger
	// Registry receives the HTTP and store metrics; nil makes a private one.
	Registry *prometheus.Registry
	// AdminToken guards /v1/admin; empty disables the admin API.
	AdminToken string
	// AdminReads serve the admin's reads over every order (every
	// shard's); nil answers them 404.
	AdminReads AdminReads
	// RequestTimeout, when set, replaces every route's own timeout
	// (routePlan) and bounds an event stream's preamble; by default it is
	// 10 s for the preamble and the routes keep their own.
	RequestTimeout time.Duration
	// Admission is the replica's admission control (off when zero).
	Admission AdmissionConfig
	// OpsOnly serves only the operational routes (health, readiness,
	// metrics): for a process that runs the background worker alone.
	OpsOnly bool
	// Draining, when it returns true, makes /readyz fail so that a load
	// balancer stops sending traffic before shutdown, and closes each
	// connection after its response.
	Draining func() bool
	// OrderHistory and EventFeed serve GET /v1/orders/{id}/events: the
	// recorded changes, and the live feed (nil: the stream polls the
	// database).
	OrderHistory OrderHistory
	EventFeed    EventFeed
	Stream       StreamConfig
	// SessionLimit is the per-client-address token bucket for POST
	// /v1/sessions; the zero value means the defaults, a negative Rate no
	// limit. Nothing else is limited: health and readiness never are.
	SessionLimit SessionLimit
	// TrustedProxies are the peers whose X-Forwarded-For / X-Real-IP
	// name the client (see clientAddr); none by default.
	TrustedProxies []netip.Prefix
	// SharedMenus, if set, is the second menu cache layer, shared by the
	// replicas (Redis), between this process's memory and the database.
	SharedMenus SharedMenus
	// Antipatterns are the anti-pattern switches the process runs with
	// (shop --antipattern), shown by /healthz.
	Antipatterns []string
	// MenuPerRequest builds the menu document for every request, with no
	// copy kept between requests: the no-cache anti-pattern.
	MenuPerRequest bool
	// Stale, if set, says the database cannot be read now (its read
	// guard refuses calls; on shards, the catalog's home's): the menu in
	// memory is then served as the last good copy, with Age and Warning,
	// and item pages answered meanwhile (from the cache, or another
	// shard's copy) carry the Warning.
	Stale func() bool
}

type server struct {
	catalog    shop.CatalogService
	sessions   shop.SessionService
	carts      shop.CartService
	ordering   shop.Ordering
	health     Pinger
	log        *slog.Logger
	reg        *prometheus.Registry
	metrics    *httpMetrics
	adminToken string
	adminReads AdminReads
	// timeout bounds an event stream's preamble; timeoutOverride, when
	// set, replaces every route's timeout (Config.RequestTimeout).
	timeout, timeoutOverride time.Duration
	menuTimeout              time.Duration
	admission                *admission
	draining                 func() bool
	history                  OrderHistory
	// sharedMenus is the replicas' menu cache (nil: none).
	sharedMenus SharedMenus
	feed        EventFeed
	stream      StreamConfig
	streams     *streamCap
	menu        atomic.Pointer[encodedMenu]
	menuBuild   singleflight.Group
	mux         *http.ServeMux
	// fastRoutes are the routes a connection's fast path may refuse
	// (fastpath.go), by pattern; read-only once routes are added.
	fastRoutes map[string]fastRoute
	// sessionLimiter is nil when session creation is not limited.
	sessionLimiter *clientLimiter
	clientAddr     clientAddr
	patterns       []string // every registered route, for the OpenAPI test
	antipatterns   []string
	menuPerRequest bool
	// servesMenu: the menu's route is registered (not OpsOnly), so
	// readiness waits for its first build (warmMenu).
	servesMenu bool
	stale      func() bool
	// unavailableLines samples the request lines of 503s.
	unavailableLines *sampledLog
}

// NewHandler returns the service's HTTP handler.
func NewHandler(cfg Config) http.Handler {
	s := newServer(cfg)
	return s.closeWhileDraining(s.withRequestID(s.withRecovery(http.HandlerFunc(s.serveMux))))
}

// closeWhileDraining asks the client to close its connection after each
// response once the process is draining. A load balancer's keep-alive
// connections are then retired one by one, each after a complete answer,
// instead of being cut when the listener shuts down: a request the balancer
// wrote onto a connection the server was closing at that instant would fail
// after it was sent, and a POST cannot be retried safely on another replica.
func (s *server) closeWhileDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

func newServer(cfg Config) *server {
	s := &server{
		catalog:     cfg.Catalog,
		sessions:    cfg.Sessions,
		carts:       cfg.Carts,
		ordering:    cfg.Ordering,
		health:      cfg.Health,
		log:         cfg.Logger,
		reg:         cfg.Registry,
		adminToken:  cfg.AdminToken,
		adminReads:  cfg.AdminReads,
		timeout:     cfg.RequestTimeout,
		draining:    cfg.Draining,
		history:     cfg.OrderHistory,
		sharedMenus: cfg.SharedMenus,
		feed:        cfg.EventFeed,
		stream:      cfg.Stream,
		mux:         http.NewServeMux(),
		fastRoutes:  map[string]fastRoute{},
	}
	s.antipatterns, s.menuPerRequest, s.stale = cfg.Antipatterns, cfg.MenuPerRequest, cfg.Stale
	s.unavailableLines = newSampledLog(unavailableLinesPerSecond, unavailableLinesBurst, nil)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.adminReads == nil {
		s.adminReads = noAdminReads{}
	}
	if s.reg == nil {
		s.reg = NewRegistry()
	}
	s.timeoutOverride = s.timeout
	if s.timeout <= 0 {
		s.timeout = specOf("GET /v1/orders/{id}/events").timeout
	}
	s.menuTimeout = s.timeoutOf(specOf("GET /v1/menu"))
	s.stream.defaults()
	if s.draining == nil {
		s.draining = func() bool { return false }
	}
	s.metrics = newHTTPMetrics(s.reg)
	s.admission = newAdmission(cfg.Admission, s.reg)
	if s.admission != nil {
		s.admission.summary = newRefusalSummary(s.log, nil)
	}
	s.streams = newStreamCap(s.reg, s.stream.MaxPerSession, s.stream.MaxOpen)
	s.clientAddr = clientAddr{trusted: cfg.TrustedProxies}
	if l := cfg.SessionLimit; l.Rate >= 0 {
		if l.Rate == 0 {
			l.Rate = DefaultSessionRate
		}
		if l.Burst <= 0 {
			l.Burst = DefaultSessionBurst
		}
		s.sessionLimiter = newClientLimiter(l, nil)
	}
	if cfg.OpsOnly {
		addOpsRoutes(s)
	} else {
		addRoutes(s)
		s.servesMenu = true
	}
	return s
}

// handleRaw registers a plain http.Handler (one that writes its own
// errors) under pattern.
func (s *server) handleRaw(pattern string, h http.Handler) {
	s.patterns = append(s.patterns, pattern)
	s.mux.Handle(pattern, h)
}

// timeoutOf is a route's deadline: its own (routePlan), unless
// Config.RequestTimeout replaces them all.
func (s *server) timeoutOf(sp routeSpec) time.Duration {
	if s.timeoutOverride > 0 {
		return s.timeoutOverride
	}
	return sp.timeout
}

// handle registers fn under pattern with metrics, logging, the route's
// deadline (routePlan), admission control and the error adapter.
// Admission comes first: a refused request is answered from what the
// arrival gives (its route, the time, the id withRequestID set) and counted
// and logged as every request is, but gets no context, deadline, recorder
// or log attributes, which are built only for what is admitted: a replica
// at ten times its capacity refuses nine requests for each one it serves.
func (s *server) handle(pattern string, fn handlerFunc) {
	sp := specOf(pattern)
	timeout := s.timeoutOf(sp)
	switch {
	case sp.selfBounded:
		timeout = 0
	case sp.stream:
		// The stream's whole life, then the time to say goodbye.
		timeout += s.stream.MaxDuration
	}
	route := s.metrics.route(pattern)
	if sp.shed != shedNever && !sp.stream {
		s.fastRoutes[pattern] = fastRoute{spec: sp, route: route, timeout: timeout}
	}
	s.handleRaw(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		route.begin()
		var deadline time.Time
		if timeout > 0 {
			deadline = start.Add(timeout)
		}
		p, err := s.admission.enter(sp, deadline, w, r)
		if err != nil {
			s.refused(w, r, route, pattern, start)
			if errors.Is(err, errShedAtOnce) {
				s.shedConnection(w, r)
			}
			return
		}
		s.serve(w, r, serving{spec: sp, pattern: pattern, route: route, fn: fn, start: start, deadline: deadline, pass: p})
	}))
}

// serving is an admitted request's route and hold.
type serving struct {
	spec     routeSpec
	pattern  string
	route    *routeMetrics
	fn       handlerFunc
	start    time.Time
	deadline time.Time // zero: none
	pass     pass
}

// serve runs an admitted request's handler with its deadline and request
// id in its context, gives back its admission hold, writes its error, and
// counts and logs it, a panic included.
func (s *server) serve(w http.ResponseWriter, r *http.Request, sv serving) {
	client := r.Context() // cancelled when the client goes away
	ctx := context.WithValue(client, requestIDKey, responseID(w))
	if !sv.deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, sv.deadline)
		defer cancel()
	}
	r = r.WithContext(ctx)
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK, client: client, head: r.Method == http.MethodHead}
	held := true // the admission hold, until the handler returns
	var answered bool
	var cause error // a 5xx's, for the request line
	// Metrics and the request log are written whatever happens,
	// a panic included, so the in-flight gauge cannot leak.
	defer func() {
		v := recover()
		if held {
			// A panic: its hold must not go with it, or a bound of a
			// few slots loses them for good.
			s.admission.drop(sv.pass)
		}
		if v != nil && v != http.ErrAbortHandler {
			s.log.ErrorContext(r.Context(), "panic", "value", fmt.Sprint(v), "stack", string(debug.Stack()))
			if !rec.written {
				writeProblem(rec, r, problem{Status: http.StatusInternalServerError, Code: shop.EINTERNAL, Detail: "internal error"})
			} else {
				rec.status = http.StatusInternalServerError
			}
		}
		status := rec.status
		if sv.spec.stream && rec.written {
			// A stream ends when its client closes it: the stream
			// was the answer, and it was delivered.
			answered = true
		}
		if v == nil && !answered && !rec.delivered && errors.Is(client.Err(), context.Canceled) {
			// The client left before the answer was whole, so it did
			// not get it, whatever the handler wrote afterwards. One
			// that left after reading a whole answer (a body larger
			// than net/http's buffers goes out as it is written) got
			// it: that is logged with the status sent.
			status = StatusClientClosedRequest
		}
		d := time.Since(sv.start)
		sv.route.end(status, d)
		s.logRequest(r, logLevel(status, d), sv.pattern, status, rec.bytes, d, cause)
		if v == http.ErrAbortHandler {
			panic(v)
		}
	}()
	err := sv.fn(rec, r)
	held = false
	s.admission.done(ctx, sv.pass, err)
	if err != nil {
		var body *bodyError
		answered = errors.As(err, &body)
		cause = s.writeError(rec, r, err)
	}
}

// refused answers a request admission control refused (enter set its
// Retry-After), counts it and logs it at debug level: counted by class in
// shop_admission_refused_total and in the log at most once a second
// (refusalSummary), a line per refusal would spend the CPU shedding
// saves. Nothing was done: even a checkout without an
// Idempotency-Key may be sent again.
func (s *server) refused(w http.ResponseWriter, r *http.Request, route *routeMetrics, pattern string, start time.Time) {
	status, n := http.StatusServiceUnavailable, 0
	if errors.Is(r.Context().Err(), context.Canceled) {
		// The client left while it waited: nobody reads a problem.
		status = StatusClientClosedRequest
	} else {
		n = writeShed(w, r, responseID(w))
	}
	d := time.Since(start)
	route.end(status, d)
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, responseID(w)))
		s.logRequest(r, slog.LevelDebug, pattern, status, n, d, nil)
	}
}

// logRequest writes the request's one log line, with the cause of a 5xx.
// Lines of 503s are sampled (sampledLog): the first of a burst are
// written, then a few a second, each saying how many were held back.
func (s *server) logRequest(r *http.Request, level slog.Level, pattern string, status, bytes int, d time.Duration, cause error) {
	ctx := r.Context()
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []any{"method", r.Method, "route", pattern, "path", r.URL.Path,
		"status", status, "bytes", bytes, "duration_ms", float64(d.Microseconds()) / 1000}
	if cause != nil {
		attrs = append(attrs, "error", cause.Error())
	}
	if level == slog.LevelWarn && status == http.StatusServiceUnavailable {
		held, ok := s.unavailableLines.allow()
		if !ok {
			return
		}
		if held > 0 {
			attrs = append(attrs, "unavailable_lines_held_back", held)
		}
	}
	s.log.Log(ctx, level, "request", attrs...)
}

// serveMux sends requests no route matches to a problem response instead
// of the mux's plain-text 404 and 405.
func (s *server) serveMux(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	r = withID(w, r)
	// Let the mux decide between 404, 405 (with Allow) and a redirect,
	// but not write the body.
	probe := &headerOnly{header: http.Header{}}
	h.ServeHTTP(probe, r)
	switch probe.status {
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		if allow := probe.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		p := problem{Status: probe.status, Code: shop.ENOTFOUND, Detail: "no such resource: see /openapi.json for the API"}
		if probe.status == http.StatusMethodNotAllowed {
			p.Code, p.Detail = codeMethodNotAllowed, r.Method+" is not allowed here; allowed: "+probe.header.Get("Allow")
		}
		s.metrics.unmatched(probe.status)
		writeProblem(w, r, p)
	default:
		h.ServeHTTP(w, r)
	}
}

type headerOnly struct {
	header http.Header
	status int
}

func (h *headerOnly) Header() http.Header         { return h.header }
func (h *headerOnly) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerOnly) WriteHeader(status int)      { h.status = status }

type statusRecorder struct {
	http.ResponseWriter
	status  int
	bytes   int
	written bool
	// client is the request's context before any deadline: cancelled
	// when the client goes away. head marks a HEAD request (no body).
	client context.Context
	head   bool
	// length is the declared Content-Length (-1: none, or not yet
	// known); delivered is set when the answer became whole (headers and
	// every declared byte written) while the client was still there.
	length    int
	whole     bool
	delivered bool
	// liveAtWrite: the client was there when the last write began. It
	// is read before the write, not after: a client may read the last
	// bytes and hang up before the write call returns (a CI run saw it).
	liveAtWrite bool
}

func (r *statusRecorder) WriteHeader(status int) {
	r.liveAtWrite = r.clientLive()
	if !r.written {
		r.status, r.written = status, true
		r.length = -1
		if n, err := strconv.Atoi(r.Header().Get("Content-Length")); err == nil {
			r.length = n
		}
		if r.head || status == http.StatusNoContent || status == http.StatusNotModified {
			r.length = 0
		}
	}
	r.ResponseWriter.WriteHeader(status)
	r.checkWhole()
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if !r.written {
		r.WriteHeader(http.StatusOK)
	}
	r.liveAtWrite = r.clientLive()
	n, err := r.ResponseWriter.Write(b)
	r.bytes += n
	r.checkWhole()
	return n, err
}

// checkWhole marks the answer delivered if it has just become whole and
// the client had not gone when its last part was written: the status it
// is logged with is then the one sent, even if the client hangs up before
// the handler returns.
func (r *statusRecorder) checkWhole() {
	if r.whole || r.length < 0 || r.bytes < r.length {
		return
	}
	r.whole = true
	r.delivered = r.liveAtWrite
}

func (r *statusRecorder) clientLive() bool { return r.client != nil && r.client.Err() == nil }

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

type ctxKey int

const requestIDKey ctxKey = 0

// requestID is the request id in ctx: every admitted request's context
// has it (handle), as the logs of everything it calls (RequestIDHandler).
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// withID is r with its request id (responseID) in its context, for the
// paths outside handle that log or write a problem.
func withID(w http.ResponseWriter, r *http.Request) *http.Request {
	if requestID(r.Context()) != "" {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), requestIDKey, responseID(w)))
}

// responseID is the id withRequestID gave the request, read back from the
// answer's header.
func responseID(w http.ResponseWriter) string {
	if v := w.Header()["X-Request-Id"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// withRequestID gives every request an id, taken from X-Request-Id when the
// client or load balancer sent a sane one, and sends it back in
// X-Request-Id. Only the answer's header carries it from here: handle puts
// it in an admitted request's context, with the deadline, so that a
// request admission control refuses does not pay for a context and a copy
// of the request of its own.
func (s *server) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sent := r.Header["X-Request-Id"]; len(sent) > 0 && saneID(sent[0]) {
			// net/http only reads the answer's header values: the
			// request's own slice is shared, not copied.
			w.Header()["X-Request-Id"] = sent[:1:1]
		} else {
			w.Header()["X-Request-Id"] = []string{newRequestID()}
		}
		next.ServeHTTP(w, r)
	})
}

// newRequestID is a fresh request id: 16 hex digits of a random 64-bit
// number. It names a request in the logs and in a problem, no secret, so
// it comes from the runtime's fast per-thread generator rather than the
// operating system's (a system call a request, refusals included).
func newRequestID() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64()) // #nosec G404 -- a correlation id, not a secret: no one gains by guessing one
	return hex.EncodeToString(b[:])
}

func saneID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c == '-' || c == '_' || c == '.' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')) {
			return false
		}
	}
	return true
}

// withRecovery turns a panic into a 500 and a logged stack, not a dropped
// connection.
func (s *server) withRecovery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				r = withID(w, r)
				s.log.ErrorContext(r.Context(), "panic", "value", v)
				writeProblem(w, r, problem{Status: http.StatusInternalServerError, Code: shop.EINTERNAL, Detail: "internal error"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// RequestIDHandler adds the request id to every log record that has a
// context carrying one.
type RequestIDHandler struct{ slog.Handler }

// Handle implements slog.Handler.
func (h RequestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := requestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h RequestIDHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return RequestIDHandler{h.Handler.WithAttrs(a)}
}

// WithGroup implements slog.Handler.
func (h RequestIDHandler) WithGroup(name string) slog.Handler {
	return RequestIDHandler{h.Handler.WithGroup(name)}
}
