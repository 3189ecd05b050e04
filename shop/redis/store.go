package redis

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/perfscale/perfscale/shop"
)

// Next is what the Redis layer sits in front of: the store (timed), for
// the catalog, sessions and carts.
type Next interface {
	shop.CatalogService
	shop.SessionService
	shop.CartService
}

// Store reads sessions and carts through Redis and writes them through to
// the store (the store first: it is the record). Catalog calls pass
// straight through; the menu is shared as encoded bytes (see Menus).
//
//   - A session, keyed by its token hash, is immutable once created, so it
//     is kept until its own expiry (Redis TTL = expires_at - now).
//   - A cart is one hash per session: the cart's JSON priced under a catalog
//     version, and that version. A read under another version (a price or
//     availability changed) goes to the store. Every write through this
//     layer replaces it with the store's answer; a checkout deletes it.
type Store struct {
	// Next is the store below; what this layer does not define (the
	// catalog) passes straight through to it.
	Next
	c *Client
	// version is the catalog version carts are priced under.
	version func(ctx context.Context) (int64, error)
}

// NewStore returns the Redis layer over next. version is the catalog
// version carts are judged fresh by: the one this process keeps in memory
// (cache.Version), so a cart read makes no store call for it; nil reads it
// from next each time.
func NewStore(next Next, c *Client, version func(ctx context.Context) (int64, error)) *Store {
	if version == nil {
		version = next.CatalogVersion
	}
	return &Store{Next: next, c: c, version: version}
}

// --- sessions ---

func (s *Store) sessionKey(tokenHash string) string { return s.c.key("session", tokenHash) }

// CreateSession stores the session, then caches it.
func (s *Store) CreateSession(ctx context.Context, tokenHash string) (*shop.Session, error) {
	sess, err := s.Next.CreateSession(ctx, tokenHash)
	if err != nil {
		return nil, err
	}
	s.putSession(ctx, tokenHash, sess)
	return sess, nil
}

// SessionByTokenHash answers from Redis, else from the store (and caches
// it). Unknown tokens are not cached: a session made a moment ago on
// another replica, with Redis down at that moment, still works.
func (s *Store) SessionByTokenHash(ctx context.Context, tokenHash string) (*shop.Session, error) {
	if s.c.Up() {
		var b []byte
		err := s.c.call(ctx, func(ctx context.Context) (err error) {
			b, err = s.c.rdb.Get(ctx, s.sessionKey(tokenHash)).Bytes()
			return err
		})
		if err == nil {
			var sess shop.Session
			if json.Unmarshal(b, &sess) == nil && time.Now().Before(sess.ExpiresAt) {
				s.c.lookup("session", true)
				return &sess, nil
			}
		}
		if !s.c.failed(ctx, err) {
			s.c.lookup("session", false)
		} else {
			s.c.fallback("session")
		}
	} else {
		s.c.fallback("session")
	}
	sess, err := s.Next.SessionByTokenHash(ctx, tokenHash)
	if err != nil {
		return nil, err
	}
	s.putSession(ctx, tokenHash, sess)
	return sess, nil
}

func (s *Store) putSession(ctx context.Context, tokenHash string, sess *shop.Session) {
	ttl := time.Until(sess.ExpiresAt)
	if !s.c.Up() || ttl <= 0 {
		return
	}
	b, err := json.Marshal(sess)
	if err != nil {
		return
	}
	s.c.failed(ctx, s.c.call(ctx, func(ctx context.Context) error {
		return s.c.rdb.Set(ctx, s.sessionKey(tokenHash), b, ttl).Err()
	}))
}

// --- carts ---

// Cart answers from Redis when the cached cart was priced under the
// current catalog version, else from the store (and caches it).
func (s *Store) Cart(ctx context.Context, sessionID int64) (*shop.Cart, error) {
	version, verr := s.version(ctx)
	if s.c.Up() && verr == nil {
		var fields map[string]string
		err := s.c.call(ctx, func(ctx context.Context) (err error) {
			fields, err = s.c.rdb.HGetAll(ctx, s.c.cartKey(sessionID)).Result()
			return err
		})
		if err == nil && fields["version"] == strconv.FormatInt(version, 10) {
			var cart shop.Cart
			if json.Unmarshal([]byte(fields["cart"]), &cart) == nil {
				s.c.lookup("cart", true)
				return &cart, nil
			}
		}
		if !s.c.failed(ctx, err) {
			s.c.lookup("cart", false)
		} else {
			s.c.fallback("cart")
		}
	} else {
		s.c.fallback("cart")
	}
	cart, err := s.Next.Cart(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	if verr == nil {
		s.putCart(ctx, sessionID, version, cart)
	}
	return cart, nil
}

// SetCartItem writes the store, then caches the store's answer.
func (s *Store) SetCartItem(ctx context.Context, sessionID, itemID int64, quantity int) (*shop.Cart, error) {
	// The version is read before the write: a catalog change racing this
	// write leaves the cached cart under the older version, i.e. unused.
	version, verr := s.version(ctx)
	cart, err := s.Next.SetCartItem(ctx, sessionID, itemID, quantity)
	if err != nil {
		return nil, err
	}
	if verr != nil {
		s.dropCart(ctx, sessionID)
	} else {
		s.putCart(ctx, sessionID, version, cart)
	}
	return cart, nil
}

// ClearCart empties the cart in the store, then in Redis.
func (s *Store) ClearCart(ctx context.Context, sessionID int64) error {
	if err := s.Next.ClearCart(ctx, sessionID); err != nil {
		return err
	}
	s.dropCart(ctx, sessionID)
	return nil
}

func (s *Store) putCart(ctx context.Context, sessionID, version int64, cart *shop.Cart) {
	if !s.c.Up() {
		s.c.markDirty(sessionID)
		return
	}
	b, err := json.Marshal(cart)
	if err != nil {
		return
	}
	key := s.c.cartKey(sessionID)
	err = s.c.call(ctx, func(ctx context.Context) error {
		_, err := s.c.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.HSet(ctx, key, "version", version, "cart", b)
			p.Expire(ctx, key, s.c.cfg.CartTTL)
			return nil
		})
		return err
	})
	if s.c.failed(ctx, err) {
		s.c.markDirty(sessionID)
	}
}

func (s *Store) dropCart(ctx context.Context, sessionID int64) {
	if !s.c.Up() {
		s.c.markDirty(sessionID)
		return
	}
	if s.c.failed(ctx, s.c.call(ctx, func(ctx context.Context) error { return s.c.rdb.Del(ctx, s.c.cartKey(sessionID)).Err() })) {
		s.c.markDirty(sessionID)
	}
}

// Ordering wraps next so that a checkout, which empties the session's
// cart in the store, drops the cached cart too. Order reads pass through.
func (s *Store) Ordering(next shop.Ordering) shop.Ordering { return &ordering{Ordering: next, s: s} }

type ordering struct {
	shop.Ordering
	s *Store
}

func (o *ordering) PlaceOrder(ctx context.Context, p shop.PlaceOrder) (*shop.Order, bool, error) {
	order, created, err := o.Ordering.PlaceOrder(ctx, p)
	if err == nil {
		o.s.dropCart(ctx, p.SessionID)
	}
	return order, created, err
}
