// Package resilience guards the service's calls to what it depends on
// (the database's reads and writes, Redis, NATS): a circuit breaker that
// refuses calls at once while the dependency fails, a stall detector that
// gives up the calls waiting and refuses new ones once calls have waited
// and none finished (a database that accepts connections but never
// answers fails nothing for seconds), and bounded
// retries of idempotent calls inside a retry budget. A refused call did no
// work and fails with shop.EUNAVAILABLE, which the HTTP adapter answers as
// a fast 503 with Retry-After.
//
// Guards are built in shop/app and wrapped around the narrow interfaces the
// adapters take (Store here; a Guard's Do for the others), so no adapter
// knows about them. The failsafe-go library the admission limiter uses
// provides the breaker, the retry policy and the budget.
package resilience

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/retrypolicy"

	"github.com/perfscale/perfscale/shop"
)

// Defaults of Config.
const (
	// DefaultFailureRate opens the breaker when at least half of the calls
	// of the last DefaultWindow failed, once DefaultMinCalls were made.
	DefaultFailureRate = 0.5
	DefaultMinCalls    = 5
	DefaultWindow      = 10 * time.Second
	// DefaultOpenFor is how long an open breaker refuses every call before
	// it lets a trial call through (half-open).
	DefaultOpenFor = 2 * time.Second
	// DefaultStallAfter: calls have waited this long and none finished.
	DefaultStallAfter = 2 * time.Second
	// Retries: at most DefaultMaxAttempts attempts, waits drawn uniformly
	// from zero to an exponential bound (full jitter) capped at
	// DefaultMaxBackoff, and retries at most DefaultRetryBudget of the
	// calls in flight.
	DefaultMaxAttempts = 3
	DefaultBaseBackoff = 10 * time.Millisecond
	DefaultMaxBackoff  = 200 * time.Millisecond
	DefaultRetryBudget = 0.1
)

// Config tunes a Guard; zero values take the defaults.
type Config struct {
	// Name is the dependency, the metrics' label: "database-read",
	// "database-write", "redis", "nats".
	Name string
	// What is the dependency as a client's message names it ("the
	// database").
	What        string
	FailureRate float64
	MinCalls    uint
	Window      time.Duration
	OpenFor     time.Duration
	// StallAfter is how long calls may wait with none finishing before
	// new calls are refused; negative: never.
	StallAfter  time.Duration
	MaxAttempts int
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	RetryBudget float64
	// Logger gets one line each time the breaker opens and closes (nil:
	// none).
	Logger *slog.Logger
	// OnState, if set, is told each state the breaker moves to
	// (StateOpen, StateHalfOpen, StateClosed), after the move: tests wait
	// on it instead of on time.
	OnState func(state string)
}

func (c *Config) defaults() {
	if c.What == "" {
		c.What = c.Name
	}
	if c.FailureRate <= 0 {
		c.FailureRate = DefaultFailureRate
	}
	if c.MinCalls == 0 {
		c.MinCalls = DefaultMinCalls
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.OpenFor <= 0 {
		c.OpenFor = DefaultOpenFor
	}
	if c.StallAfter == 0 {
		c.StallAfter = DefaultStallAfter
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.BaseBackoff <= 0 {
		c.BaseBackoff = DefaultBaseBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.RetryBudget <= 0 {
		c.RetryBudget = DefaultRetryBudget
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.OnState == nil {
		c.OnState = func(string) {}
	}
}

// States of a breaker, as Config.OnState is told them.
const (
	StateClosed   = "closed"
	StateHalfOpen = "half-open"
	StateOpen     = "open"
)

// Guard guards the calls to one dependency.
type Guard struct {
	cfg      Config
	breaker  circuitbreaker.CircuitBreaker[any]
	once     failsafe.Executor[any] // the breaker alone
	retrying failsafe.Executor[any] // retries around the breaker
	m        *guardMetrics
	now      func() time.Time
	after    afterFunc

	// Stall detection: tracked calls in flight, and since when they have
	// waited with none finishing (unix nanoseconds).
	inFlight  atomic.Int64
	busySince atomic.Int64

	// The watch: a timer, armed while tracked calls are in flight, that
	// trips the guard once they have waited StallAfter with none
	// finishing. Tripping cancels the calls in flight (they end with a
	// 503 at once instead of waiting out their deadline) and refuses new
	// ones until a call finishes: one probe at a time is let through once
	// the abandoned calls have ended.
	mu        sync.Mutex
	gen       context.Context // the calls in flight's; cancelled by a trip
	trip      context.CancelCauseFunc
	watching  bool
	tripped   atomic.Bool
	trippedAt atomic.Int64 // unix nanoseconds of the last trip
	probing   atomic.Bool
}

// afterFunc calls f after d in its own goroutine (time.AfterFunc; tests
// fire it as they move their clock).
type afterFunc func(d time.Duration, f func())

func realAfter(d time.Duration, f func()) { time.AfterFunc(d, f) }

// IsFailure says whether err is the dependency failing, which the breaker
// counts and a retry may cure: not a domain answer (not found, conflict,
// invalid...), and not a client that went away.
func IsFailure(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, shop.ErrBucketMoving) {
		return false // a bucket being moved is the shard saying no, not failing
	}
	code := shop.ErrorCode(err)
	return code == shop.EINTERNAL || code == shop.EUNAVAILABLE
}

// retryable is a failure a retry may cure within the caller's time: not a
// deadline that passed, and not one of the guard's own refusals.
func retryable(err error) bool {
	return IsFailure(err) && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, circuitbreaker.ErrOpen) && !errors.Is(err, errRefused)
}

var errRefused = errors.New("refused by the guard")

// Refused is the error of a call the guard refused before it was made.
type Refused struct {
	Dependency, What, Reason string
}

func (r *Refused) Error() string {
	return shop.Errorf(shop.EUNAVAILABLE, "%s", r.message()).Error()
}

func (r *Refused) message() string {
	switch r.Reason {
	case reasonStalled:
		return r.What + " is not answering; nothing was done: retry after the time in Retry-After"
	case reasonAbandoned:
		return r.What + " stopped answering and the call was given up; it may or may not have taken effect: retry (a checkout with the same Idempotency-Key) after the time in Retry-After"
	}
	return r.What + " is failing; nothing was done: retry after the time in Retry-After"
}

// Unwrap makes a refusal a shop.EUNAVAILABLE error (a 503) and
// recognisable as the guard's.
func (r *Refused) Unwrap() []error {
	return []error{shop.Errorf(shop.EUNAVAILABLE, "%s", r.message()), errRefused}
}

const (
	reasonOpen    = "open"
	reasonStalled = "stalled"
	reasonBudget  = "budget"
	// reasonAbandoned: a call in flight when the guard tripped (not a
	// refusal: it was made, its outcome unknown).
	reasonAbandoned = "abandoned"
)

func newGuard(cfg Config, m *guardMetrics, now func() time.Time, after afterFunc) *Guard {
	cfg.defaults()
	g := &Guard{cfg: cfg, m: m, now: now, after: after}
	g.gen, g.trip = context.WithCancelCause(context.Background())
	g.breaker = circuitbreaker.NewBuilder[any]().
		HandleIf(func(_ any, err error) bool { return IsFailure(err) }).
		WithFailureRateThreshold(cfg.FailureRate, cfg.MinCalls, cfg.Window).
		WithDelay(cfg.OpenFor).
		WithSuccessThreshold(1).
		OnOpen(func(circuitbreaker.StateChangedEvent) {
			m.opened.Inc()
			cfg.Logger.Warn("circuit breaker open: calls refused at once", "dependency", cfg.Name, "for", cfg.OpenFor.String())
			cfg.OnState(StateOpen)
		}).
		OnHalfOpen(func(circuitbreaker.StateChangedEvent) { cfg.OnState(StateHalfOpen) }).
		OnClose(func(circuitbreaker.StateChangedEvent) {
			cfg.Logger.Info("circuit breaker closed: calls go through again", "dependency", cfg.Name)
			cfg.OnState(StateClosed)
		}).
		Build()
	retries := budget.NewBuilder().WithMaxRate(cfg.RetryBudget).WithMinConcurrency(1).
		OnBudgetExceeded(func(budget.ExceededEvent) { m.retries.WithLabelValues("budget_exceeded").Inc() }).
		Build()
	policy := retrypolicy.NewBuilder[any]().
		HandleIf(func(_ any, err error) bool { return retryable(err) }).
		WithMaxAttempts(cfg.MaxAttempts).
		WithDelayFunc(g.fullJitter).
		WithBudget(retries).
		ReturnLastFailure().
		OnRetry(func(failsafe.ExecutionEvent[any]) { m.retries.WithLabelValues("retried").Inc() }).
		Build()
	g.once = failsafe.With[any](g.breaker)
	g.retrying = failsafe.With[any](policy, g.breaker)
	return g
}

// fullJitter is the wait before a retry: uniform between zero and the
// exponential bound, capped (AWS's "full jitter").
func (g *Guard) fullJitter(exec failsafe.ExecutionAttempt[any]) time.Duration {
	return g.backoff(exec.Attempts())
}

// backoff is the wait after the attempts-th attempt failed.
func (g *Guard) backoff(attempts int) time.Duration {
	bound := g.cfg.BaseBackoff << min(max(attempts-1, 0), 16)
	if bound <= 0 || bound > g.cfg.MaxBackoff {
		bound = g.cfg.MaxBackoff
	}
	return rand.N(bound + 1) // #nosec G404 -- jitter spreads retries; nobody gains by predicting it
}

// call is how a call is made: retried or once; tracked for stalls or
// not (a call that may rightly take long, a menu build of a huge
// catalog, would look like a stall).
type call int

const (
	once call = 1 << iota
	retried
	untracked
)

// Do calls fn through the guard, once (retries are for idempotent calls:
// DoIdempotent).
func (g *Guard) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	_, err := do(g, ctx, once, func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx) })
	return err
}

// DoIdempotent calls fn through the guard, retrying a failure.
func (g *Guard) DoIdempotent(ctx context.Context, fn func(ctx context.Context) error) error {
	_, err := do(g, ctx, retried, func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx) })
	return err
}

func do[T any](g *Guard, ctx context.Context, how call, fn func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	if how&untracked == 0 {
		probe, err := g.admit()
		if err != nil {
			return zero, err
		}
		var release func()
		ctx, release = g.begin(ctx)
		defer func() {
			release()
			if probe {
				g.probing.Store(false)
			}
		}()
	}
	exec := g.once
	if how&retried != 0 {
		exec = g.retrying
	}
	v, err := exec.WithContext(ctx).Get(func() (any, error) { return fn(ctx) })
	if how&untracked == 0 {
		var abandoned *Refused
		if err != nil && errors.As(context.Cause(ctx), &abandoned) {
			err = abandoned // the guard tripped and cancelled this call
		}
		g.end(err)
	}
	switch {
	case errors.Is(err, circuitbreaker.ErrOpen):
		return zero, g.refuse(reasonOpen)
	case errors.Is(err, budget.ErrExceeded):
		return zero, g.refuse(reasonBudget)
	}
	t, _ := v.(T)
	return t, err
}

func (g *Guard) refuse(reason string) error {
	g.m.refused.WithLabelValues(reason).Inc()
	return &Refused{Dependency: g.cfg.Name, What: g.cfg.What, Reason: reason}
}

// admit lets a tracked call through or refuses it: refused while calls
// are overdue, and after a trip until a call finishes, except one probe
// at a time once the abandoned calls have ended.
func (g *Guard) admit() (probe bool, err error) {
	if g.tripped.Load() {
		if g.inFlight.Load() == 0 && g.probing.CompareAndSwap(false, true) {
			return true, nil
		}
		return false, g.refuse(reasonStalled)
	}
	if g.overdue() {
		return false, g.refuse(reasonStalled)
	}
	return false, nil
}

// begin counts a tracked call in, arms the watch, and gives the call a
// context the guard cancels if it trips; release ends that.
func (g *Guard) begin(ctx context.Context) (_ context.Context, release func()) {
	g.mu.Lock()
	if g.inFlight.Add(1) == 1 {
		g.busySince.Store(g.now().UnixNano())
	}
	gen := g.gen
	if !g.watching && g.cfg.StallAfter > 0 {
		g.watching = true
		g.after(g.cfg.StallAfter, g.watch)
	}
	g.mu.Unlock()
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(gen, func() { cancel(context.Cause(gen)) })
	return ctx, func() { stop(); cancel(nil) }
}

// watch runs when the calls in flight may have waited StallAfter: it
// trips the guard if none finished meanwhile, and re-arms itself while
// calls are in flight.
func (g *Guard) watch() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.watching = false
	if g.inFlight.Load() == 0 {
		return
	}
	wait := time.Duration(g.busySince.Load() + int64(g.cfg.StallAfter) - g.now().UnixNano())
	if wait <= 0 {
		g.trippedAt.Store(g.now().UnixNano())
		if !g.tripped.Swap(true) {
			g.cfg.Logger.Warn("calls stalled: those in flight given up, new ones refused", "dependency", g.cfg.Name, "after", g.cfg.StallAfter.String())
		}
		g.trip(&Refused{Dependency: g.cfg.Name, What: g.cfg.What, Reason: reasonAbandoned})
		g.gen, g.trip = context.WithCancelCause(context.Background())
		g.busySince.Store(g.now().UnixNano()) // a probe's wait counts from here
		wait = g.cfg.StallAfter
	}
	g.watching = true
	g.after(wait, g.watch)
}

// end counts a tracked call out; one that got an answer (a success or a
// domain refusal) is progress, which clears a stall.
func (g *Guard) end(err error) {
	if !IsFailure(err) {
		g.busySince.Store(g.now().UnixNano())
		g.tripped.Store(false)
	}
	g.inFlight.Add(-1)
}

// overdue: calls in flight have waited StallAfter with none finishing.
func (g *Guard) overdue() bool {
	if g.cfg.StallAfter < 0 || g.inFlight.Load() == 0 {
		return false
	}
	return g.now().UnixNano()-g.busySince.Load() > int64(g.cfg.StallAfter)
}

// Stalled reports whether calls have waited StallAfter with none
// finishing, or the guard tripped on that, no call has finished since,
// and calls are still in flight (abandoned ones or a probe) or the trip
// is less than OpenFor old. New calls are refused while the guard is
// tripped, but for one probe at a time; readiness (Ready) fails while it
// is Stalled. Readiness must not fail for good with no call to probe: a
// replica taken out of the balancer for it would never get one.
func (g *Guard) Stalled() bool {
	if g.overdue() {
		return true
	}
	return g.tripped.Load() &&
		(g.inFlight.Load() > 0 || g.now().UnixNano()-g.trippedAt.Load() < int64(g.cfg.OpenFor))
}

// InFlight is how many tracked calls are in flight: a test waits on it to
// know a call has reached the guard.
func (g *Guard) InFlight() int { return int(g.inFlight.Load()) }

// Ready is nil while calls are let through: the breaker is not open and
// the dependency has not stalled.
func (g *Guard) Ready() error {
	switch {
	case g.breaker.IsOpen():
		return &Refused{Dependency: g.cfg.Name, What: g.cfg.What, Reason: reasonOpen}
	case g.Stalled():
		return &Refused{Dependency: g.cfg.Name, What: g.cfg.What, Reason: reasonStalled}
	}
	return nil
}

// state is the breaker's state as the gauge shows it: 0 closed, 1
// half-open, 2 open.
func (g *Guard) state() float64 {
	switch {
	case g.breaker.IsOpen():
		return 2
	case g.breaker.IsHalfOpen():
		return 1
	}
	return 0
}
