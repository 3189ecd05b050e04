package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop"
)

// lockedBuffer is a log sink the handler's goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) records() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var recs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			recs = append(recs, rec)
		}
	}
	return recs
}

// stallingOrders holds the first checkout until its client has gone: before the store call (nothing is
// committed, the store then fails on the cancelled context) or after it
// (the order is committed, the answer has nobody to go to).
type stallingOrders struct {
	shop.Ordering
	afterCommit bool
	entered     chan struct{}
	once        sync.Once
}

func (s *stallingOrders) PlaceOrder(ctx context.Context, p shop.PlaceOrder) (*shop.Order, bool, error) {
	first := false
	s.once.Do(func() { first = true })
	if !first {
		return s.Ordering.PlaceOrder(ctx, p)
	}
	if !s.afterCommit {
		s.entered <- struct{}{}
		<-ctx.Done()
		return s.Ordering.PlaceOrder(ctx, p)
	}
	o, created, err := s.Ordering.PlaceOrder(ctx, p)
	s.entered <- struct{}{}
	<-ctx.Done()
	return o, created, err
}

// A checkout whose client gives up mid-flight is logged at info level as
// 499 and counted as abandoned, not as a 2xx or 5xx answer nor in the
// latency histogram; a retry with the same key finds the order if it
// committed and makes it if it did not.
func TestAbandonedCheckoutIs499AndNotAnAnswer(t *testing.T) {
	for _, afterCommit := range []bool{false, true} {
		name := map[bool]string{false: "before commit", true: "after commit"}[afterCommit]
		t.Run(name, func(t *testing.T) {
			logs := &lockedBuffer{}
			stall := &stallingOrders{afterCommit: afterCommit, entered: make(chan struct{})}
			a := newAPI(t, options{logs: logs, orders: func(o shop.Ordering) shop.Ordering { stall.Ordering = o; return stall }})
			tok := a.session()
			a.add(tok, 1, 1)

			ctx, cancel := context.WithCancel(context.Background())
			body, _ := json.Marshal(ada)
			hr, _ := http.NewRequestWithContext(ctx, "POST", a.url+"/v1/orders", bytes.NewReader(body))
			hr.Header.Set("Content-Type", "application/json")
			hr.Header.Set("Authorization", "Bearer "+tok)
			hr.Header.Set("Idempotency-Key", "abandon-1")
			failed := make(chan error, 1)
			go func() {
				res, err := http.DefaultClient.Do(hr)
				if err == nil {
					res.Body.Close()
				}
				failed <- err
			}()
			<-stall.entered
			cancel()
			if err := <-failed; !errors.Is(err, context.Canceled) {
				t.Fatalf("the client's request ended with %v, want context.Canceled", err)
			}

			// The request line is written when the handler returns.
			var line map[string]any
			testwait.Eventually(t, 10*time.Second, func() error {
				for _, rec := range logs.records() {
					if rec["msg"] == "request" && rec["route"] == "POST /v1/orders" {
						line = rec
						return nil
					}
				}
				return errors.New("no request line for the abandoned checkout")
			})
			if line["status"] != float64(499) || line["level"] != "INFO" {
				t.Fatalf("request line %v, want status 499 at INFO", line)
			}
			for _, rec := range logs.records() {
				if rec["level"] == "ERROR" || rec["level"] == "WARN" {
					t.Fatalf("an abandoned request logged %v", rec)
				}
			}

			m := a.metrics()
			for _, want := range []string{
				`shop_http_requests_abandoned_total{route="POST /v1/orders"} 1`,
			} {
				if !strings.Contains(m, want) {
					t.Errorf("metrics lack %s", want)
				}
			}
			for _, unwanted := range []string{
				`shop_http_requests_total{code="201",route="POST /v1/orders"} 1`,
				`shop_http_requests_total{code="500",route="POST /v1/orders"} 1`,
				`shop_http_request_duration_seconds_count{code="2xx",route="POST /v1/orders"} 1`,
				`shop_http_request_duration_seconds_count{code="5xx",route="POST /v1/orders"} 1`,
			} {
				if strings.Contains(m, unwanted) {
					t.Errorf("the abandoned request was counted as answered: %s", unwanted)
				}
			}

			// The retry gets the committed order (200, replayed) or, when
			// nothing committed, makes it (201).
			retry := a.checkout(tok, "abandon-1", ada)
			want := map[bool]int{false: 201, true: 200}[afterCommit]
			if retry.status != want {
				t.Fatalf("retry: %d %s, want %d", retry.status, retry.body, want)
			}
			var list struct{ Orders []shop.Order }
			a.do(req{method: "GET", path: "/v1/orders", token: tok}).json(t, &list)
			if len(list.Orders) != 1 {
				t.Fatalf("%d orders after the retry, want 1", len(list.Orders))
			}
		})
	}
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
