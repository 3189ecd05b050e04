package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/perfscale/perfscale/shop/antipattern"
)

// Each anti-pattern switch, composed by New, does what it says; see
// docs/antipatterns.md. The store-specific ones run on PostgreSQL too
// (antipatterns_postgres_test.go); the SQL ones are held by the stores'
// own tests (storetest.RunBadQueries).

// running is a served App and its address.
type running struct {
	*App
	url  string
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve builds an App with cfg (an API on a free port, a small catalog,
// an admin token) and serves it until the test ends.
func serve(t *testing.T, cfg Config) *running {
	t.Helper()
	if cfg.Role == "" {
		cfg.Role = RoleAll
	}
	if cfg.DataDir == "" && cfg.DatabaseURL == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.Addr, cfg.SeedItems, cfg.Workers, cfg.AdminToken = "127.0.0.1:0", 12, 2, "admin"
	cfg.SessionLimit.Rate, cfg.ShutdownTimeout = -1, 10*time.Second
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	a, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("serve: %v", err)
		}
		a.Close()
	})
	return &running{App: a, url: fmt.Sprintf("http://127.0.0.1:%d", a.api.Port()), logs: logs}
}

// call sends a request and returns the status, the response and its body.
func call(t *testing.T, method, url, token string, body any, header ...string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (r *running) session(t *testing.T) string {
	t.Helper()
	code, _, body := call(t, "POST", r.url+"/v1/sessions", "", nil)
	var s struct{ Token string }
	if err := json.Unmarshal(body, &s); code != 201 || err != nil {
		t.Fatalf("create session: %d %s", code, body)
	}
	return s.Token
}

func (r *running) checkout(t *testing.T, token, key string) (int, []byte) {
	t.Helper()
	code, _, body := call(t, "POST", r.url+"/v1/orders", token,
		map[string]any{"customer_name": "Ada", "email": "ada@example.com"}, "Idempotency-Key", key)
	return code, body
}

func (r *running) storeCalls(t *testing.T, op string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "shop_store_call_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == op {
					n += float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return n
}

// A replica running a switch says so: a warning at start, the gauge, and
// /healthz; one running none says nothing.
func TestASwitchIsLoggedExportedAndShownByHealthz(t *testing.T) {
	r := serve(t, Config{Antipatterns: antipattern.Of(antipattern.NoCompression, antipattern.SyncMail)})
	for _, n := range []string{"sync-mail", "no-compression"} {
		if !strings.Contains(r.logs.String(), `"level":"WARN","msg":"anti-pattern switched on","antipattern":"`+n+`"`) {
			t.Errorf("no warning for %s in the start-up logs:\n%s", n, r.logs)
		}
	}
	if n := testutil.CollectAndCount(r.reg, "shop_antipattern"); n != 2 {
		t.Errorf("%d shop_antipattern series, want 2", n)
	}
	_, _, body := call(t, "GET", r.url+"/healthz", "", nil)
	if string(body) != `{"status":"ok","antipatterns":["sync-mail","no-compression"]}`+"\n" {
		t.Errorf("/healthz: %s", body)
	}

	plain := serve(t, Config{})
	_, _, body = call(t, "GET", plain.url+"/healthz", "", nil)
	if string(body) != `{"status":"ok"}`+"\n" || strings.Contains(plain.logs.String(), "anti-pattern") || testutil.CollectAndCount(plain.reg, "shop_antipattern") != 0 {
		t.Errorf("a replica without switches: /healthz %s, logs %s", body, plain.logs)
	}
}

func TestNoCompression(t *testing.T) {
	for _, tc := range []struct {
		on   bool
		want string
	}{{false, "br"}, {true, ""}} {
		cfg := Config{}
		if tc.on {
			cfg.Antipatterns = antipattern.Of(antipattern.NoCompression)
		}
		r := serve(t, cfg)
		code, h, _ := call(t, "GET", r.url+"/v1/menu", "", nil, "Accept-Encoding", "br, gzip")
		if code != 200 || h.Get("Content-Encoding") != tc.want {
			t.Errorf("no-compression %v: %d, Content-Encoding %q, want %q", tc.on, code, h.Get("Content-Encoding"), tc.want)
		}
	}
}

// no-cache: every menu request reads the menu from the store; with the
// caches, three requests read it once.
func TestNoCacheReadsTheStoreForEveryMenu(t *testing.T) {
	for _, tc := range []struct {
		on   bool
		want float64
	}{{false, 1}, {true, 3}} {
		cfg := Config{}
		if tc.on {
			cfg.Antipatterns = antipattern.Of(antipattern.NoCache)
		}
		r := serve(t, cfg)
		var bodies []string
		for _, enc := range []string{"gzip", "br", ""} {
			code, h, body := call(t, "GET", r.url+"/v1/menu", "", nil, "Accept-Encoding", enc)
			if code != 200 || h.Get("Content-Encoding") != enc || h.Get("Etag") == "" {
				t.Fatalf("no-cache %v: menu %d, Content-Encoding %q (asked %q)", tc.on, code, h.Get("Content-Encoding"), enc)
			}
			bodies = append(bodies, string(body))
		}
		if got := r.storeCalls(t, "menu"); got != tc.want {
			t.Errorf("no-cache %v: %v store menu reads for 3 menu requests, want %v", tc.on, got, tc.want)
		}
		if !strings.HasPrefix(bodies[2], `{"version":`) {
			t.Errorf("no-cache %v: identity menu %.40s", tc.on, bodies[2])
		}
	}
}

// sync-mail: the mail is recorded before the checkout's answer. An api
// replica runs no worker, so without the switch there is no mail at all.
func TestSyncMailSendsTheMailInsideTheCheckout(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg := Config{Role: RoleAPI}
		if on {
			cfg.Antipatterns = antipattern.Of(antipattern.SyncMail)
		}
		r := serve(t, cfg)
		token := r.session(t)
		call(t, "PUT", r.url+"/v1/cart/items/1", token, map[string]int{"quantity": 2})
		code, body := r.checkout(t, token, "k1")
		if code != 201 {
			t.Fatalf("checkout: %d %s", code, body)
		}
		var o struct{ ID int64 }
		json.Unmarshal(body, &o)
		mails, err := r.store.Mails(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if mailed := len(mails) == 1 && mails[0].OrderID == o.ID; mailed != on {
			t.Errorf("sync-mail %v: mails when the checkout answered: %+v", on, mails)
		}
		// A retry places nothing and mails nothing more.
		if code, body := r.checkout(t, token, "k1"); code != 200 {
			t.Fatalf("retried checkout: %d %s", code, body)
		}
		if mails, _ := r.store.Mails(t.Context()); on && len(mails) != 1 {
			t.Errorf("after a retry: %d mails", len(mails))
		}
	}
}

func TestExtraHopsSendsTheCheckoutThroughKHops(t *testing.T) {
	r := serve(t, Config{Antipatterns: antipattern.Of(antipattern.ExtraHops), Hops: 3})
	token := r.session(t)
	call(t, "PUT", r.url+"/v1/cart/items/2", token, map[string]int{"quantity": 1})
	if r.hops.Served() != 0 {
		t.Fatalf("%d hops before the checkout", r.hops.Served())
	}
	code, h, body := call(t, "POST", r.url+"/v1/orders", token,
		map[string]any{"customer_name": "Ada", "email": "ada@example.com"}, "Idempotency-Key", "k")
	if code != 201 || h.Get("X-Replica") == "" {
		t.Fatalf("checkout through hops: %d %v %s", code, h, body)
	}
	if r.hops.Served() != 3 {
		t.Fatalf("%d hops served for one checkout, want 3", r.hops.Served())
	}
	if code, _, _ := call(t, "GET", r.url+"/v1/orders", token, nil); code != 200 || r.hops.Served() != 3 {
		t.Fatalf("listing orders: %d, %d hops", code, r.hops.Served())
	}
}

// local-sessions: a session and its cart live in the replica that made
// them; the other replica does not know the token. Without the switch,
// both replicas share them through the database.
func TestLocalSessionsAreNotSeenByAnotherReplica(t *testing.T) {
	for _, on := range []bool{false, true} {
		checkLocalSessions(t, on, Config{DataDir: t.TempDir()})
	}
}

func checkLocalSessions(t *testing.T, on bool, base Config) {
	t.Helper()
	if on {
		base.Antipatterns = antipattern.Of(antipattern.LocalSessions)
	}
	a := serve(t, base)
	base.Role = RoleAPI
	b := serve(t, base)
	token := a.session(t)
	if code, _, body := call(t, "PUT", a.url+"/v1/cart/items/3", token, map[string]int{"quantity": 2}); code != 200 {
		t.Fatalf("cart on a: %d %s", code, body)
	}
	code, _, body := call(t, "GET", b.url+"/v1/cart", token, nil)
	if seen := code == 200; seen == on {
		t.Fatalf("local-sessions %v: the other replica answered the session's cart with %d %s", on, code, body)
	}
	if on && code != 401 {
		t.Fatalf("local-sessions: the other replica: %d %s, want 401", code, body)
	}
	// The replica that holds the cart checks it out as it is.
	code, body = a.checkout(t, token, "k")
	var o struct {
		Lines []struct {
			ItemID   int64 `json:"item_id"`
			Quantity int
		}
	}
	json.Unmarshal(body, &o)
	if code != 201 || len(o.Lines) != 1 || o.Lines[0].ItemID != 3 || o.Lines[0].Quantity != 2 {
		t.Fatalf("local-sessions %v: checkout %d %s", on, code, body)
	}
	if _, _, body := call(t, "GET", a.url+"/v1/cart", token, nil); !strings.Contains(string(body), `"lines":[]`) {
		t.Fatalf("local-sessions %v: the cart after checkout: %s", on, body)
	}
}

// local-cache: a replica serves the item as it read it, even after its
// own admin change; the shared layers' cache is invalidated at once.
func TestLocalCacheIsNotInvalidated(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg := Config{}
		if on {
			cfg.Antipatterns = antipattern.Of(antipattern.LocalCache)
		}
		r := serve(t, cfg)
		price := func() int64 {
			_, _, body := call(t, "GET", r.url+"/v1/items/4", "", nil)
			var it struct {
				PriceCents int64 `json:"price_cents"`
			}
			json.Unmarshal(body, &it)
			return it.PriceCents
		}
		before := price()
		if code, _, body := call(t, "PUT", r.url+"/v1/admin/items/4", "admin", map[string]int64{"price_cents": before + 100}); code != 200 {
			t.Fatalf("admin change: %d %s", code, body)
		}
		stale := price() == before
		if stale != on {
			t.Errorf("local-cache %v: after a price change the item costs %d (was %d)", on, price(), before)
		}
		if got := r.storeCalls(t, "item"); on && got != 1 {
			t.Errorf("local-cache: %v store item reads for 3 requests, want 1", got)
		}
	}
}

// no-pool on the embedded default: the read pool keeps no connection, so
// each request's reads open and close one.
func TestNoPoolOpensAConnectionPerRead(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg := Config{Antipatterns: antipattern.Of(antipattern.NoCache)}
		if on {
			cfg.Antipatterns = antipattern.Of(antipattern.NoCache, antipattern.NoPool)
		}
		r := serve(t, cfg)
		_, before := r.backend.SQLite.Stats()
		const n = 5
		for range n {
			if code, _, _ := call(t, "GET", r.url+"/v1/items/1", "", nil); code != 200 {
				t.Fatal(code)
			}
		}
		_, after := r.backend.SQLite.Stats()
		closed := after.MaxIdleClosed - before.MaxIdleClosed
		if (closed >= n) != on {
			t.Errorf("no-pool %v: %d read connections closed after %d requests", on, closed, n)
		}
	}
}
