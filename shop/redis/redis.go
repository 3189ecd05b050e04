// Package redis is the ordering service's shared cache on Redis (go-redis
// v9): sessions and carts read through it and written through to the
// store, the encoded menu of each catalog version shared by every replica,
// and catalog-change announcements over pub/sub. Redis is a cache, never
// the record: losing it loses nothing, and while it is unreachable every
// call goes to the store (one log line and a metric per change of state,
// not per request), until a background ping finds it back.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
)

// Config tunes the client; zero values take the defaults.
type Config struct {
	// URL is redis://[user:password@]host:port[/db].
	URL string
	// Prefix starts every key and channel ("shop:"), so several services
	// (or tests) can share one Redis.
	Prefix string
	// OpTimeout bounds each Redis call (dial, read, write): a Redis that
	// does not answer costs a request at most this much before the store
	// answers instead.
	OpTimeout time.Duration
	// CartTTL and MenuTTL bound how long a cart and a menu version stay.
	CartTTL, MenuTTL time.Duration
	// Recheck is how often an unreachable Redis is pinged.
	Recheck time.Duration
	// Guard, if set, is the circuit breaker every Redis call goes
	// through, the pings that find it back included: while it is open
	// Redis stays out of use, so a Redis that fails on and off is not
	// taken back at its first answer (resilience.Guard in the service).
	Guard      Guard
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = "shop:"
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 250 * time.Millisecond
	}
	if c.CartTTL <= 0 {
		c.CartTTL = 30 * time.Minute
	}
	if c.MenuTTL <= 0 {
		c.MenuTTL = time.Hour
	}
	if c.Recheck <= 0 {
		c.Recheck = 250 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Guard == nil {
		c.Guard = noGuard{}
	}
}

// Guard is a circuit breaker (resilience.Guard in the service): Do
// refuses at once, without calling fn, while Redis fails, and counts fn's
// failures.
type Guard interface {
	Do(ctx context.Context, fn func(ctx context.Context) error) error
}

type noGuard struct{}

func (noGuard) Do(ctx context.Context, fn func(ctx context.Context) error) error { return fn(ctx) }

// errRefused is a call the guard refused: it was not made.
var errRefused = errors.New("refused by the Redis circuit breaker, which is open")

// call makes one Redis call through the guard, bounded by OpTimeout. A
// miss (goredis.Nil) is an answer, which the guard does not count as a
// failure.
func (c *Client) call(ctx context.Context, fn func(ctx context.Context) error) error {
	ran := false
	var miss error
	err := c.cfg.Guard.Do(ctx, func(ctx context.Context) error {
		ran = true
		octx, cancel := c.opCtx(ctx)
		defer cancel()
		err := fn(octx)
		if errors.Is(err, goredis.Nil) {
			miss, err = err, nil
		}
		return err
	})
	switch {
	case !ran:
		return errRefused
	case miss != nil:
		return miss
	}
	return err
}

// Client is a Redis connection that knows whether Redis is usable.
type Client struct {
	rdb *goredis.Client
	cfg Config

	state     atomic.Int32 // stateUnknown, stateUp, stateDown
	dirtyMu   sync.Mutex
	dirty     map[int64]struct{} // carts changed while Redis was down
	overflow  bool               // more than maxDirty: forget every cart
	upGauge   prometheus.Gauge
	fallbacks *prometheus.CounterVec
	lookups   *prometheus.CounterVec
}

// maxDirty bounds the carts remembered while Redis is down; past it, every
// cart is deleted from Redis before it is used again.
const maxDirty = 100_000

const (
	stateUnknown int32 = iota
	stateUp
	stateDown
)

// CheckURL reports whether raw is a Redis URL, with a one-line reason.
func CheckURL(raw string) error {
	if _, err := goredis.ParseURL(raw); err != nil {
		return fmt.Errorf("--redis must be redis://host:port[/db], got %q: %w", raw, err)
	}
	return nil
}

// Open parses the URL (a malformed one is an error) and connects. An
// unreachable Redis is not an error: the service runs on the store and
// starts using Redis when it answers. Run must be running for that.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	cfg.defaults()
	// go-redis logs every failed dial; the client logs state changes
	// instead, once each (see markDown).
	goredis.SetLogger(quietLogger{})
	if err := CheckURL(cfg.URL); err != nil {
		return nil, err
	}
	opt, _ := goredis.ParseURL(cfg.URL)
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = cfg.OpTimeout, cfg.OpTimeout, cfg.OpTimeout
	opt.PoolTimeout = cfg.OpTimeout
	opt.MaxRetries = -1 // a failed call falls back to the store at once
	c := &Client{
		rdb:   goredis.NewClient(opt),
		cfg:   cfg,
		dirty: map[int64]struct{}{},
		upGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shop_redis_up", Help: "1 while Redis answers and is used, 0 while requests go to the store instead.",
		}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_redis_fallbacks_total", Help: "Cache calls answered by the store because Redis was unreachable, by kind.",
		}, []string{"kind"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_redis_lookups_total", Help: "Redis cache lookups by kind and result (hit, miss).",
		}, []string{"kind", "result"}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.upGauge, c.fallbacks, c.lookups)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
	defer cancel()
	if err := c.rdb.Ping(pctx).Err(); err != nil {
		c.markDown(err)
	} else {
		c.markUp()
	}
	return c, nil
}

// Close closes the connections.
func (c *Client) Close() error { return c.rdb.Close() }

// Up reports whether Redis is in use.
func (c *Client) Up() bool { return c.state.Load() == stateUp }

// Run pings an unreachable Redis every Recheck until ctx ends, and puts it
// back in use when it answers.
func (c *Client) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Recheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.Up() {
			continue
		}
		// Through the guard: while it is open the ping is refused and
		// Redis stays out of use; once it lets a trial call through, the
		// ping is that call.
		err := c.call(ctx, func(ctx context.Context) error {
			if err := c.rdb.Ping(ctx).Err(); err != nil {
				return err
			}
			return c.forgetDirty(ctx)
		})
		if err == nil {
			c.markUp()
		}
	}
}

// markDown takes Redis out of use; only the change is logged, however
// many requests fail at the same moment.
func (c *Client) markDown(err error) {
	if c.state.Swap(stateDown) == stateDown {
		return
	}
	c.upGauge.Set(0)
	c.cfg.Logger.Warn("Redis unreachable: sessions, carts and the menu are read from the store until it answers",
		"url", c.rdb.Options().Addr, "error", err.Error())
}

func (c *Client) markUp() {
	if c.state.Swap(stateUp) == stateUp {
		return
	}
	c.upGauge.Set(1)
	c.cfg.Logger.Info("Redis in use", "url", c.rdb.Options().Addr)
}

// failed records a failed Redis call: Redis is taken out of use (one log
// line) and the caller answers from the store. A miss is not a failure.
func (c *Client) failed(ctx context.Context, err error) bool {
	if err == nil || errors.Is(err, goredis.Nil) {
		return false
	}
	if ctx.Err() != nil {
		return true // the caller gave up (client gone, request timeout): not Redis's fault
	}
	c.markDown(err)
	return true
}

// fallback counts a call the store answered because Redis was not usable.
func (c *Client) fallback(kind string) { c.fallbacks.WithLabelValues(kind).Inc() }

func (c *Client) lookup(kind string, hit bool) {
	r := "miss"
	if hit {
		r = "hit"
	}
	c.lookups.WithLabelValues(kind, r).Inc()
}

// opCtx bounds one Redis call.
func (c *Client) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.OpTimeout)
}

func (c *Client) key(parts ...string) string {
	k := c.cfg.Prefix
	for i, p := range parts {
		if i > 0 {
			k += ":"
		}
		k += p
	}
	return k
}

func (c *Client) cartKey(sessionID int64) string {
	return c.key("cart", strconv.FormatInt(sessionID, 10))
}

// markDirty remembers a cart written while Redis could not be told.
func (c *Client) markDirty(sessionID int64) {
	c.dirtyMu.Lock()
	defer c.dirtyMu.Unlock()
	if len(c.dirty) < maxDirty {
		c.dirty[sessionID] = struct{}{}
	} else {
		c.overflow = true
	}
}

// forgetDirty deletes the carts written while Redis was down, before
// Redis is used again, so none of them is read stale.
func (c *Client) forgetDirty(ctx context.Context) error {
	c.dirtyMu.Lock()
	defer c.dirtyMu.Unlock()
	if c.overflow {
		iter := c.rdb.Scan(ctx, 0, c.key("cart", "*"), 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.rdb.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		c.overflow = false
		clear(c.dirty)
		return nil
	}
	if len(c.dirty) == 0 {
		return nil
	}
	keys := make([]string, 0, len(c.dirty))
	for id := range c.dirty {
		keys = append(keys, c.cartKey(id))
	}
	for start := 0; start < len(keys); start += 1000 {
		if err := c.rdb.Del(ctx, keys[start:min(start+1000, len(keys))]...).Err(); err != nil {
			return err
		}
	}
	clear(c.dirty)
	return nil
}

// quietLogger drops go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...interface{}) {}
