package load

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/valyala/fasthttp"
)

func TestReadAppendReusesTheBuffer(t *testing.T) {
	want := strings.Repeat("0123456789", 1000)
	buf := make([]byte, 0, 8)
	buf, err := readAppend(buf[:0], iotest.HalfReader(strings.NewReader(want)))
	if err != nil || string(buf) != want {
		t.Fatalf("read %d bytes, err %v", len(buf), err)
	}
	grown := cap(buf)
	buf, err = readAppend(buf[:0], strings.NewReader("short"))
	if err != nil || string(buf) != "short" || cap(buf) != grown {
		t.Fatalf("second read %q (cap %d, was %d), err %v", buf, cap(buf), grown, err)
	}
	if _, err := readAppend(nil, iotest.ErrReader(bytes.ErrTooLarge)); err != bytes.ErrTooLarge {
		t.Fatalf("err = %v, want the reader's error", err)
	}
}

func TestTransportCauses(t *testing.T) {
	for _, tt := range []struct {
		out  outcome
		want string
	}{
		{outcome{kind: timeoutKind, err: fasthttp.ErrTimeout}, "timeout after 5s"},
		{outcome{kind: timeoutKind, err: fasthttp.ErrDialTimeout}, "timeout connecting"},
		{outcome{kind: connectionKind, err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, "connection refused"},
		{outcome{kind: connectionKind, err: &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}}, "no such host"},
		{outcome{kind: connectionKind, err: fasthttp.ErrConnectionClosed}, "connection closed by the target"},
		{outcome{kind: buildFailed, err: errors.New("step x: path")}, "request could not be built"},
	} {
		if got := transportCause(tt.out, "timeout after 5s"); got != tt.want {
			t.Errorf("%v: %q, want %q", tt.out.err, got, tt.want)
		}
	}
	for body, want := range map[string]string{
		`{"title":"Too Many Requests","detail":"slow down\nmore"}`: "slow down",
		`{"title":"Conflict"}`:      "Conflict",
		"<!DOCTYPE html><html>":     "",
		"plain reason\nsecond line": "plain reason",
		"":                          "",
	} {
		if got := bodySample([]byte(body)); got != want {
			t.Errorf("bodySample(%q) = %q, want %q", body, got, want)
		}
	}
}

// fasthttp's connections are given the request's timeout, not fasthttp's
// own 3 s: on a starved machine a run reported requests as failed that
// never reached the target, while net/http waited the whole timeout.
func TestConnectingHasTheRequestTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	var mu sync.Mutex
	var given []time.Duration
	dial := dialTCP
	defer func() { dialTCP = dial }()
	dialTCP = func(addr string, left time.Duration) (net.Conn, error) {
		mu.Lock()
		given = append(given, left)
		mu.Unlock()
		return dial(addr, left)
	}
	const timeout = 20 * time.Second
	s := newFastSender(4, timeout)
	defer s.close()
	if out, _ := s.send(context.Background(), &Request{Method: "GET", URL: srv.URL}, false, nil); out.kind != okKind {
		t.Fatalf("request failed: %v", out.err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(given) != 1 || given[0] <= fasthttp.DefaultDialTimeout || given[0] > timeout {
		t.Fatalf("connections dialled with timeouts %v, want one within the request's %v (fasthttp's own is %v)", given, timeout, fasthttp.DefaultDialTimeout)
	}
}
