package httpapi

import "time"

// addRoutes is the whole API surface in one place; the OpenAPI test holds
// openapi.json to exactly these routes, and every route has its line in
// routePlan.
func addRoutes(s *server) {
	addOpsRoutes(s)
	s.handle("GET /openapi.json", s.handleOpenAPI)

	s.handle("GET /v1/menu", s.handleMenu)
	s.handle("GET /v1/items", s.handleListItems)
	s.handle("GET /v1/items/{id}", s.handleItem)

	s.handle("POST /v1/sessions", s.limitSessions(s.handleCreateSession))

	s.handle("GET /v1/cart", s.authenticated(s.handleCart))
	s.handle("PUT /v1/cart/items/{id}", s.authenticated(s.handleSetCartItem))
	s.handle("DELETE /v1/cart", s.authenticated(s.handleClearCart))

	s.handle("POST /v1/orders", s.authenticated(s.handlePlaceOrder))
	s.handle("GET /v1/orders", s.authenticated(s.handleListOrders))
	s.handle("GET /v1/orders/{id}", s.authenticated(s.handleOrder))
	s.handle("GET /v1/orders/{id}/events", s.authenticated(s.handleOrderEvents))

	s.handle("PUT /v1/admin/items/{id}", s.admin(s.handleUpdateItem))
	s.handle("GET /v1/admin/sales", s.admin(s.handleSales))
	s.handle("GET /v1/admin/orders", s.admin(s.handleOrdersByStatus))
}

// addOpsRoutes are the routes every role serves. /metrics is not among
// them: it is served only on the admin listener (cmd/shop, --admin-addr),
// never on the public address.
func addOpsRoutes(s *server) {
	s.handle("GET /healthz", s.handleHealthz)
	s.handle("GET /readyz", s.handleReadyz)
}

// A shedClass says how early a route's requests are refused when the
// replica is overloaded (admission.go): browsing first, then the cart,
// then what a customer is paying for or waiting on; operations never.
type shedClass int

const (
	shedNever shedClass = iota // health and readiness: never refused
	shedFirst                  // browsing: the menu, items, the API document
	shedNext                   // the cart and new sessions
	shedLast                   // checkout, order reads, order events, admin
	numShedClasses
)

var shedClassNames = [numShedClasses]string{"never", "browsing", "cart", "checkout"}

func (c shedClass) String() string { return shedClassNames[c] }

// routeSpec is a route's service level: how early it is shed, the latency
// objective it is measured against (an answer later than this does not
// count as goodput, and a request waits for admission at most this long),
// and its deadline, which every store, cache and queue call of the request
// inherits through its context.
type routeSpec struct {
	pattern   string
	shed      shedClass
	objective time.Duration
	// timeout bounds the request; selfBounded routes set no request-wide
	// deadline and bound their own waits by it instead (the menu: a warm
	// request, the commonest of all, skips the cost of a timer), and the
	// event stream's is its preamble's (reading the order and its past
	// events); the stream itself lives up to StreamConfig.MaxDuration.
	timeout     time.Duration
	selfBounded bool
	stream      bool
}

// routePlan is every route's service level, in one table: the README's
// "Deadlines and objectives" table is held to it by a test
// (TestREADMEShowsTheRoutePlan).
var routePlan = []routeSpec{
	{pattern: "GET /healthz", shed: shedNever, objective: 10 * time.Millisecond, timeout: 2 * time.Second},
	{pattern: "GET /readyz", shed: shedNever, objective: 50 * time.Millisecond, timeout: 2 * time.Second},
	{pattern: "GET /openapi.json", shed: shedFirst, objective: 50 * time.Millisecond, timeout: 2 * time.Second},
	{pattern: "GET /v1/menu", shed: shedFirst, objective: 50 * time.Millisecond, timeout: 10 * time.Second, selfBounded: true},
	{pattern: "GET /v1/items", shed: shedFirst, objective: 50 * time.Millisecond, timeout: 2 * time.Second},
	{pattern: "GET /v1/items/{id}", shed: shedFirst, objective: 50 * time.Millisecond, timeout: 2 * time.Second},
	{pattern: "POST /v1/sessions", shed: shedLast, objective: 50 * time.Millisecond, timeout: 5 * time.Second},
	{pattern: "GET /v1/cart", shed: shedNext, objective: 50 * time.Millisecond, timeout: 5 * time.Second},
	{pattern: "PUT /v1/cart/items/{id}", shed: shedNext, objective: 50 * time.Millisecond, timeout: 5 * time.Second},
	{pattern: "DELETE /v1/cart", shed: shedNext, objective: 50 * time.Millisecond, timeout: 5 * time.Second},
	{pattern: "POST /v1/orders", shed: shedLast, objective: 100 * time.Millisecond, timeout: 10 * time.Second},
	{pattern: "GET /v1/orders", shed: shedLast, objective: 50 * time.Millisecond, timeout: 5 * time.Second},
	{pattern: "GET /v1/orders/{id}", shed: shedLast, objective: 50 * time.Millisecond, timeout: 5 * time.Second},
	{pattern: "GET /v1/orders/{id}/events", shed: shedLast, objective: 100 * time.Millisecond, timeout: 10 * time.Second, stream: true},
	{pattern: "PUT /v1/admin/items/{id}", shed: shedLast, objective: 250 * time.Millisecond, timeout: 10 * time.Second},
	// The admin reads over every shard answer by AdminFanOut (2 s), with
	// the shards that had not answered named.
	{pattern: "GET /v1/admin/sales", shed: shedLast, objective: 250 * time.Millisecond, timeout: 5 * time.Second},
	{pattern: "GET /v1/admin/orders", shed: shedLast, objective: 250 * time.Millisecond, timeout: 5 * time.Second},
}

// specOf is pattern's line of routePlan; a route without one is a
// programming error, caught by every test that builds a handler.
func specOf(pattern string) routeSpec {
	for _, sp := range routePlan {
		if sp.pattern == pattern {
			return sp
		}
	}
	panic("httpapi: route " + pattern + " has no line in routePlan")
}
