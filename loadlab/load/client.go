package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
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
}

func newFastSender(maxConns int, timeout time.Duration) *fastSender {
	return &fastSender{timeout: timeout, client: &fasthttp.Client{
		MaxConnsPerHost:               maxConns,
		MaxIdleConnDuration:           time.Minute,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		ReadBufferSize:                16 << 10,
		MaxConnWaitTimeout:            timeout,
		TLSConfig:                     &tls.Config{MinVersion: tls.VersionTLS12},
		Dial:                          (&fasthttp.TCPDialer{Concurrency: 0}).Dial,
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
	timeout := s.timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	if err := s.client.DoTimeout(req, resp, timeout); err != nil {
		if ctx.Err() != nil {
			return outcome{kind: aborted}, buf
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
	return outcome{status: code, kind: classifyStatus(code)}, buf
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
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, body)
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
	resp, err := s.client.Do(req)
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
	return outcome{status: resp.StatusCode, kind: classifyStatus(resp.StatusCode)}, buf
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
