package httpapi

import (
	"errors"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// SessionLimit is the token bucket each client address gets for creating
// sessions: Rate sessions per second on average, Burst at once.
type SessionLimit struct {
	Rate  float64 // 0 disables the limit
	Burst int
}

// Default session limits: a person makes one session per visit; a shared
// address (an office, a NAT) many. 64 at once and 8 a second after that
// let a 32-user load test start, while a flood of 16 clients makes about
// a hundred sessions in 5 s instead of tens of thousands.
const (
	DefaultSessionRate  = 8
	DefaultSessionBurst = 64
	// maxTrackedClients bounds the limiter's memory: past it, new
	// addresses share one bucket until idle ones are evicted.
	maxTrackedClients = 100_000
)

// errRateLimited maps to 429 with Retry-After.
type errRateLimited struct{ retryAfter time.Duration }

func (e errRateLimited) Error() string { return "rate limited" }

// clientLimiter keeps one token bucket per client address. Buckets idle
// long enough to have refilled are evicted: a full bucket is the same as
// a new one, so evicting it forgets nothing.
type clientLimiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	overflow  *rate.Limiter // shared by new addresses while the table is full
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newClientLimiter(l SessionLimit, now func() time.Time) *clientLimiter {
	if now == nil {
		now = time.Now
	}
	return &clientLimiter{
		limit: rate.Limit(l.Rate), burst: l.Burst, now: now,
		buckets:   map[netip.Addr]*bucket{},
		overflow:  rate.NewLimiter(rate.Limit(l.Rate), l.Burst),
		lastSweep: now(),
	}
}

// idleAfter is how long a bucket takes to refill from empty.
func (c *clientLimiter) idleAfter() time.Duration {
	return time.Duration(float64(c.burst) / float64(c.limit) * float64(time.Second))
}

// reserve takes a token for addr; if none is left it returns how long
// until one is.
func (c *clientLimiter) reserve(addr netip.Addr) (ok bool, retryAfter time.Duration) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	// A sweep walks the whole table: once a minute, or once a second
	// while the table is full, never on every request.
	since := now.Sub(c.lastSweep)
	if since > time.Minute || (len(c.buckets) >= maxTrackedClients && since > time.Second) {
		c.sweep(now)
	}
	lim := c.overflow
	if b, ok := c.buckets[addr]; ok {
		b.seen, lim = now, b.lim
	} else if len(c.buckets) < maxTrackedClients {
		b := &bucket{lim: rate.NewLimiter(c.limit, c.burst), seen: now}
		c.buckets[addr] = b
		lim = b.lim
	}
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Hour
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (c *clientLimiter) sweep(now time.Time) {
	c.lastSweep = now
	idle := c.idleAfter()
	for a, b := range c.buckets {
		if now.Sub(b.seen) >= idle {
			delete(c.buckets, a)
		}
	}
}

func (c *clientLimiter) tracked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buckets)
}

// limitSessions refuses fn with 429 when the client address has used up
// its session bucket.
func (s *server) limitSessions(fn handlerFunc) handlerFunc {
	if s.sessionLimiter == nil {
		return fn
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		if ok, wait := s.sessionLimiter.reserve(s.clientAddr.of(r)); !ok {
			return errRateLimited{retryAfter: wait}
		}
		return fn(w, r)
	}
}

// retryAfterSeconds is Retry-After's whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

func isRateLimited(err error) bool {
	var e errRateLimited
	return errors.As(err, &e)
}

func rateLimitedWait(err error) time.Duration {
	var e errRateLimited
	errors.As(err, &e)
	return e.retryAfter
}
