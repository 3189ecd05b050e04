package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/httpapi"
	"github.com/perfscale/perfscale/shop/postgres"
	"github.com/perfscale/perfscale/shop/postgres/pgtest"
	"github.com/perfscale/perfscale/shop/seed"
)

type answer struct {
	status     int
	retryAfter string
	ctype      string
	body       []byte
}

func do(t *testing.T, method, url, token, key, body string) answer {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return answer{}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header.Get("Retry-After"), res.Header.Get("Content-Type"), b}
}

// PostgreSQL going away while the service runs (its connections
// terminated, new ones refused) and coming back: /readyz fails, requests
// fail fast with 503 problem+json and Retry-After (never a 500), every
// checkout that was acknowledged is in the database exactly once, a retry
// of a checkout that got a 503 does not order twice, and the service
// recovers by itself. The shared server is not stopped: only this test's
// database is cut off.
func TestDatabaseGoneWhileRunningIs503AndRecovers(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	name := pgx.Identifier{pgtest.DatabaseName(url)}.Sanitize()
	cfg := backend.Config{DatabaseURL: url, Postgres: postgres.Options{ConnectTimeout: 2 * time.Second}}
	if _, err := backend.Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Seed(ctx, seed.Items(20)); err != nil {
		t.Fatal(err)
	}
	s := b.Store
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Config{Catalog: s, Sessions: s, Carts: s, Ordering: b.Desk, Health: s}))
	defer srv.Close()
	// Let the database back in whatever happens, so it can be dropped.
	defer pgtest.Exec(t, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS true`)

	buyers := startShoppers(t, srv.URL, false)
	defer buyers.Stop() // before the server closes, even if the test fails
	readyz := func(want int) func() error {
		return func() error {
			if got := do(t, "GET", srv.URL+"/readyz", "", "", "").status; got != want {
				return fmt.Errorf("/readyz answers %d, want %d", got, want)
			}
			return nil
		}
	}
	testwait.Eventually(t, 30*time.Second, atLeast("checkouts before the cut", &buyers.acked, 5))

	// Cut the database off: no new connections, every open one terminated.
	pgtest.Exec(t, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS false`)
	pgtest.Exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, pgtest.DatabaseName(url))
	testwait.Eventually(t, 30*time.Second, readyz(503))
	checkUnavailable(t, "item", do(t, "GET", srv.URL+"/v1/items/1", "", "", ""))
	start := time.Now()
	checkUnavailable(t, "menu", do(t, "GET", srv.URL+"/v1/menu", "", "", ""))
	if d := time.Since(start); d > cfg.Postgres.ConnectTimeout+time.Second {
		t.Errorf("a request took %v while the database was gone; it should fail fast", d)
	}
	refusedBefore := buyers.refused.Load()
	testwait.Eventually(t, 30*time.Second, atLeast("shoppers refused", &buyers.refused, refusedBefore+4))

	// Let it back in: the service recovers by itself.
	pgtest.Exec(t, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS true`)
	testwait.Eventually(t, 30*time.Second, readyz(200))
	after := buyers.acked.Load()
	testwait.Eventually(t, 30*time.Second, atLeast("checkouts", &buyers.acked, after+5))
	buyers.Stop()

	// Every acknowledged order is there, once; a retry of a refused
	// checkout never makes a second order for its key.
	seen := map[int64]bool{}
	for _, r := range buyers.results {
		switch r.status {
		case 201:
			if seen[r.orderID] {
				t.Fatalf("order %d acknowledged twice", r.orderID)
			}
			seen[r.orderID] = true
			if _, err := s.OrderByID(ctx, r.orderID); err != nil {
				t.Fatalf("acknowledged order %d is missing: %v", r.orderID, err)
			}
		default:
			// The client retries with the same key: either its order
			// committed before the connection died (200, the same order),
			// or it never was (the cart was emptied or not: 201 or 409).
			a := do(t, "POST", srv.URL+"/v1/orders", r.token, r.key, `{"customer_name": "Ada", "email": "ada@example.com"}`)
			if a.status != 200 && a.status != 201 && a.status != 409 {
				t.Fatalf("retry of %s: %d %s", r.key, a.status, a.body)
			}
		}
	}
	var orders int
	if err := b.Postgres.Pool().QueryRow(ctx, `SELECT COUNT(*) FROM orders`).Scan(&orders); err != nil {
		t.Fatal(err)
	}
	var keys int
	if err := b.Postgres.Pool().QueryRow(ctx, `SELECT COUNT(*) FROM idempotency_keys`).Scan(&keys); err != nil {
		t.Fatal(err)
	}
	if orders != keys || orders < len(seen) {
		t.Fatalf("%d orders for %d keys and %d acknowledged: an order without its key, or a lost one", orders, keys, len(seen))
	}
	t.Logf("%d checkouts acknowledged, %d refused with 503 while the database was gone", buyers.acked.Load(), buyers.refused.Load())
}

// checkUnavailable fails unless a is a 503 problem with Retry-After.
func checkUnavailable(t *testing.T, what string, a answer) {
	t.Helper()
	if a.status != 503 || a.retryAfter == "" || a.ctype != "application/problem+json" || !strings.Contains(string(a.body), `"code":"unavailable"`) {
		t.Errorf("%s while the database is gone: %d (Retry-After %q, %s) %s; want 503 problem+json with Retry-After", what, a.status, a.retryAfter, a.ctype, a.body)
	}
}

// shoppers check out in a loop against a service, four of them, each with
// its own session and Idempotency-Keys, until Stop; every refusal must be
// a 503 problem+json with Retry-After (checkUnavailable).
type shoppers struct {
	acked, refused atomic.Int64
	mu             sync.Mutex
	results        []checkoutResult // read after Stop
	stop           chan struct{}
	stopOnce       sync.Once
	wg             sync.WaitGroup
}

type checkoutResult struct {
	token, key string
	status     int
	orderID    int64
}

// startShoppers starts them on base; withMenu has each also read the
// menu after each checkout.
func startShoppers(t *testing.T, base string, withMenu bool) *shoppers {
	s := &shoppers{stop: make(chan struct{})}
	for c := range 4 {
		var sess struct{ Token string }
		json.Unmarshal(do(t, "POST", base+"/v1/sessions", "", "", "").body, &sess) //nolint:errcheck // checked by the requests that use it
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-s.stop:
					return
				default:
				}
				s.shop(t, base, sess.Token, fmt.Sprintf("c%d-%d", c, i), i%20+1, withMenu)
			}
		}()
	}
	return s
}

// shop puts one item in the cart, checks out, and reads the menu if asked.
func (s *shoppers) shop(t *testing.T, base, token, key string, item int, withMenu bool) {
	if a := do(t, "PUT", fmt.Sprintf("%s/v1/cart/items/%d", base, item), token, "", `{"quantity": 1}`); a.status != 200 {
		checkUnavailable(t, "cart", a)
		s.refused.Add(1)
		return
	}
	a := do(t, "POST", base+"/v1/orders", token, key, `{"customer_name": "Ada", "email": "ada@example.com"}`)
	var o struct{ ID int64 }
	json.Unmarshal(a.body, &o) //nolint:errcheck // a refusal has no id
	if a.status == 201 {
		s.acked.Add(1)
	} else {
		checkUnavailable(t, "checkout", a)
		s.refused.Add(1)
	}
	s.mu.Lock()
	s.results = append(s.results, checkoutResult{token, key, a.status, o.ID})
	s.mu.Unlock()
	if withMenu {
		if a := do(t, "GET", base+"/v1/menu", "", "", ""); a.status != 200 {
			checkUnavailable(t, "menu", a)
			s.refused.Add(1)
		}
	}
}

// Stop ends the shoppers and waits for them; it may be called again.
func (s *shoppers) Stop() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
}

// atLeast is a readiness check that n has reached want.
func atLeast(what string, n *atomic.Int64, want int64) func() error {
	return func() error {
		if got := n.Load(); got < want {
			return fmt.Errorf("%d %s, want %d", got, what, want)
		}
		return nil
	}
}
