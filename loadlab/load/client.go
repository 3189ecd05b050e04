package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Client names the HTTP client implementation that sends the load.
type Client string

// The two clients. fasthttp reuses request and response objects and parses
// HTTP/1.1 with far fewer allocations; net/http is there for comparison
// and for targets that need HTTP/2.
const (
	ClientFastHTTP Client = "fasthttp"
	ClientNetHTTP  Client = "nethttp"
)

// outcome is what one request came to.
type outcome struct {
	status int
	kind   errorKind
	err    error // the client's error, for a transport failure
	// retryAfter is a failed answer's Retry-After (0 without one).
	retryAfter time.Duration
}

type errorKind uint8

const (
	okKind errorKind = iota
	status4xx
	status5xx
	timeoutKind
	connectionKind
	otherKind
	// buildFailed: a scenario could not build the request (counted as
	// other).
	buildFailed
	// aborted: the run was cancelled while the request was in flight; it
	// is not counted.
	aborted
)

// sender sends one request; wantBody asks for the body (scenarios capture
// values from it). Implementations are safe for concurrent use.
type sender interface {
	send(ctx context.Context, r *Request, wantBody bool, buf []byte) (outcome, []byte)
	close()
}

func classifyStatus(code int) errorKind {
	switch {
	case code >= 500:
		return status5xx
	case code >= 400:
		return status4xx
	}
	return okKind
}

// classifyErr sorts transport errors into timeouts, connection failures
// (refused, reset, closed, DNS) and the rest.
func classifyErr(err error) errorKind {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, fasthttp.ErrDialTimeout):
		return timeoutKind
	case errors.As(err, &ne) && ne.Timeout():
		return timeoutKind
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, fasthttp.ErrConnectionClosed),
		errors.Is(err, net.ErrClosed):
		return connectionKind
	}
	var op *net.OpError
	var dns *net.DNSError
	if errors.As(err, &op) || errors.As(err, &dns) {
		return connectionKind
	}
	return otherKind
}

// --- fasthttp ---

type fastSender struct {
	client  *fasthttp.Client
	timeout time.Duration
	conns   *trackedConns
}

// dialTCP opens fasthttp's connections (a test watches the timeouts it
// is given).
var dialTCP = (&fasthttp.TCPDialer{Concurrency: 0}).DialTimeout

func newFastSender(maxConns int, timeout time.Duration) *fastSender {
	conns := &trackedConns{}
	return &fastSender{timeout: timeout, conns: conns, client: &fasthttp.Client{
		// fasthttp by itself retries GET, HEAD and PUT up to 5 times after
		// any error, on new connections too, and never DELETE: a failure of
		// the target would be hidden. send retries as RFC 9110 allows
		// instead (retryable).
		RetryIfErr:                    func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		MaxConnsPerHost:               maxConns,
		MaxIdleConnDuration:           time.Minute,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		ReadBufferSize:                16 << 10,
		MaxConnWaitTimeout:            timeout,
		TLSConfig:                     &tls.Config{MinVersion: tls.VersionTLS12},
		// Connecting counts against the request's own timeout, as with
		// net/http: a Dial without one gave up after fasthttp's default 3 s,
		// and beside two CPU hogs, under the race detector, a run whose
		// pacer fell behind opened its new connections late and reported
		// up to 27 of 600 requests as failed that never reached a target
		// that would have answered them. fasthttp passes the time left to
		// the request's deadline, or 0 where it dials for a queued request
		// (then the whole timeout).
		DialTimeout: func(addr string, left time.Duration) (net.Conn, error) {
			if left <= 0 {
				left = timeout
			}
			c, err := dialTCP(addr, left)
			if err != nil {
				return nil, err
			}
			return conns.track(c), nil
		},
	}}
}

var fastReqPool = sync.Pool{New: func() any { return new(fasthttp.Request) }}
var fastRespPool = sync.Pool{New: func() any { return new(fasthttp.Response) }}

func (s *fastSender) send(ctx context.Context, r *Request, wantBody bool, buf []byte) (outcome, []byte) {
	req := fastReqPool.Get().(*fasthttp.Request)
	resp := fastRespPool.Get().(*fasthttp.Response)
	defer func() {
		req.Reset()
		resp.Reset()
		fastReqPool.Put(req)
		fastRespPool.Put(resp)
	}()
	req.SetRequestURI(r.URL)
	req.Header.SetMethod(r.Method)
	for k, vs := range r.Header {
		for _, v := range vs {
			if strings.EqualFold(k, "Host") {
				req.Header.SetHost(v)
				continue
			}
			req.Header.Add(k, v)
		}
	}
	if len(r.Body) > 0 {
		req.SetBodyRaw(r.Body)
	}
	deadline := time.Now().Add(s.timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	for attempt := 1; ; attempt++ {
		err := s.client.DoDeadline(req, resp, deadline)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return outcome{kind: aborted}, buf
		}
		// Nothing of an answer came on a connection that had served one:
		// the target closed it as it went idle (an nginx reload does).
		if attempt < maxAttempts && retryable(r.Method) && s.conns.failedIdle(resp.LocalAddr()) && time.Now().Before(deadline) {
			// Its siblings in the pool are likely closed too: a reload
			// closes all of an nginx worker's idle connections at once.
			s.client.CloseIdleConnections()
			continue
		}
		return outcome{kind: classifyErr(err), err: err}, buf
	}
	code := resp.StatusCode()
	// An error's body says why (a problem document's detail): keep it for
	// the error's sample. The buffer is reused, so this allocates only
	// while it grows.
	if wantBody || code >= 400 {
		buf = append(buf[:0], resp.Body()...)
	}
	out := outcome{status: code, kind: classifyStatus(code)}
	if code >= 400 {
		out.retryAfter = RetryAfter(string(resp.Header.Peek("Retry-After")), time.Now())
	}
	return out, buf
}

func (s *fastSender) close() { s.client.CloseIdleConnections() }

// --- net/http ---

type netSender struct {
	client *http.Client
	tr     *http.Transport
}

func newNetSender(maxConns int, timeout time.Duration) *netSender {
	tr := &http.Transport{
		Proxy:               nil, // the target is explicit: never a proxy from the environment
		DialContext:         (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		MaxConnsPerHost:     maxConns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
	}
	return &netSender{tr: tr, client: &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// Only the explicit target is loaded: redirects are results, not
		// invitations to load another URL.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (s *netSender) send(ctx context.Context, r *Request, wantBody bool, buf []byte) (outcome, []byte) {
	var body io.Reader
	if len(r.Body) > 0 {
		body = bytes.NewReader(r.Body) // no copy; NewRequest sets GetBody for retries
	}
	var resp *http.Response
	var err error
	for attempt := 1; ; attempt++ {
		var reused, answered atomic.Bool
		trace := &httptrace.ClientTrace{
			GotConn:              func(c httptrace.GotConnInfo) { reused.Store(c.Reused) },
			GotFirstResponseByte: func() { answered.Store(true) },
		}
		var req *http.Request
		req, err = http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), r.Method, r.URL, body)
		if err != nil {
			return outcome{kind: otherKind, err: err}, buf
		}
		for k, vs := range r.Header {
			if strings.EqualFold(k, "Host") && len(vs) > 0 {
				req.Host = vs[0]
				continue
			}
			req.Header[k] = vs
		}
		resp, err = s.client.Do(req)
		// Go's transport retries GET, HEAD, OPTIONS and TRACE itself when
		// a reused connection fails before any answer; PUT and DELETE are
		// as idempotent (RFC 9110 9.2.2), and retried here.
		if err == nil || ctx.Err() != nil || attempt >= maxAttempts || !retryable(r.Method) || !reused.Load() || answered.Load() {
			break
		}
		s.tr.CloseIdleConnections() // as for fasthttp: its siblings are likely closed too
		if len(r.Body) > 0 {
			body = bytes.NewReader(r.Body)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return outcome{kind: aborted}, buf
		}
		var ue *url.Error
		if errors.As(err, &ue) && ue.Timeout() {
			return outcome{kind: timeoutKind, err: err}, buf
		}
		return outcome{kind: classifyErr(err), err: err}, buf
	}
	buf = buf[:0]
	if wantBody || resp.StatusCode >= 400 {
		buf, err = readAppend(buf, resp.Body)
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	if err != nil {
		return outcome{kind: classifyErr(err), err: err}, buf
	}
	out := outcome{status: resp.StatusCode, kind: classifyStatus(resp.StatusCode)}
	if resp.StatusCode >= 400 {
		out.retryAfter = RetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return out, buf
}

// maxRetryAfter bounds a Retry-After: a longer one (or a date further
// ahead) counts as this long.
const maxRetryAfter = time.Hour

// RetryAfter reads a Retry-After header (RFC 9110: a number of seconds,
// or an HTTP date, taken against now) as a delay; 0 when absent, not
// understood or past.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return min(time.Duration(min(secs, int64(maxRetryAfter/time.Second)))*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return 0
}

func (s *netSender) close() { s.tr.CloseIdleConnections() }

// readAppend reads r to its end into buf, reusing buf's capacity (a
// session keeps one buffer for all its responses).
func readAppend(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// maxAttempts bounds the sends of one request whose reused connections
// fail before any answer. A reload closes all of an nginx worker's idle
// connections at once, so before a retry the idle pool is emptied and the
// retry most likely goes out on a new connection.
const maxAttempts = 3

// retryable says whether a request may be sent again without asking:
// its method is idempotent (RFC 9110 9.2.2), so sending it twice does
// what sending it once does. Only a failure on a reused connection before
// any byte of an answer is retried: the target closed a connection it
// had kept open as the request went out, a race of keep-alive and no
// failure of the target's; any other failure is counted.
func retryable(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// trackedConns follows fasthttp's connections (by local address), to
// tell a reused connection that failed before any answer from a new one:
// fasthttp reports both as "closed before the first response byte".
type trackedConns struct{ m sync.Map } // local address -> *trackedConn

func (t *trackedConns) track(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, owner: t}
	t.m.Store(c.LocalAddr().String(), tc)
	return tc
}

// failedIdle says whether the connection at local address addr (the
// last one a request used) had answered before and then failed with
// nothing read or written of the next exchange, and forgets it.
func (t *trackedConns) failedIdle(addr net.Addr) bool {
	if addr == nil {
		return false
	}
	v, ok := t.m.LoadAndDelete(addr.String())
	return ok && v.(*trackedConn).failedIdle.Load()
}

type trackedConn struct {
	net.Conn
	owner *trackedConns
	// served: an answer came before the current exchange; answered: bytes
	// of the current exchange's answer came (fasthttp writes a request,
	// then reads its answer, one exchange at a time).
	served, answered, failedIdle atomic.Bool
}

func (c *trackedConn) Write(p []byte) (int, error) {
	if c.answered.Swap(false) {
		c.served.Store(true) // a new exchange: the last one was answered
	}
	n, err := c.Conn.Write(p)
	if err != nil && c.served.Load() {
		c.failedIdle.Store(true)
	}
	return n, err
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.answered.Store(true)
	} else if err != nil && c.served.Load() && !c.answered.Load() {
		c.failedIdle.Store(true)
	}
	return n, err
}

// Close forgets the connection unless it failed idle: send asks about it
// after fasthttp has closed it.
func (c *trackedConn) Close() error {
	if !c.failedIdle.Load() {
		c.owner.m.CompareAndDelete(c.LocalAddr().String(), c)
	}
	return c.Conn.Close()
}
