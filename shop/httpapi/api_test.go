package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/cache"
	"github.com/perfscale/perfscale/shop/httpapi"
	"github.com/perfscale/perfscale/shop/instrument"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sqlite"
)

const adminToken = "test-admin-token"

type api struct {
	t        *testing.T
	url      string
	store    shop.Store
	orders   *shop.OrderDesk
	reg      *prometheus.Registry
	db       *sqlite.DB // the database itself, to see that a refusal changed nothing
	draining atomic.Bool
	// cfg is the handler's configuration, for a second replica over the
	// same state.
	cfg httpapi.Config
}

type options struct {
	items      []shop.Item
	worker     bool
	adminToken string
	// queryHook sees every statement the SQLite store runs.
	queryHook sqlite.QueryHook
	// logs receives the handler's JSON log; nil discards it.
	logs io.Writer
	// orders and carts, if set, wrap the orders and carts the handler gets.
	orders func(shop.Ordering) shop.Ordering
	carts  func(shop.CartService) shop.CartService
	// admission is the handler's admission control (off by default);
	// requestTimeout, if set, replaces every route's deadline.
	admission      httpapi.AdmissionConfig
	requestTimeout time.Duration
	// registry, if set, receives the metrics (else a private one).
	registry *prometheus.Registry
	// sessionLimit and trustedProxies configure the session rate limit.
	sessionLimit   httpapi.SessionLimit
	trustedProxies []netip.Prefix
	// feed and stream configure the order event streams.
	feed   httpapi.EventFeed
	stream httpapi.StreamConfig
	// serverTimeouts, if set, serves through httpapi.Server with these
	// read and write timeouts instead of httptest's server, which has none.
	serverTimeouts *[2]time.Duration
	// netHTTPRefusals serves (serveLoopback) with the fast path off.
	netHTTPRefusals bool
}

// newAPI serves the real handler on the real SQLite store (and, when asked,
// the real River worker) through httptest.
func newAPI(t *testing.T, o options) *api {
	t.Helper()
	a := &api{t: t, reg: httpapi.NewRegistry()}
	o.registry = a.reg
	h, b, cfg := compose(t, o, a.draining.Load)
	a.store, a.orders, a.cfg, a.db = b.Store, b.Desk, cfg, b.SQLite
	if o.serverTimeouts != nil {
		srv := &httpapi.Server{Addr: "127.0.0.1:0", Handler: h, ReadTimeout: o.serverTimeouts[0], WriteTimeout: o.serverTimeouts[1],
			Registry: a.reg, Logger: a.cfg.Logger}
		if err := srv.Open(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Close(ctx) //nolint:errcheck // a stream still open is cut
		})
		a.url = srv.URL()
		return a
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close) // runs before compose's cleanup: requests end first
	a.url = srv.URL
	return a
}

// compose builds the handler as cmd/shop does: the backend (store, timing
// wrapper, queue), the cache layer in front of it, the HTTP adapter.
func compose(tb testing.TB, o options, draining func() bool) (http.Handler, *backend.Backend, httpapi.Config) {
	tb.Helper()
	ctx := context.Background()
	if o.items == nil {
		o.items = seed.Items(seed.DefaultItems)
	}
	reg := o.registry
	if reg == nil {
		reg = httpapi.NewRegistry()
	}
	cfg := backend.Config{
		SQLitePath: filepath.Join(tb.TempDir(), "shop.db"),
		Jobs:       jobs.Config{Work: o.worker, PrepTime: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond},
		Wrap:       instrument.NewMetrics(reg).Wrap,
	}
	if o.queryHook != nil {
		cfg.SQLiteOptions = append(cfg.SQLiteOptions, sqlite.WithQueryHook(o.queryHook))
	}
	b, err := backend.Open(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := b.Seed(ctx, o.items); err != nil {
		tb.Fatal(err)
	}
	store := b.Store
	cached, err := cache.New(ctx, store, cache.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	orders := cached.Ordering(b.Desk)
	if o.orders != nil {
		orders = o.orders(orders)
	}
	var carts shop.CartService = store
	if o.carts != nil {
		carts = o.carts(carts)
	}
	var logger *slog.Logger
	if o.logs != nil {
		logger = slog.New(httpapi.RequestIDHandler{Handler: slog.NewJSONHandler(o.logs, &slog.HandlerOptions{Level: slog.LevelDebug})})
	}
	hcfg := httpapi.Config{
		Catalog: cached, Sessions: cached, Carts: carts, Ordering: orders, Health: store,
		Registry: reg, AdminToken: o.adminToken, AdminReads: b.AdminReads, Draining: draining, Logger: logger,
		OrderHistory: store, EventFeed: o.feed, Stream: o.stream,
		SessionLimit: o.sessionLimit, TrustedProxies: o.trustedProxies,
		Admission: o.admission, RequestTimeout: o.requestTimeout,
	}
	h := httpapi.NewHandler(hcfg)
	if err := b.Queue.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Queue.Stop(stop)
		b.Close()
	})
	return h, b, hcfg
}

// metrics is the registry's exposition, as the admin listener serves it.
func (a *api) metrics() string {
	a.t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

type response struct {
	status int
	header http.Header
	body   []byte
	close  bool // the server asked to close the connection (Connection: close)
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response %d is not JSON: %v\n%.300s", r.status, err, r.body)
	}
}

// problem checks that r is an RFC 9457 problem with the given status.
func (r response) problem(t *testing.T, status int) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	var p map[string]any
	r.json(t, &p)
	if p["status"] != float64(status) || p["title"] == "" || p["type"] == "" {
		t.Fatalf("problem document %v lacks status/title/type", p)
	}
	if d, _ := p["detail"].(string); len(d) < 10 {
		t.Fatalf("problem detail %q does not tell the client what to do", d)
	}
	// A client switches on the code: every problem has one.
	if c, _ := p["code"].(string); c == "" {
		t.Fatalf("problem document %v has no code", p)
	}
	return p
}

type req struct {
	method, path, token string
	body                any // string, []byte or a value to encode
	header              map[string]string
	chunked             bool // send the body with chunked transfer encoding
}

func (a *api) do(r req) response {
	a.t.Helper()
	var body io.Reader
	switch b := r.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		body = bytes.NewReader(enc)
	}
	if r.chunked && body != nil {
		body = struct{ io.Reader }{body} // length unknown: sent chunked
	}
	hr, err := http.NewRequest(r.method, a.url+r.path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	client := &http.Client{Transport: openAPICheck{t: a.t, next: http.DefaultTransport}}
	res, err := client.Do(hr)
	if err != nil {
		a.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b, close: res.Close}
}

func (a *api) session() string {
	a.t.Helper()
	r := a.do(req{method: "POST", path: "/v1/sessions"})
	if r.status != http.StatusCreated {
		a.t.Fatalf("create session: %d %s", r.status, r.body)
	}
	var s struct{ Token string }
	r.json(a.t, &s)
	return s.Token
}

func (a *api) add(token string, item int64, qty int) {
	a.t.Helper()
	r := a.do(req{method: "PUT", path: fmt.Sprintf("/v1/cart/items/%d", item), token: token, body: map[string]int{"quantity": qty}})
	if r.status != http.StatusOK {
		a.t.Fatalf("add item %d: %d %s", item, r.status, r.body)
	}
}

var ada = map[string]string{"customer_name": "Ada Lovelace", "email": "ada@example.com"}

func (a *api) checkout(token, key string, body any) response {
	return a.do(req{method: "POST", path: "/v1/orders", token: token, body: body, header: map[string]string{"Idempotency-Key": key}})
}

func TestMenuHasETagAndRevalidates(t *testing.T) {
	a := newAPI(t, options{adminToken: adminToken})
	r := a.do(req{method: "GET", path: "/v1/menu"})
	if r.status != 200 {
		t.Fatalf("menu: %d %s", r.status, r.body)
	}
	var m shop.Menu
	r.json(t, &m)
	n := 0
	for _, c := range m.Categories {
		n += len(c.Items)
	}
	if len(m.Categories) != 12 || n != seed.DefaultItems {
		t.Fatalf("menu has %d categories and %d items, want 12 and %d", len(m.Categories), n, seed.DefaultItems)
	}
	var raw struct {
		Categories []struct{ Items []map[string]any }
	}
	r.json(t, &raw)
	for _, field := range []string{"id", "name", "price_cents", "category", "available"} {
		if _, ok := raw.Categories[0].Items[0][field]; !ok {
			t.Errorf("menu items lack %q", field)
		}
	}
	etag := r.header.Get("ETag")
	if etag == "" {
		t.Fatal("menu has no ETag")
	}
	nm := a.do(req{method: "GET", path: "/v1/menu", header: map[string]string{"If-None-Match": etag}})
	if nm.status != http.StatusNotModified || len(nm.body) != 0 {
		t.Fatalf("revalidation: %d with %d bytes, want 304 and no body", nm.status, len(nm.body))
	}
	// An admin change is visible to the very next read.
	upd := a.do(req{method: "PUT", path: "/v1/admin/items/1", token: adminToken, body: map[string]int{"price_cents": 4321}})
	if upd.status != 200 {
		t.Fatalf("admin update: %d %s", upd.status, upd.body)
	}
	r2 := a.do(req{method: "GET", path: "/v1/menu", header: map[string]string{"If-None-Match": etag}})
	if r2.status != 200 || r2.header.Get("ETag") == etag {
		t.Fatalf("after a change: %d, etag %q (was %q)", r2.status, r2.header.Get("ETag"), etag)
	}
	if !bytes.Contains(r2.body, []byte(`"price_cents":4321`)) {
		t.Fatal("the menu does not show the new price")
	}
}

func TestItems(t *testing.T) {
	a := newAPI(t, options{})
	var it shop.Item
	r := a.do(req{method: "GET", path: "/v1/items/7"})
	r.json(t, &it)
	if r.status != 200 || it.ID != 7 || it.Name != seed.Item(6).Name {
		t.Fatalf("item 7: %d %+v", r.status, it)
	}
	a.do(req{method: "GET", path: "/v1/items/100000"}).problem(t, 404)

	// Walk the whole catalog with cursors.
	seen := 0
	path := "/v1/items?limit=64"
	for pages := 1; ; pages++ {
		r := a.do(req{method: "GET", path: path})
		var p struct {
			Items      []shop.Item
			NextCursor string `json:"next_cursor"`
		}
		r.json(t, &p)
		for i, it := range p.Items {
			if it.ID != int64(seen+i+1) {
				t.Fatalf("page %d: item %d has id %d", pages, i, it.ID)
			}
		}
		seen += len(p.Items)
		if p.NextCursor == "" {
			if pages != 4 {
				t.Fatalf("%d pages of 64 for %d items", pages, seed.DefaultItems)
			}
			break
		}
		path = "/v1/items?limit=64&cursor=" + p.NextCursor
	}
	if seen != seed.DefaultItems {
		t.Fatalf("walked %d items, want %d", seen, seed.DefaultItems)
	}
	var pizza struct{ Items []shop.Item }
	a.do(req{method: "GET", path: "/v1/items?category=pizza&limit=100"}).json(t, &pizza)
	if len(pizza.Items) == 0 {
		t.Fatal("no pizza")
	}
	for _, it := range pizza.Items {
		if it.Category != "pizza" {
			t.Fatalf("category filter let %+v through", it)
		}
	}

}

func TestSessionsAndAuthentication(t *testing.T) {
	a := newAPI(t, options{})
	tok := a.session()
	if len(tok) < 22 { // 128 bits in base64url
		t.Fatalf("token %q is shorter than 128 bits", tok)
	}
	if tok2 := a.session(); tok2 == tok {
		t.Fatal("two sessions got the same token")
	}
	for _, tc := range []struct{ name, auth string }{
		{"none", ""},
		{"not bearer", "Basic dXNlcjpwYXNz"},
		{"unknown token", "Bearer " + strings.Repeat("A", 43)},
		{"empty bearer", "Bearer "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.do(req{method: "GET", path: "/v1/cart", header: map[string]string{"Authorization": tc.auth}})
			r.problem(t, 401)
			if r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	a.do(req{method: "POST", path: "/v1/sessions", body: `{"admin": true}`}).problem(t, 400)
}

func TestCart(t *testing.T) {
	its := seed.Items(3)
	its[2].Available = false
	a := newAPI(t, options{items: its})
	tok := a.session()
	a.add(tok, 1, 2)
	// Every bad input and its status: TestBadInputIsRefusedAndChangesNothing.
	var c shop.Cart
	r := a.do(req{method: "PUT", path: "/v1/cart/items/2", token: tok, body: `{"quantity": 3}`})
	r.json(t, &c)
	if len(c.Lines) != 2 || c.TotalCents != 2*its[0].PriceCents+3*its[1].PriceCents {
		t.Fatalf("cart = %+v", c)
	}
	a.do(req{method: "PUT", path: "/v1/cart/items/1", token: tok, body: `{"quantity": 0}`}).json(t, &c)
	if len(c.Lines) != 1 || c.Lines[0].ItemID != 2 {
		t.Fatalf("after removing item 1: %+v", c)
	}
	if r := a.do(req{method: "DELETE", path: "/v1/cart", token: tok}); r.status != 204 {
		t.Fatalf("clear cart: %d", r.status)
	}
	a.do(req{method: "GET", path: "/v1/cart", token: tok}).json(t, &c)
	if len(c.Lines) != 0 {
		t.Fatalf("cart after DELETE = %+v", c)
	}
}

func TestCheckoutToConfirmedOrder(t *testing.T) {
	a := newAPI(t, options{worker: true})
	tok := a.session()
	a.add(tok, 1, 2)
	a.add(tok, 5, 1)

	a.checkout(tok, "", ada).problem(t, 400) // no Idempotency-Key
	a.checkout(tok, "k1", map[string]string{"customer_name": "Ada"}).problem(t, 400)
	a.checkout(tok, "k1", map[string]string{"customer_name": "Ada", "email": "nope"}).problem(t, 400)

	first := a.checkout(tok, "k1", ada)
	if first.status != http.StatusCreated {
		t.Fatalf("checkout: %d %s", first.status, first.body)
	}
	var o shop.Order
	first.json(t, &o)
	want := 2*seed.Item(0).PriceCents + seed.Item(4).PriceCents
	if o.Status != shop.StatusPlaced || o.TotalCents != want || len(o.Lines) != 2 {
		t.Fatalf("order = %+v, want placed with total %d", o, want)
	}
	if loc := first.header.Get("Location"); loc != fmt.Sprintf("/v1/orders/%d", o.ID) {
		t.Fatalf("Location = %q", loc)
	}
	// The same key and body: the same order, 200.
	again := a.checkout(tok, "k1", ada)
	var o2 shop.Order
	again.json(t, &o2)
	if again.status != http.StatusOK || o2.ID != o.ID {
		t.Fatalf("retry: %d order %d, want 200 order %d", again.status, o2.ID, o.ID)
	}
	// The same key and another body: 422.
	a.checkout(tok, "k1", map[string]string{"customer_name": "Ada Lovelace", "email": "other@example.com"}).problem(t, 422)
	// A new key with an empty cart: 409.
	a.checkout(tok, "k2", ada).problem(t, 409)

	// The worker confirms it (and later marks it ready).
	testwait.Eventually(t, 15*time.Second, func() error {
		var got shop.Order
		a.do(req{method: "GET", path: fmt.Sprintf("/v1/orders/%d", o.ID), token: tok}).json(t, &got)
		if got.Status != shop.StatusConfirmed && got.Status != shop.StatusReady {
			return fmt.Errorf("order still %q", got.Status)
		}
		return nil
	})
	mails, err := a.store.Mails(context.Background())
	if err != nil || len(mails) != 1 || mails[0].OrderID != o.ID {
		t.Fatalf("mails = %+v, %v; want one for order %d", mails, err, o.ID)
	}

	// Another session cannot see it.
	other := a.session()
	a.do(req{method: "GET", path: fmt.Sprintf("/v1/orders/%d", o.ID), token: other}).problem(t, 404)
	var list struct{ Orders []shop.Order }
	a.do(req{method: "GET", path: "/v1/orders", token: other}).json(t, &list)
	if len(list.Orders) != 0 {
		t.Fatalf("another session lists %d orders", len(list.Orders))
	}
	a.do(req{method: "GET", path: "/v1/orders", token: tok}).json(t, &list)
	if len(list.Orders) != 1 || list.Orders[0].ID != o.ID {
		t.Fatalf("own orders = %+v", list.Orders)
	}
	a.do(req{method: "GET", path: "/v1/orders?cursor=bad", token: tok}).problem(t, 400)
	a.do(req{method: "GET", path: "/v1/orders/zero", token: tok}).problem(t, 400)
}

func TestOrdersPageNewestFirst(t *testing.T) {
	a := newAPI(t, options{})
	tok := a.session()
	var ids []int64
	for i := range 5 {
		a.add(tok, int64(i+1), 1)
		var o shop.Order
		a.checkout(tok, fmt.Sprintf("k%d", i), ada).json(t, &o)
		ids = append(ids, o.ID)
	}
	var got []int64
	path := "/v1/orders?limit=2"
	for {
		var p struct {
			Orders     []shop.Order
			NextCursor string `json:"next_cursor"`
		}
		a.do(req{method: "GET", path: path, token: tok}).json(t, &p)
		for _, o := range p.Orders {
			got = append(got, o.ID)
		}
		if p.NextCursor == "" {
			break
		}
		path = "/v1/orders?limit=2&cursor=" + p.NextCursor
	}
	if fmt.Sprint(got) != fmt.Sprint([]int64{ids[4], ids[3], ids[2], ids[1], ids[0]}) {
		t.Fatalf("orders %v, want newest first of %v", got, ids)
	}
}

func TestConcurrentCheckoutsWithOneKeyMakeOneOrder(t *testing.T) {
	a := newAPI(t, options{})
	tok := a.session()
	a.add(tok, 1, 1)
	const n = 10
	var wg sync.WaitGroup
	statuses := make([]int, n)
	ids := make([]int64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := a.checkout(tok, "one-key", ada)
			statuses[i] = r.status
			var o shop.Order
			if json.Unmarshal(r.body, &o) == nil {
				ids[i] = o.ID
			}
		}()
	}
	wg.Wait()
	created := 0
	for i := range n {
		switch statuses[i] {
		case 201:
			created++
		case 200:
		default:
			t.Fatalf("request %d: status %d", i, statuses[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("different orders: %v", ids)
		}
	}
	if created != 1 {
		t.Fatalf("%d requests got 201, want exactly 1 (statuses %v)", created, statuses)
	}
	var list struct{ Orders []shop.Order }
	a.do(req{method: "GET", path: "/v1/orders", token: tok}).json(t, &list)
	if len(list.Orders) != 1 {
		t.Fatalf("%d orders, want 1", len(list.Orders))
	}
}

func TestOutOfStockIs409WithTheItems(t *testing.T) {
	its := seed.Items(2)
	its[0].Stock = 1
	a := newAPI(t, options{items: its})
	tok := a.session()
	a.add(tok, 1, 3)
	a.add(tok, 2, 1)
	p := a.checkout(tok, "k", ada).problem(t, 409)
	items, _ := p["items"].([]any)
	if len(items) != 1 {
		t.Fatalf("problem items = %v, want item 1 only", p["items"])
	}
	first := items[0].(map[string]any)
	if first["item_id"] != float64(1) || first["requested"] != float64(3) || first["available"] != float64(1) {
		t.Fatalf("shortage = %v", first)
	}
	var it shop.Item
	a.do(req{method: "GET", path: "/v1/items/2"}).json(t, &it)
	if it.Stock != its[1].Stock {
		t.Fatalf("a failed checkout reserved item 2: stock %d, want %d", it.Stock, its[1].Stock)
	}
}

// The price the customer saw: the cart showed one total, an admin raised a
// price, and checkout with the total seen is a 409 carrying the new cart,
// with nothing ordered; with the new total it goes through.
func TestCheckoutWithATotalThePricesNoLongerGiveIs409WithTheNewCart(t *testing.T) {
	a := newAPI(t, options{items: seed.Items(2), adminToken: adminToken})
	tok := a.session()
	var seen shop.Cart
	a.do(req{method: "PUT", path: "/v1/cart/items/1", token: tok, body: `{"quantity": 2}`}).json(t, &seen)
	r := a.do(req{method: "PUT", path: "/v1/admin/items/1", token: adminToken, body: `{"price_cents": 100000000}`})
	if r.status != 200 {
		t.Fatalf("admin price change: %d %s", r.status, r.body)
	}
	body := map[string]any{"customer_name": "Ada Lovelace", "email": "ada@example.com", "expected_total_cents": seen.TotalCents}
	p := a.checkout(tok, "k", body).problem(t, 409)
	var carried struct{ Cart shop.Cart }
	a.checkout(tok, "k", body).json(t, &carried)
	if carried.Cart.TotalCents != 200000000 || len(carried.Cart.Lines) != 1 || carried.Cart.Lines[0].UnitPriceCents != 100000000 {
		t.Fatalf("the 409 carries cart %+v, want the cart at the new price (problem %v)", carried.Cart, p)
	}
	if d, _ := p["detail"].(string); !strings.Contains(d, "2000000.00") {
		t.Fatalf("detail %q does not name the new total", d)
	}
	var list struct{ Orders []shop.Order }
	a.do(req{method: "GET", path: "/v1/orders", token: tok}).json(t, &list)
	if len(list.Orders) != 0 {
		t.Fatalf("a refused checkout ordered: %+v", list.Orders)
	}
	body["expected_total_cents"] = carried.Cart.TotalCents
	if r := a.checkout(tok, "k", body); r.status != 201 {
		t.Fatalf("checkout with the new total: %d %s", r.status, r.body)
	}
	bad := map[string]any{"customer_name": "Ada Lovelace", "email": "ada@example.com", "expected_total_cents": -1}
	a.checkout(tok, "k3", bad).problem(t, 400)
}

func TestAdmin(t *testing.T) {
	t.Run("disabled without a token", func(t *testing.T) {
		a := newAPI(t, options{items: seed.Items(2)})
		a.do(req{method: "PUT", path: "/v1/admin/items/1", token: "anything", body: `{"stock": 1}`}).problem(t, 403)
	})
	a := newAPI(t, options{items: seed.Items(2), adminToken: adminToken})
	a.do(req{method: "PUT", path: "/v1/admin/items/1", body: `{"stock": 1}`}).problem(t, 401)
	a.do(req{method: "PUT", path: "/v1/admin/items/1", token: "wrong", body: `{"stock": 1}`}).problem(t, 403)
	a.do(req{method: "PUT", path: "/v1/admin/items/1", token: a.session(), body: `{"stock": 1}`}).problem(t, 403)

	a.do(req{method: "PUT", path: "/v1/admin/items/9", token: adminToken, body: `{"stock": 1}`}).problem(t, 404)
	var it shop.Item
	r := a.do(req{method: "PUT", path: "/v1/admin/items/1", token: adminToken, body: `{"stock": 0, "available": false, "price_cents": 995}`})
	r.json(t, &it)
	if r.status != 200 || it.Stock != 0 || it.Available || it.PriceCents != 995 {
		t.Fatalf("update: %d %+v", r.status, it)
	}
	var m shop.Menu
	a.do(req{method: "GET", path: "/v1/menu"}).json(t, &m)
	for _, c := range m.Categories {
		for _, mi := range c.Items {
			if mi.ID == 1 {
				t.Fatal("an unavailable item is on the menu")
			}
		}
	}
}

func TestOperations(t *testing.T) {
	a := newAPI(t, options{items: seed.Items(2)})
	if r := a.do(req{method: "GET", path: "/healthz"}); r.status != 200 {
		t.Fatalf("healthz: %d", r.status)
	}
	if r := a.do(req{method: "GET", path: "/readyz"}); r.status != 200 {
		t.Fatalf("readyz: %d", r.status)
	}
	a.do(req{method: "GET", path: "/v1/menu"})
	a.do(req{method: "GET", path: "/v1/items/99"})
	// /metrics is served on the admin listener only (cmd/shop), never here.
	a.do(req{method: "GET", path: "/metrics"}).problem(t, 404)
	m := response{status: 200, body: []byte(a.metrics())}
	for _, want := range []string{
		`shop_http_requests_total{code="200",route="GET /v1/menu"} 1`,
		`shop_http_requests_total{code="404",route="GET /v1/items/{id}"} 1`,
		`shop_http_request_duration_seconds_bucket{code="2xx",route="GET /v1/menu",le=`,
		`shop_http_requests_in_flight{route="GET /v1/menu"} 0`,
		`shop_store_call_duration_seconds_count{op="menu",outcome="ok"} 1`,
		`shop_store_call_duration_seconds_count{op="item",outcome="refused"} 1`,
		`go_goroutines`, `process_cpu_seconds_total`,
	} {
		if !bytes.Contains(m.body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	doc := a.do(req{method: "GET", path: "/openapi.json"})
	var spec struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	doc.json(t, &spec)
	if doc.status != 200 || !strings.HasPrefix(spec.OpenAPI, "3.1") || spec.Paths["/v1/orders"] == nil {
		t.Fatalf("/openapi.json: %d, openapi %q", doc.status, spec.OpenAPI)
	}
	if a.do(req{method: "GET", path: "/v1/menu"}).close {
		t.Fatal("Connection: close before draining, want keep-alive")
	}
	a.draining.Store(true)
	a.do(req{method: "GET", path: "/readyz"}).problem(t, 503)
	if r := a.do(req{method: "GET", path: "/healthz"}); r.status != 200 {
		t.Fatalf("healthz while draining: %d", r.status)
	}
	// Draining still serves, and retires each connection after its answer.
	r := a.do(req{method: "GET", path: "/v1/menu"})
	if r.status != 200 || !r.close {
		t.Fatalf("menu while draining: %d, close %v; want 200 and Connection: close", r.status, r.close)
	}
}

// TestUnknownRoutesAreProblems: a path no route serves is "not_found" as
// an id that does not exist is, and a method a route does not take is
// "method_not_allowed" with the methods it takes in Allow: a client
// switching on the code found none for a 405.
func TestUnknownRoutesAreProblems(t *testing.T) {
	a := newAPI(t, options{items: seed.Items(1)})
	tok := a.session()
	tests := []struct {
		name, method, path string
		status             int
		code               string
		allow              []string // methods Allow must name; nil: no Allow
	}{
		{"unknown path", "GET", "/v2/menu", 404, shop.ENOTFOUND, nil},
		{"unknown path under a route's prefix", "GET", "/v1/menu/extra", 404, shop.ENOTFOUND, nil},
		{"DELETE the menu", "DELETE", "/v1/menu", 405, "method_not_allowed", []string{"GET"}},
		{"PUT the sessions", "PUT", "/v1/sessions", 405, "method_not_allowed", []string{"POST"}},
		{"PATCH an order", "PATCH", "/v1/orders/1", 405, "method_not_allowed", []string{"GET"}},
		{"POST a cart line", "POST", "/v1/cart/items/1", 405, "method_not_allowed", []string{"PUT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.do(req{method: tt.method, path: tt.path, token: tok})
			p := r.problem(t, tt.status)
			if p["code"] != tt.code {
				t.Errorf("code %v, want %q", p["code"], tt.code)
			}
			allow := r.header.Get("Allow")
			if tt.allow == nil && allow != "" {
				t.Errorf("Allow = %q on a %d", allow, tt.status)
			}
			for _, m := range tt.allow {
				if !strings.Contains(allow, m) || !strings.Contains(p["detail"].(string), m) {
					t.Errorf("Allow = %q, detail %q: want both to name %s", allow, p["detail"], m)
				}
			}
		})
	}
}

// TestRefusalsOfTheHTTPLayerHaveCodes: the refusals made before any
// domain code runs (wrong media type, too large a body, too many new
// sessions) carry a code of their own, as a domain refusal does.
func TestRefusalsOfTheHTTPLayerHaveCodes(t *testing.T) {
	a := newAPI(t, options{items: seed.Items(1), sessionLimit: httpapi.SessionLimit{Rate: 0.001, Burst: 1}})
	tok := a.session() // the only session the limit lets through
	big := `{"quantity": 1, "pad": "` + strings.Repeat("x", 70<<10) + `"}`
	tests := []struct {
		name   string
		r      req
		status int
		code   string
	}{
		{"text/plain body", req{method: "PUT", path: "/v1/cart/items/1", token: tok, body: `{"quantity": 1}`,
			header: map[string]string{"Content-Type": "text/plain"}}, 415, "unsupported_media_type"},
		{"body over 64 KiB", req{method: "PUT", path: "/v1/cart/items/1", token: tok, body: big}, 413, "too_large"},
		{"a session over the limit", req{method: "POST", path: "/v1/sessions"}, 429, "too_many_requests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p := a.do(tt.r).problem(t, tt.status); p["code"] != tt.code {
				t.Errorf("code %v, want %q", p["code"], tt.code)
			}
		})
	}
}

func TestRequestIDs(t *testing.T) {
	a := newAPI(t, options{items: seed.Items(1)})
	r := a.do(req{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": "abc-123"}})
	if r.header.Get("X-Request-Id") != "abc-123" {
		t.Fatalf("request id %q, want the client's", r.header.Get("X-Request-Id"))
	}
	r = a.do(req{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": "bad id\twith spaces"}})
	if id := r.header.Get("X-Request-Id"); id == "" || strings.Contains(id, " ") {
		t.Fatalf("request id %q, want a fresh one", id)
	}
	p := a.do(req{method: "GET", path: "/v1/items/99"}).problem(t, 404)
	if p["request_id"] == "" || p["request_id"] == nil {
		t.Fatal("problem has no request_id")
	}
}

func TestServerDrainsInFlightRequestsOnClose(t *testing.T) {
	// The handler holds its request until the test has seen Close begin
	// (new connections refused) and not end: no wall-clock window decides
	// whether the request was still in flight.
	started, release := make(chan struct{}), make(chan struct{})
	srv := &httpapi.Server{Addr: "127.0.0.1:0", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	if srv.Port() == 0 {
		t.Fatal("no port")
	}
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		res, err := http.Get(srv.URL() + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		got <- result{string(b), err}
	}()
	<-started
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- srv.Close(ctx) }()
	addr := strings.TrimPrefix(srv.URL(), "http://")
	testwait.Eventually(t, 10*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil
		}
		c.Close()
		return errors.New("the server still accepts connections after Close began")
	})
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a request was in flight", err)
	default:
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request: %q, %v; want it to finish", r.body, r.err)
	}
	if _, err := http.Get(srv.URL()); err == nil {
		t.Fatal("the server still accepts connections after Close")
	}
}
