package load

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A duration-bounded open-loop run sends exactly the requests scheduled
// before its end, however late the stop timer fires: here it fires only
// once the server has seen twice the scheduled count (a busy machine's
// late timer, without a sleep), and the run must not have sent more.
func TestOpenLoopSendsNothingScheduledAfterTheEnd(t *testing.T) {
	const rate, want = 1000, 50 // 50 ms at 1,000 req/s: due at 0 to 49 ms
	var (
		mu       sync.Mutex
		fireStop func()
		served   atomic.Int64
	)
	stopAfter = func(_ time.Duration, f func()) *time.Timer {
		mu.Lock()
		fireStop = f
		mu.Unlock()
		return time.NewTimer(time.Hour)
	}
	defer func() { stopAfter = time.AfterFunc }()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if served.Add(1) == 2*want {
			mu.Lock()
			fireStop()
			mu.Unlock()
		}
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{Rate: rate, Duration: want * time.Second / rate, Target: &Request{Method: "GET", URL: srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != want || served.Load() != want {
		t.Fatalf("%d requests recorded, %d served; want the %d scheduled before the end", res.Requests, served.Load(), want)
	}
}

// A pacer that runs behind its schedule when the duration's wall-clock
// end comes (a busy machine) still sends every request due before the
// end: here the stop timer fires before the first request, and the run
// must send all of them.
func TestOpenLoopSendsEverythingScheduledBeforeTheEnd(t *testing.T) {
	const rate, want = 1000, 50
	var served atomic.Int64
	stopAfter = func(_ time.Duration, f func()) *time.Timer {
		f()
		return time.NewTimer(time.Hour)
	}
	defer func() { stopAfter = time.AfterFunc }()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	defer srv.Close()
	res, err := Run(context.Background(), Config{Rate: rate, Duration: want * time.Second / rate, Target: &Request{Method: "GET", URL: srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != want || res.Sent != want || served.Load() != want {
		t.Fatalf("%d requests recorded, %d sent, %d served; want the %d scheduled before the end", res.Requests, res.Sent, served.Load(), want)
	}
}
