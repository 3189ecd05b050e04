package httpapi

// addRoutes is the whole API surface in one place; the OpenAPI test holds
// openapi.json to exactly these routes.
func addRoutes(s *server) {
	addOpsRoutes(s)
	s.handle("GET /openapi.json", s.handleOpenAPI)

	// The menu bounds its own wait (currentMenu): a warm menu request, the
	// commonest of all, skips the cost of a deadline and its timer.
	s.handleFor("GET /v1/menu", 0, s.handleMenu)
	s.handle("GET /v1/items", s.handleListItems)
	s.handle("GET /v1/items/{id}", s.handleItem)

	s.handle("POST /v1/sessions", s.limitSessions(s.handleCreateSession))

	s.handle("GET /v1/cart", s.authenticated(s.handleCart))
	s.handle("PUT /v1/cart/items/{id}", s.authenticated(s.handleSetCartItem))
	s.handle("DELETE /v1/cart", s.authenticated(s.handleClearCart))

	s.handle("POST /v1/orders", s.authenticated(s.handlePlaceOrder))
	s.handle("GET /v1/orders", s.authenticated(s.handleListOrders))
	s.handle("GET /v1/orders/{id}", s.authenticated(s.handleOrder))
	s.handleFor("GET /v1/orders/{id}/events", s.stream.MaxDuration+s.timeout, s.authenticated(s.handleOrderEvents))

	s.handle("PUT /v1/admin/items/{id}", s.admin(s.handleUpdateItem))
}

// addOpsRoutes are the routes every role serves. /metrics is not among
// them: it is served only on the admin listener (cmd/shop, --admin-addr),
// never on the public address.
func addOpsRoutes(s *server) {
	s.handle("GET /healthz", s.handleHealthz)
	s.handle("GET /readyz", s.handleReadyz)
}
