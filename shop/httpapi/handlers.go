package httpapi

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/perfscale/perfscale/shop"
)

//go:embed openapi.json
var openAPIDoc []byte

func (s *server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDoc) //nolint:errcheck
	return nil
}

// handleHealthz answers that the process is up, and names the
// anti-pattern switches it runs with, if any.
func (s *server) handleHealthz(w http.ResponseWriter, r *http.Request) error {
	return encode(w, http.StatusOK, struct {
		Status       string   `json:"status"`
		Antipatterns []string `json:"antipatterns,omitempty"`
	}{"ok", s.antipatterns})
}

func (s *server) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	if s.draining() {
		return shop.Errorf(shop.EUNAVAILABLE, "shutting down")
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	pinged := s.health.Ping(ctx)
	c, err := coverageOf(pinged)
	if pinged != nil {
		s.log.WarnContext(ctx, "store not reachable", "error", pinged.Error())
	}
	var none *noShardAnswered
	switch {
	case errors.As(err, &none):
		return err
	case err != nil:
		return shop.Errorf(shop.EUNAVAILABLE, "the store is not reachable")
	case !c.Complete:
		// Some shards are down: every replica shares them, so taking
		// this one out of the balancer would serve nobody better; the
		// sessions on the shards that answer are still served here.
		return encode(w, http.StatusOK, readiness{Status: "degraded", MissingShards: c.MissingShards})
	}
	if err := s.warmMenu(ctx); err != nil {
		return err
	}
	return encode(w, http.StatusOK, readiness{Status: "ready"})
}

// warmMenu builds the menu document before the replica says it is ready,
// so that no request waits for the first build. Its compression (brotli
// at its best level, tens of ms of CPU) held the CPU for most of a second
// under overload.sh's 0.1-core quota at the moment the load began: the
// read bound, which had served nothing before (the warm-up only makes
// sessions), read the browsing it could not serve meanwhile as an
// overload and refused it (docs/reliability.md). A build still running
// when ctx ends makes the replica not ready yet; one that failed leaves
// it ready (the menu's own requests say why, and try again).
func (s *server) warmMenu(ctx context.Context) error {
	if !s.servesMenu || s.menuPerRequest || s.menu.Load() != nil {
		return nil
	}
	if _, err := s.currentMenu(ctx); err != nil && ctx.Err() != nil {
		return shop.Errorf(shop.EUNAVAILABLE, "building the menu")
	}
	return nil
}

// readiness is /readyz's answer: ready, or degraded with the shards that
// did not answer (their sessions get 503; the others are served).
type readiness struct {
	Status        string         `json:"status"`
	MissingShards []missingShard `json:"missing_shards,omitempty"`
}

// --- catalog ---

func (s *server) handleItem(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "item")
	if err != nil {
		return err
	}
	it, err := s.catalog.Item(r.Context(), id)
	if err != nil {
		return err
	}
	s.markItemsStale(w.Header())
	return encode(w, http.StatusOK, it)
}

// markItemsStale says an item or a page of items is not current while
// the catalog's database cannot be read (Config.Stale): it came from the
// cache, or on shards from another shard's copy of the catalog, and its
// stock figure is the one last summed. The Warning is the menu's
// (markStale); there is no Age, as the page mixes reads of several times.
func (s *server) markItemsStale(h http.Header) {
	if s.stale != nil && s.stale() {
		h.Set("Warning", staleWarning)
	}
}

type itemPage struct {
	Items      []shop.Item `json:"items"`
	NextCursor string      `json:"next_cursor,omitempty"`
}

func (s *server) handleListItems(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "category", "q", "limit", "cursor")
	if err != nil {
		return err
	}
	f := shop.ItemFilter{Category: q.Get("category"), Query: q.Get("q")}
	if f.Limit, err = queryInt(q, "limit"); err != nil {
		return err
	}
	if f.After, err = shop.DecodeCursor(q.Get("cursor")); err != nil {
		return err
	}
	page, err := s.catalog.ListItems(r.Context(), f)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", listCacheControl)
	s.markItemsStale(w.Header())
	return encode(w, http.StatusOK, itemPage{Items: page.Items, NextCursor: shop.EncodeCursor(page.Next)})
}

// --- sessions ---

type sessionCreated struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *server) handleCreateSession(w http.ResponseWriter, r *http.Request) error {
	// The body is optional, but a body there is (sized or chunked) is
	// judged like any other: JSON, an empty object.
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	if len(body) > 0 {
		if err := jsonContentType(r); err != nil {
			return err
		}
		if _, err := decodeJSON[struct{}](body); err != nil {
			return err
		}
	}
	token, hash := shop.NewToken()
	sess, err := s.sessions.CreateSession(r.Context(), hash)
	if err != nil {
		return err
	}
	return encode(w, http.StatusCreated, sessionCreated{Token: token, ExpiresAt: sess.ExpiresAt})
}

type sessionKey struct{}

// authenticated resolves the bearer token to a session before fn runs.
func (s *server) authenticated(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		token, ok := bearer(r)
		if !ok {
			return shop.Errorf(shop.EUNAUTHORIZED, "send the session token as 'Authorization: Bearer <token>'; create one with POST /v1/sessions")
		}
		sess, err := s.sessions.SessionByTokenHash(r.Context(), shop.HashToken(token))
		if err != nil {
			return err
		}
		return fn(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess.ID)))
	}
}

func sessionID(r *http.Request) int64 {
	id, _ := r.Context().Value(sessionKey{}).(int64)
	return id
}

func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > 512 {
		return "", false
	}
	return token, true
}

// admin guards fn with the admin token from the environment.
func (s *server) admin(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.adminToken == "" {
			return shop.Errorf(shop.EFORBIDDEN, "the admin API is disabled: start the service with SHOP_ADMIN_TOKEN set")
		}
		token, ok := bearer(r)
		if !ok {
			return shop.Errorf(shop.EUNAUTHORIZED, "send the admin token as 'Authorization: Bearer <token>'")
		}
		if subtle.ConstantTimeCompare([]byte(token), []byte(s.adminToken)) != 1 {
			return shop.Errorf(shop.EFORBIDDEN, "this token may not change the catalog")
		}
		return fn(w, r)
	}
}

// --- cart ---

func (s *server) handleCart(w http.ResponseWriter, r *http.Request) error {
	c, err := s.carts.Cart(r.Context(), sessionID(r))
	if err != nil {
		return err
	}
	return encode(w, http.StatusOK, c)
}

// SetQuantity is the body of PUT /v1/cart/items/{id}.
type SetQuantity struct {
	Quantity *int `json:"quantity"`
}

// Validate checks the body.
func (q SetQuantity) Validate() error {
	if q.Quantity == nil {
		return shop.Errorf(shop.EINVALID, `quantity is required: send {"quantity": n}, 0 to remove the item`)
	}
	return shop.ValidateQuantity(*q.Quantity)
}

func (s *server) handleSetCartItem(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "item")
	if err != nil {
		return err
	}
	body, err := decode[SetQuantity](w, r)
	if err != nil {
		return err
	}
	if err := body.Validate(); err != nil {
		return err
	}
	c, err := s.carts.SetCartItem(r.Context(), sessionID(r), id, *body.Quantity)
	if err != nil {
		return err
	}
	return encode(w, http.StatusOK, c)
}

func (s *server) handleClearCart(w http.ResponseWriter, r *http.Request) error {
	if err := s.carts.ClearCart(r.Context(), sessionID(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- orders ---

func (s *server) handlePlaceOrder(w http.ResponseWriter, r *http.Request) error {
	// The key and the body are validated once, by the checkout rules.
	key, err := singleHeader(r, "Idempotency-Key")
	if err != nil {
		return err
	}
	c, err := decode[shop.Checkout](w, r)
	if err != nil {
		return err
	}
	o, created, err := s.ordering.PlaceOrder(r.Context(), shop.PlaceOrder{
		SessionID: sessionID(r), IdempotencyKey: key, Checkout: c,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", fmt.Sprintf("/v1/orders/%d", o.ID))
	status := http.StatusCreated
	if !created {
		status = http.StatusOK // a retry: the order made the first time
		w.Header().Set("Idempotent-Replayed", "true")
	}
	return encode(w, status, o)
}

func (s *server) handleOrder(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "order")
	if err != nil {
		return err
	}
	o, err := s.ordering.Order(r.Context(), sessionID(r), id)
	if err != nil {
		return err
	}
	return encode(w, http.StatusOK, o)
}

type orderPage struct {
	Orders     []shop.Order `json:"orders"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

func (s *server) handleListOrders(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "limit", "cursor")
	if err != nil {
		return err
	}
	var f shop.OrderFilter
	if f.Limit, err = queryInt(q, "limit"); err != nil {
		return err
	}
	if f.Before, err = shop.DecodeCursor(q.Get("cursor")); err != nil {
		return err
	}
	page, err := s.ordering.ListOrders(r.Context(), sessionID(r), f)
	if err != nil {
		return err
	}
	return encode(w, http.StatusOK, orderPage{Orders: page.Orders, NextCursor: shop.EncodeCursor(page.Next)})
}

// --- admin ---

func (s *server) handleUpdateItem(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "item")
	if err != nil {
		return err
	}
	u, err := decode[shop.ItemUpdate](w, r)
	if err != nil {
		return err
	}
	if err := u.Validate(); err != nil {
		return err
	}
	it, err := s.catalog.UpdateItem(r.Context(), id, u)
	if err != nil {
		return err
	}
	return encode(w, http.StatusOK, it)
}

// --- helpers ---

func pathID(r *http.Request, what string) (int64, error) {
	return shop.ParseID(what, r.PathValue("id"))
}

// query returns the query parameters, refusing any not in allowed (a
// misspelt filter would otherwise be ignored without a word) and repeats.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, shop.Errorf(shop.EINVALID, "the query string is malformed: %v", err)
	}
	for name, vs := range q {
		known := false
		for _, a := range allowed {
			known = known || a == name
		}
		if !known && len(allowed) == 0 {
			return nil, shop.Errorf(shop.EINVALID, "unknown query parameter %q: %s takes no query parameters", name, r.URL.Path)
		}
		if !known {
			return nil, shop.Errorf(shop.EINVALID, "unknown query parameter %q (allowed: %s)", name, strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return nil, shop.Errorf(shop.EINVALID, "query parameter %q is given %d times", name, len(vs))
		}
	}
	return q, nil
}

func queryInt(q url.Values, name string) (int, error) {
	raw := q.Get(name)
	if raw == "" {
		return 0, nil
	}
	n, err := shop.ParsePositive(name, raw)
	if err != nil && n == math.MaxInt64 {
		// Too large: the caller's own bound (limit: 1 to 100) says so.
		return math.MaxInt, nil
	}
	return int(n), err
}

func jsonBody(v any) ([]byte, error) {
	var b strings.Builder
	if err := encodeTo(&b, v); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}
