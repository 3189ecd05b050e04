package antipattern

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestWithoutCompressionDropsAcceptEncoding(t *testing.T) {
	var seen string
	h := WithoutCompression(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Get("Accept-Encoding") + "|" }))
	r := httptest.NewRequest("GET", "/v1/menu", nil)
	r.Header.Set("Accept-Encoding", "br, gzip")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if seen != "|" {
		t.Fatalf("the handler saw Accept-Encoding %q", seen)
	}
}

// signalLock tells when a request asks for the lock, then waits for it.
type signalLock struct {
	Locker
	asked chan bool
}

func (l signalLock) Lock(ctx context.Context, write bool) (func(), error) {
	l.asked <- write
	return l.Locker.Lock(ctx, write)
}

// A write waits for the lock held by another write, and runs holding it;
// reads take it shared; health and event streams never take it.
func TestGlobalLockSerialisesRequests(t *testing.T) {
	pl := &ProcessLock{}
	lock := signalLock{Locker: pl, asked: make(chan bool, 10)}
	ran := make(chan string, 10)
	h := WithGlobalLock(lock, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pl.mu.TryLock() {
			pl.mu.Unlock()
			ran <- r.Method + " ran without the lock"
			return
		}
		ran <- r.Method
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	held, _ := pl.Lock(t.Context(), true) // another request's write
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/v1/orders", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	if write := <-lock.asked; !write {
		t.Fatal("a POST took the read lock")
	}
	// The POST asked for the lock while it was held: it cannot have run.
	select {
	case got := <-ran:
		t.Fatalf("%s while another write held the lock", got)
	default:
	}
	held()
	if got := <-ran; got != "POST" {
		t.Fatal(got)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{"/v1/menu", "/healthz", "/v1/orders/1/events"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := <-ran
		select {
		case write := <-lock.asked:
			if write || path != "/v1/menu" {
				t.Errorf("GET %s asked for the lock (write %v)", path, write)
			}
		default:
			if path == "/v1/menu" {
				t.Errorf("GET %s did not take the lock", path)
			}
		}
		if path == "/v1/menu" && got != "GET" {
			t.Errorf("GET %s: %s", path, got)
		}
	}
}

// A checkout passes through k hops, each an HTTP request to the internal
// listener, before the handler runs once; other requests take none, and a
// client cannot skip hops by sending the hop header.
func TestHopsSendCheckoutsThroughKHops(t *testing.T) {
	const k = 3
	var handled atomic.Int64
	hops, err := NewHops(k, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		if r.Header.Get(hopHeader) != "" {
			t.Error("the handler sees the hop header")
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer hops.Close()
	srv := httptest.NewServer(hops)
	defer srv.Close()

	req, _ := http.NewRequest("POST", srv.URL+"/v1/orders", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set(hopHeader, "guess 3")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || string(body) != "POST /v1/orders Bearer t" {
		t.Fatalf("checkout through hops: %d %s", resp.StatusCode, body)
	}
	if hops.Served() != k || handled.Load() != 1 {
		t.Fatalf("%d hops served and the handler ran %d times, want %d and 1", hops.Served(), handled.Load(), k)
	}
	resp, err = http.Get(srv.URL + "/v1/menu")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hops.Served() != k || handled.Load() != 2 {
		t.Fatalf("a menu request took hops: %d served", hops.Served())
	}
	// The internal listener refuses a request that is not a hop.
	resp, err = http.Post("http://"+hops.ln.Addr().String()+"/v1/orders", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || handled.Load() != 2 {
		t.Fatalf("a direct request to the hops' listener: %d", resp.StatusCode)
	}
}
