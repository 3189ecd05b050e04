package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/httpapi"
	"github.com/perfscale/perfscale/shop/seed"
)

// The security baseline: each row of the OWASP API Security Top 10 (2023)
// that applies to this API, as a test against the real handler on the
// embedded store. Rows that do not apply, and why:
//   - API6 (sensitive business flows): the flow worth automating is
//     checkout, and what bounds it is stock (never oversold: storetest's
//     races) and one order per Idempotency-Key (TestConcurrentCheckouts...);
//     there is no sign-up, voucher or reservation to farm.
//   - API10 (unsafe consumption of APIs): the service calls no third-party
//     API; its only peers are its own database, cache and bus.
// API8 (misconfiguration) and API9 (inventory) are held elsewhere too:
// every error is problem+json (TestUnknownRoutesAreProblems, the OpenAPI
// check on every test request) and openapi.json lists exactly the served
// routes (TestOpenAPIMatchesTheRoutes); their rows here check what an
// attacker probes first.

// owaspFixture is the victim and the attacker of the object-level rows:
// two sessions, the victim with an order and a cart of its own.
type owaspFixture struct {
	victim, attacker string
	order            int64
	key              string // the victim's Idempotency-Key
}

func newOWASPFixture(t *testing.T, a *api) owaspFixture {
	t.Helper()
	f := owaspFixture{victim: a.session(), attacker: a.session(), key: "victim-order-1"}
	a.add(f.victim, 1, 2)
	r := a.checkout(f.victim, f.key, ada)
	if r.status != http.StatusCreated {
		t.Fatalf("victim's checkout: %d %s", r.status, r.body)
	}
	var o shop.Order
	r.json(t, &o)
	f.order = o.ID
	a.add(f.victim, 2, 1) // a cart the attacker must not see or change
	return f
}

func TestOWASPAPISecurityTop10(t *testing.T) {
	a := newAPI(t, options{items: seed.Items(3), adminToken: adminToken,
		stream: httpapi.StreamConfig{MaxPerSession: 2}})
	f := newOWASPFixture(t, a)
	for _, row := range []struct {
		risk  string
		check func(t *testing.T, a *api, f owaspFixture)
	}{
		{"API1 object-level authorization: another session's order is not found", bolaOrder},
		{"API1 object-level authorization: another session's order is not listed", bolaOrderList},
		{"API1 object-level authorization: another session's order events are not found", bolaEvents},
		{"API1 object-level authorization: a cart is its session's only", bolaCart},
		{"API1 object-level authorization: another session's Idempotency-Key replays nothing of it", bolaIdempotencyKey},
		{"API2 authentication: every session route wants a valid bearer token", authRequired},
		{"API2 authentication: a token is taken from the Authorization header only", authNotFromQuery},
		{"API2 authentication: the admin token is not a session", authAdminTokenIsNoSession},
		{"API3 property-level authorization: checkout takes no price, status, total or owner", propertyCheckout},
		{"API3 property-level authorization: the cart takes no price", propertyCart},
		{"API3 property-level authorization: a session is created with no properties", propertySession},
		{"API3 property-level authorization: an order shows no owner or token", propertyOrderExposure},
		{"API3 property-level authorization: an admin change takes no id or name", propertyAdmin},
		{"API4 resource consumption: a body over 64 KiB is 413", resourceBody},
		{"API4 resource consumption: a page over 100 is 400", resourcePageSize},
		{"API4 resource consumption: a quantity past the cap is 400", resourceQuantity},
		{"API4 resource consumption: event streams are capped per session", resourceStreams},
		{"API5 function-level authorization: admin routes want the admin token", functionAdmin},
		{"API5 function-level authorization: operations and profiling are not public", functionOps},
		{"API7 SSRF: no request takes a URL", ssrfNoURLInput},
		{"API8 misconfiguration: errors say nothing of the internals", misconfigErrors},
	} {
		t.Run(row.risk, func(t *testing.T) { row.check(t, a, f) })
	}
	// Sessions per client need a replica of their own: its limit would
	// refuse the sessions the other rows make.
	t.Run("API4 resource consumption: sessions per client are rate limited", resourceSessions)
}

func bolaOrder(t *testing.T, a *api, f owaspFixture) {
	path := fmt.Sprintf("/v1/orders/%d", f.order)
	if r := a.do(req{method: "GET", path: path, token: f.victim}); r.status != http.StatusOK {
		t.Fatalf("the owner reads its order: %d %s", r.status, r.body)
	}
	// 404, not 403: the attacker does not learn that the id exists.
	other := a.do(req{method: "GET", path: path, token: f.attacker}).problem(t, http.StatusNotFound)
	noID := f.order + 1<<20
	missing := a.do(req{method: "GET", path: fmt.Sprintf("/v1/orders/%d", noID), token: f.attacker}).problem(t, http.StatusNotFound)
	delete(other, "request_id")
	delete(missing, "request_id")
	o, m := fmt.Sprint(other), strings.ReplaceAll(fmt.Sprint(missing), fmt.Sprint(noID), fmt.Sprint(f.order))
	if o != m {
		t.Errorf("another's order and a missing one answer differently:\n%s\n%s", o, m)
	}
}

func bolaOrderList(t *testing.T, a *api, f owaspFixture) {
	var page struct{ Orders []shop.Order }
	a.do(req{method: "GET", path: "/v1/orders?limit=100", token: f.attacker}).json(t, &page)
	for _, o := range page.Orders {
		if o.ID == f.order {
			t.Fatalf("the attacker's list has the victim's order %d", o.ID)
		}
	}
}

func bolaEvents(t *testing.T, a *api, f owaspFixture) {
	path := fmt.Sprintf("/v1/orders/%d/events", f.order)
	r := a.do(req{method: "GET", path: path, token: f.attacker, header: map[string]string{"Accept": "text/event-stream"}})
	r.problem(t, http.StatusNotFound)
	// Nor by guessing ids of events the owner already saw.
	r = a.do(req{method: "GET", path: path, token: f.attacker, header: map[string]string{"Accept": "text/event-stream", "Last-Event-ID": "1"}})
	r.problem(t, http.StatusNotFound)
}

func bolaCart(t *testing.T, a *api, f owaspFixture) {
	before := a.do(req{method: "GET", path: "/v1/cart", token: f.victim})
	var attackers shop.Cart
	a.do(req{method: "GET", path: "/v1/cart", token: f.attacker}).json(t, &attackers)
	if len(attackers.Lines) != 0 {
		t.Fatalf("a new session's cart shows %+v", attackers.Lines)
	}
	// The cart has no id to name: whatever the attacker does acts on its own.
	a.add(f.attacker, 2, 5)
	if r := a.do(req{method: "DELETE", path: "/v1/cart", token: f.attacker}); r.status != http.StatusNoContent {
		t.Fatalf("clear own cart: %d %s", r.status, r.body)
	}
	after := a.do(req{method: "GET", path: "/v1/cart", token: f.victim})
	if string(before.body) != string(after.body) {
		t.Fatalf("the victim's cart changed:\n%s\n%s", before.body, after.body)
	}
}

func bolaIdempotencyKey(t *testing.T, a *api, f owaspFixture) {
	a.add(f.attacker, 3, 1)
	r := a.checkout(f.attacker, f.key, ada)
	if r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("the victim's key from another session: %d (replayed %q), want a new order 201", r.status, r.header.Get("Idempotent-Replayed"))
	}
	var o shop.Order
	r.json(t, &o)
	if o.ID == f.order {
		t.Fatal("the victim's key gave the attacker the victim's order")
	}
}

// sessionRoutes are the routes a session token opens.
var sessionRoutes = []struct{ method, path string }{
	{"GET", "/v1/cart"}, {"PUT", "/v1/cart/items/1"}, {"DELETE", "/v1/cart"},
	{"POST", "/v1/orders"}, {"GET", "/v1/orders"}, {"GET", "/v1/orders/1"}, {"GET", "/v1/orders/1/events"},
}

func authRequired(t *testing.T, a *api, _ owaspFixture) {
	for _, rt := range sessionRoutes {
		for _, auth := range []string{"", "Bearer", "Bearer " + strings.Repeat("A", 43), "Basic dXNlcjpwYXNz", "Bearer " + strings.Repeat("A", 600)} {
			r := a.do(req{method: rt.method, path: rt.path, header: map[string]string{"Authorization": auth, "Idempotency-Key": "k"}, body: `{"quantity": 1}`})
			r.problem(t, http.StatusUnauthorized)
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with %.20q: 401 without WWW-Authenticate", rt.method, rt.path, auth)
			}
		}
	}
}

func authNotFromQuery(t *testing.T, a *api, f owaspFixture) {
	for _, name := range []string{"token", "access_token", "session"} {
		r := a.do(req{method: "GET", path: "/v1/cart?" + name + "=" + f.victim})
		r.problem(t, http.StatusUnauthorized)
	}
	r := a.do(req{method: "GET", path: "/v1/cart", header: map[string]string{"Cookie": "token=" + f.victim}})
	r.problem(t, http.StatusUnauthorized)
}

func authAdminTokenIsNoSession(t *testing.T, a *api, _ owaspFixture) {
	a.do(req{method: "GET", path: "/v1/cart", token: adminToken}).problem(t, http.StatusUnauthorized)
}

func propertyCheckout(t *testing.T, a *api, f owaspFixture) {
	a.add(f.attacker, 1, 1)
	for _, field := range []string{`"price_cents": 1`, `"total_cents": 1`, `"status": "ready"`, `"session_id": 1`, `"owner": 1`, `"id": 1`, `"lines": []`} {
		body := `{"customer_name": "Mallory", "email": "m@example.com", ` + field + `}`
		r := a.checkout(f.attacker, "prop-"+field[1:5], body)
		r.problem(t, http.StatusBadRequest)
	}
	// A plain checkout is priced by the catalog.
	r := a.checkout(f.attacker, "prop-plain", ada)
	var o shop.Order
	r.json(t, &o)
	if r.status != http.StatusCreated || o.Status != shop.StatusPlaced {
		t.Fatalf("plain checkout: %d %+v", r.status, o)
	}
	price := seed.Items(3)[0].PriceCents
	for _, l := range o.Lines {
		if l.ItemID == 1 && l.UnitPriceCents != price {
			t.Fatalf("item 1 charged %d, the catalog says %d", l.UnitPriceCents, price)
		}
	}
}

func propertyCart(t *testing.T, a *api, f owaspFixture) {
	for _, body := range []string{`{"quantity": 1, "price_cents": 1}`, `{"quantity": 1, "unit_price_cents": 1}`, `{"quantity": 1, "Quantity": 2}`} {
		r := a.do(req{method: "PUT", path: "/v1/cart/items/1", token: f.attacker, body: body})
		r.problem(t, http.StatusBadRequest)
	}
}

func propertySession(t *testing.T, a *api, _ owaspFixture) {
	for _, body := range []string{`{"admin": true}`, `{"expires_at": "2099-01-01T00:00:00Z"}`, `{"token": "chosen"}`} {
		a.do(req{method: "POST", path: "/v1/sessions", body: body}).problem(t, http.StatusBadRequest)
	}
}

func propertyOrderExposure(t *testing.T, a *api, f owaspFixture) {
	var o map[string]any
	a.do(req{method: "GET", path: fmt.Sprintf("/v1/orders/%d", f.order), token: f.victim}).json(t, &o)
	for k := range o {
		if strings.Contains(k, "session") || strings.Contains(k, "token") || strings.Contains(k, "idempotency") {
			t.Errorf("an order shows %q", k)
		}
	}
}

func propertyAdmin(t *testing.T, a *api, _ owaspFixture) {
	for _, body := range []string{`{"id": 2}`, `{"name": "x"}`, `{"price_cents": -1}`, `{"stock": -5}`} {
		a.do(req{method: "PUT", path: "/v1/admin/items/1", token: adminToken, body: body}).problem(t, http.StatusBadRequest)
	}
}

func resourceBody(t *testing.T, a *api, f owaspFixture) {
	big := `{"customer_name": "` + strings.Repeat("a", 65<<10) + `", "email": "a@example.com"}`
	a.checkout(f.attacker, "big", big).problem(t, http.StatusRequestEntityTooLarge)
	r := a.do(req{method: "PUT", path: "/v1/cart/items/1", token: f.attacker, body: strings.Repeat(" ", 65<<10) + `{"quantity": 1}`, chunked: true})
	r.problem(t, http.StatusRequestEntityTooLarge)
}

func resourcePageSize(t *testing.T, a *api, f owaspFixture) {
	a.do(req{method: "GET", path: "/v1/items?limit=101"}).problem(t, http.StatusBadRequest)
	a.do(req{method: "GET", path: "/v1/orders?limit=101", token: f.victim}).problem(t, http.StatusBadRequest)
	a.do(req{method: "GET", path: "/v1/orders?limit=1&limit=2", token: f.victim}).problem(t, http.StatusBadRequest)
}

func resourceQuantity(t *testing.T, a *api, f owaspFixture) {
	a.do(req{method: "PUT", path: "/v1/cart/items/1", token: f.attacker, body: `{"quantity": 1000000000}`}).problem(t, http.StatusBadRequest)
}

func resourceStreams(t *testing.T, a *api, f owaspFixture) {
	for range 2 { // the cap this replica was given
		if s := openStream(t, a.url, f.victim, f.order, ""); s.res.StatusCode != http.StatusOK {
			t.Fatalf("stream: %d, want 200", s.res.StatusCode)
		}
	}
	r := a.do(req{method: "GET", path: fmt.Sprintf("/v1/orders/%d/events", f.order), token: f.victim})
	r.problem(t, http.StatusTooManyRequests)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
}

func resourceSessions(t *testing.T) {
	a := newAPI(t, options{sessionLimit: httpapi.SessionLimit{Rate: 0.001, Burst: 3}})
	for range 3 {
		a.session()
	}
	r := a.do(req{method: "POST", path: "/v1/sessions"})
	r.problem(t, http.StatusTooManyRequests)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// A forwarding header from an untrusted peer changes nothing.
	r = a.do(req{method: "POST", path: "/v1/sessions", header: map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"}})
	r.problem(t, http.StatusTooManyRequests)
}

func functionAdmin(t *testing.T, a *api, f owaspFixture) {
	path := "/v1/admin/items/1"
	body := `{"stock": 1}`
	a.do(req{method: "PUT", path: path, body: body}).problem(t, http.StatusUnauthorized)
	a.do(req{method: "PUT", path: path, token: f.victim, body: body}).problem(t, http.StatusForbidden)
	a.do(req{method: "PUT", path: path, token: adminToken + "x", body: body}).problem(t, http.StatusForbidden)
	a.do(req{method: "PUT", path: path, token: strings.ToUpper(adminToken), body: body}).problem(t, http.StatusForbidden)
	for _, m := range []string{"DELETE", "POST", "PATCH"} {
		a.do(req{method: m, path: path, token: adminToken, body: body}).problem(t, http.StatusMethodNotAllowed)
	}
	// A session cannot reach an admin action through a session route.
	a.do(req{method: "PUT", path: "/v1/items/1", token: f.victim, body: `{"price_cents": 1}`}).problem(t, http.StatusMethodNotAllowed)

	noAdmin := newAPI(t, options{items: seed.Items(1)})
	noAdmin.do(req{method: "PUT", path: path, token: "", body: body}).problem(t, http.StatusForbidden)
	noAdmin.do(req{method: "PUT", path: path, token: "anything", body: body}).problem(t, http.StatusForbidden)
}

func functionOps(t *testing.T, a *api, _ owaspFixture) {
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/vars", "/v1/admin/", "/v1/admin/items"} {
		if r := a.do(req{method: "GET", path: path, token: adminToken}); r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
			t.Errorf("GET %s on the public handler: %d, want 404 or 405", path, r.status)
		}
	}
}

// ssrfNoURLInput: the service fetches nothing a client names, so no
// request parameter or body property may be a URL, a host or a callback.
func ssrfNoURLInput(t *testing.T, a *api, _ owaspFixture) {
	var doc map[string]any
	a.do(req{method: "GET", path: "/openapi.json"}).json(t, &doc)
	suspect := []string{"url", "uri", "host", "callback", "webhook", "redirect", "href", "link", "endpoint"}
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if f, _ := v["format"].(string); f == "uri" || f == "url" || f == "hostname" || f == "uri-reference" {
				t.Errorf("%s has format %q", where, f)
			}
			if name, ok := v["name"].(string); ok && v["in"] != nil {
				for _, s := range suspect {
					if strings.Contains(strings.ToLower(name), s) {
						t.Errorf("%s: parameter %q looks like a URL", where, name)
					}
				}
			}
			if props, ok := v["properties"].(map[string]any); ok {
				for name := range props {
					for _, s := range suspect {
						if strings.Contains(strings.ToLower(name), s) {
							t.Errorf("%s: property %q looks like a URL", where, name)
						}
					}
				}
			}
			for k, sub := range v {
				walk(where+"."+k, sub)
			}
		case []any:
			for i, sub := range v {
				walk(fmt.Sprintf("%s[%d]", where, i), sub)
			}
		}
	}
	walk("openapi", doc["paths"])
	walk("openapi", doc["components"])
	if doc["paths"] == nil {
		t.Fatal("openapi.json has no paths")
	}
}

func misconfigErrors(t *testing.T, a *api, f owaspFixture) {
	for _, r := range []response{
		a.do(req{method: "GET", path: "/v1/orders/abc", token: f.victim}),
		a.do(req{method: "PUT", path: "/v1/cart/items/1", token: f.victim, body: `{"quantity": `}),
		a.do(req{method: "GET", path: "/nope"}),
	} {
		var p map[string]any
		if err := json.Unmarshal(r.body, &p); err != nil || r.status < 400 || r.status >= 500 {
			t.Fatalf("%d %s: want a 4xx problem", r.status, r.body)
		}
		for _, leak := range []string{"goroutine", ".go:", "sqlite", "SQL", "panic", "runtime."} {
			if strings.Contains(string(r.body), leak) {
				t.Errorf("%d %s shows %q", r.status, r.body, leak)
			}
		}
		if r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("CORS allowed: %q", r.header.Get("Access-Control-Allow-Origin"))
		}
	}
}
