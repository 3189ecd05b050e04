// Package app is the ordering service's composition root: one constructor,
// New, builds every part of a shop process in one explicit order (the
// store, its timing wrapper, the shared cache, the in-process cache, the
// job queue and the order desk, the order events, the HTTP listeners), and
// Close releases them in reverse. Each part gets the ones built before it,
// finished: nothing is patched in afterwards. cmd/shop only turns flags
// into a Config and calls New, Serve and Close.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/perfscale/perfscale/shop"
	"github.com/perfscale/perfscale/shop/antipattern"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/cache"
	"github.com/perfscale/perfscale/shop/httpapi"
	"github.com/perfscale/perfscale/shop/instrument"
	"github.com/perfscale/perfscale/shop/jobs"
	shopnats "github.com/perfscale/perfscale/shop/nats"
	"github.com/perfscale/perfscale/shop/postgres"
	shopredis "github.com/perfscale/perfscale/shop/redis"
	"github.com/perfscale/perfscale/shop/resilience"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/sharded"
)

// Roles of a process.
const (
	RoleAll    = "all"    // HTTP and background jobs
	RoleAPI    = "api"    // HTTP only; jobs are enqueued for a worker
	RoleWorker = "worker" // background jobs; HTTP serves only health, readiness, metrics
)

// Config is a shop process's settings, parsed and checked (cmd/shop reads
// them from flags and the environment).
type Config struct {
	Addr, AdminAddr string
	// DataDir holds the SQLite database when DatabaseURL is empty.
	DataDir string
	Role    string
	// DatabaseURL selects PostgreSQL; empty runs the embedded SQLite
	// default in DataDir.
	DatabaseURL string
	// ShardURLs, when set, are the PostgreSQL shards, shard 1 first
	// (DatabaseURL is shard 1's): docs/sharding.md.
	ShardURLs []string
	Postgres  postgres.Options
	// RedisURL enables the shared cache layer; empty: none.
	RedisURL, RedisPrefix string
	// NATSURL enables order events on NATS JetStream; empty: none (order
	// streams poll the database).
	NATSURL, NATSStream string
	// NATSTimeout bounds a call that sets something up on NATS
	// (shopnats.Config.CallTimeout); zero takes its default.
	NATSTimeout time.Duration
	SeedItems   int
	Workers     int
	PrepTime    time.Duration
	MailLatency time.Duration
	// JobPollInterval and JobFetchCooldown tune the worker's fetching
	// (jobs.Config); zero takes the defaults.
	JobPollInterval, JobFetchCooldown time.Duration
	// ReplicaName is sent as X-Replica; empty means the listener's
	// host:port.
	ReplicaName    string
	AdminToken     string
	SessionLimit   httpapi.SessionLimit
	Admission      httpapi.AdmissionConfig
	TrustedProxies []netip.Prefix
	// DrainDelay is how long a stopping process keeps serving with /readyz
	// failing before its listener closes; ShutdownTimeout how long it then
	// waits for requests and jobs in flight.
	DrainDelay, ShutdownTimeout time.Duration
	// Drain waits out the drain delay (nil: a plain wait); cmd/shop's
	// returns early on a second signal.
	Drain  func(delay time.Duration, log *slog.Logger)
	Logger *slog.Logger
	// Antipatterns are the anti-pattern switches to run with (none by
	// default; see shop/antipattern), Hops the extra-hops switch's number
	// of hops (0: antipattern.DefaultHops).
	Antipatterns antipattern.Set
	Hops         int
	// StallAfter is how long the database's reads or writes may wait with
	// none finishing before new ones are refused and readiness fails
	// (0: resilience.DefaultStallAfter).
	StallAfter time.Duration
	// NoCheckoutBackpressure lets every checkout through however far the
	// confirmations fall behind (no resilience.Backpressure): for a
	// benchmark that runs no worker on purpose, whose backlog would
	// otherwise refuse its checkouts a few seconds in.
	NoCheckoutBackpressure bool

	// guardClock, when set, is the guards' clock instead of the wall
	// clock: a test moves it to say when calls have waited past
	// StallAfter (resilience.Metrics.UseClock).
	guardClock guardClock
}

// guardClock is a clock a test moves by hand: Now, and AfterFunc calling
// f once d has passed on it.
type guardClock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func())
}

// StockFigureEvery is how often a replica of a sharded store sums every
// shard's quotas into the stock its item pages show (how stale the
// figure may be; the menu's sold-out state is not stale by this).
const StockFigureEvery = 2 * time.Second

// loopStockFigures names the stock figures' refresh in App.loops.
const loopStockFigures = "stock figures"

// App is a built shop process.
type App struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry
	// background runs the caches' polls and subscriptions, which carry on
	// through the drain (requests are still served) until Close.
	background context.Context
	// closers release what was built, in reverse order, at Close.
	closers []func() error
	// loops names the periodic reads started beside the store whose
	// start depends on the role (tests check which role runs which).
	loops []string

	backend *backend.Backend
	store   shop.Store
	// guards are the dependencies' breakers; guarded is the store behind
	// its read and write guards (on a sharded store, shard 1's: the
	// catalog's home, whose reads the menu needs).
	guards  *resilience.Metrics
	guarded *resilience.Store
	// shardGuards are the shards' stores behind their guards, shard 1
	// first: each shard's escrow goes through the same guards.
	shardGuards []*resilience.Store
	shared      *shopredis.Client
	version     *cache.Version
	cached      *cache.Cache
	layer       *shopredis.Store // the Redis layer over the store (--redis)
	// catalog and sessions are what the handler reads them through: the
	// cache layers, or what an anti-pattern switch puts in their place.
	catalog  shop.CatalogService
	sessions shop.SessionService
	memory   *antipattern.MemorySessions // local-sessions
	hops     *antipattern.Hops           // extra-hops
	carts    shop.CartService
	ordering shop.Ordering
	bus      *shopnats.Bus
	// events is the bus behind its guard: the relay and the order
	// streams use it.
	events *resilience.GuardedBus
	// relayWake wakes this process's outbox relay when its jobs find
	// order events committed (jobs.Config.EventsWritten); nil where the
	// relay polls (SQLite).
	relayWake chan struct{}
	api       *httpapi.Server
	admin     *httpapi.Server
	replica   string
	draining  atomic.Bool
}

// New builds the process in order; on an error it releases what it had
// built and returns the error.
func New(ctx context.Context, cfg Config) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	a := &App{cfg: cfg, log: cfg.Logger, reg: httpapi.NewRegistry(), background: bg}
	a.onClose(func() error { stop(); return nil })
	if err := antipattern.Register(a.reg, cfg.Antipatterns); err != nil {
		return nil, err
	}
	steps := []func(context.Context) error{
		// The listeners first: an address in use fails the start before a
		// data directory is made or a catalog seeded.
		a.listen,          // the API's and admin listeners; the API's port names the replica
		a.openStore,       // the store, timed; the catalog seeded
		a.openSharedCache, // Redis: sessions, carts, menus (--redis)
		a.openCache,       // in-process: catalog version, items, sessions
		a.openQueue,       // the job queue over the timed store; the order desk
		a.openEvents,      // order events on NATS (--nats)
		a.buildHandler,    // the HTTP adapter over all of the above
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			a.Close()
			return nil, err
		}
	}
	a.warnAntipatterns()
	return a, nil
}

func (a *App) onClose(f func() error) { a.closers = append(a.closers, f) }

// Close releases everything New built, in reverse order. Call it after
// Serve has returned (or instead of Serve).
func (a *App) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	return errors.Join(errs...)
}

func (a *App) works() bool { return a.cfg.Role != RoleAPI }

// openStore opens the database and the store, wrapped by the timing
// instrumentation, and seeds an empty catalog.
func (a *App) openStore(ctx context.Context) error {
	timed := instrument.NewMetrics(a.reg).Wrap
	a.guards = resilience.NewMetrics(a.reg)
	if c := a.cfg.guardClock; c != nil {
		a.guards.UseClock(c.Now, c.AfterFunc)
	}
	// The guards sit outside the timing: a refused call is no store call,
	// and each attempt of a retried one is. On a sharded store each shard
	// is wrapped behind guards of its own, so one shard down opens its
	// own breaker and no other shard's.
	bc := backend.Config{DatabaseURL: a.cfg.DatabaseURL, ShardURLs: a.cfg.ShardURLs, Postgres: a.cfg.Postgres, Jobs: jobs.Config{Logger: a.log}, Wrap: func(s shop.Store) shop.Store {
		g := a.guardStore(timed(s))
		if a.guarded == nil {
			a.guarded = g // the store's, or the catalog's home: shard 1
		}
		return g
	}}
	// A shard's escrow (the quota other shards' checkouts borrow) behind
	// that shard's guards: a shard that fails or hangs refuses another
	// shard's checkout at once instead of holding it (docs/sharding.md).
	bc.GuardEscrow = func(k int, e sharded.Escrow) sharded.Escrow {
		g := a.shardGuards[k]
		return sharded.GuardEscrow(e, g.Reads(), g.Writes())
	}
	// And each such call a checkout makes within the guards' stall limit:
	// a shard that is slow, not only one that fails, costs another
	// shard's checkout at most that once.
	bc.EscrowWait = sharded.EscrowWait
	// Each read replica behind a guard of its own: while one fails or
	// crawls, its reads go to the primary at once (postgres.Guard).
	replicas := 0
	bc.Postgres.ReplicaGuard = func(at string) postgres.Guard {
		replicas++
		return a.guards.Guard(resilience.Config{Name: fmt.Sprintf("database-replica-%d", replicas), What: "the read replica at " + at, Logger: a.log})
	}
	// With replicas, the primary's reads have a guard of their own: the
	// store's read guard counts the replicas' answers as progress and
	// would not see the primary stall (postgres.Options.PrimaryReadGuard).
	primaries := 0
	bc.Postgres.PrimaryReadGuard = func(at string) postgres.Guard {
		primaries++
		return a.guards.Guard(resilience.Config{Name: fmt.Sprintf("database-primary-read-%d", primaries), What: "the database", StallAfter: a.cfg.StallAfter, Logger: a.log})
	}
	// A pool whose server went away drops every connection at once
	// (postgres.Options.OnReset): said once per restart, not per request.
	bc.Postgres.OnReset = func(at string, cause error) {
		a.log.Warn("postgres: the server went away; the pool dropped every connection", "at", at, "cause", cause)
	}
	a.badStore(&bc)
	if a.cfg.DatabaseURL == "" {
		path, err := a.sqliteFile()
		if err != nil {
			return err
		}
		bc.SQLitePath = path
	}
	b, err := backend.OpenStore(ctx, bc)
	if err != nil {
		return err
	}
	a.onClose(b.Close)
	a.backend, a.store, a.carts = b, b.Store, b.Store
	// The pools' saturation is read at each scrape of /metrics.
	a.reg.MustRegister(instrument.NewPoolCollector(func() []instrument.PoolStats { return poolStats(b) }))
	if b.Sharded != nil {
		// The item pages' stock figure: every shard's quotas summed, two
		// statements a shard every StockFigureEvery. The worker serves no
		// item page, so it does not read them: each process that does
		// reads every shard, so the reads grow as processes × shards.
		if a.cfg.Role != RoleWorker {
			a.loops = append(a.loops, loopStockFigures)
			go b.Sharded.RunStockFigures(a.background, StockFigureEvery)
		}
		// The bucket map, when a resharding stores one on shard 1.
		go b.Sharded.RunMapReload(a.background, sharded.MapReloadEvery)
		// Stopping, the process routes by nothing: a reshard need not wait
		// for it (before the stores close: the closers run in reverse).
		a.onClose(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := b.Sharded.LeaveMapReaders(ctx); err != nil {
				a.log.Warn("left the shard map's readers only by expiry", "error", err)
			}
			return nil
		})
	}
	if n, err := b.Seed(ctx, seed.Items(a.cfg.SeedItems)); err != nil {
		return err
	} else if n > 0 {
		a.log.Info("seeded catalog", "items", n, "database", b.Where)
	}
	return nil
}

// poolStats are the figures of every pool of the backend's databases.
func poolStats(b *backend.Backend) []instrument.PoolStats {
	var stats []instrument.PoolStats
	pg := func(shard string, db *postgres.DB) {
		for _, p := range db.Pools() {
			stats = append(stats, instrument.PgxPoolStats(shard, p.Role, p.Pool.Stat()))
		}
	}
	switch {
	case b.SQLite != nil:
		write, read := b.SQLite.Stats()
		stats = append(stats, instrument.SQLPoolStats("", "write", write), instrument.SQLPoolStats("", "read", read))
	case b.Shards != nil:
		for k, db := range b.Shards {
			pg(instrument.ShardLabel(k), db)
		}
	case b.Postgres != nil:
		pg("", b.Postgres)
	}
	return stats
}

// guardStore puts s, the store or its next shard, behind a read guard
// and a write guard of its own: dependencies database-read and
// database-write, or database-read-shard-K and database-write-shard-K.
func (a *App) guardStore(s shop.Store) *resilience.Store {
	name, what := "database", "the database"
	onShards := len(a.cfg.ShardURLs) > 0
	if onShards {
		k := len(a.shardGuards) + 1
		name = fmt.Sprintf("database-%%s-shard-%d", k)
		what = fmt.Sprintf("shard %d's database", k)
	} else {
		name += "-%s"
	}
	reads := a.guards.Guard(resilience.Config{Name: fmt.Sprintf(name, "read"), What: what, StallAfter: a.cfg.StallAfter, Logger: a.log})
	writes := a.guards.Guard(resilience.Config{Name: fmt.Sprintf(name, "write"), What: what, StallAfter: a.cfg.StallAfter, Logger: a.log})
	g := resilience.NewStore(s, reads, writes)
	if onShards {
		a.shardGuards = append(a.shardGuards, g)
	}
	return g
}

// sqliteFile makes the data directory and returns the database's path.
func (a *App) sqliteFile() (string, error) {
	if err := os.MkdirAll(a.cfg.DataDir, 0o750); err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	return filepath.Join(a.cfg.DataDir, "shop.db"), nil
}

// openSharedCache connects to Redis (--redis, not on a worker): the layer
// between the in-process cache and the store.
func (a *App) openSharedCache(ctx context.Context) error {
	if a.cfg.RedisURL == "" || a.cfg.Role == RoleWorker {
		return nil
	}
	if a.on(antipattern.NoCache) || a.on(antipattern.LocalCache) {
		a.log.Warn("Redis is not used: the anti-pattern switches leave no layer shared by the replicas", "antipatterns", a.cfg.Antipatterns.String())
		return nil
	}
	// Redis's calls, and the pings that find it back, go through a guard:
	// a Redis failing on and off stays out of use while its breaker is
	// open instead of being taken back at its first answer.
	guard := a.guards.Guard(resilience.Config{Name: "redis", What: "Redis", Logger: a.log})
	shared, err := shopredis.Open(ctx, shopredis.Config{URL: a.cfg.RedisURL, Prefix: a.cfg.RedisPrefix, Registerer: a.reg, Logger: a.log.With("component", "redis"), Guard: guard})
	if err != nil {
		return err
	}
	a.onClose(shared.Close)
	go shared.Run(a.background)
	a.shared = shared
	return nil
}

// openCache builds the in-process layer: the catalog version kept in
// memory (fed by the database's notifications on PostgreSQL and by Redis
// announcements when there is Redis), then the Redis
// store layer that prices carts under it, then the item and session cache
// in front of both.
func (a *App) openCache(ctx context.Context) error {
	if done, err := a.cacheAntipatterns(); done || err != nil {
		return err
	}
	feed, poll := a.versionFeed()
	version, err := cache.NewVersion(ctx, a.store, cache.VersionConfig{Feed: feed, PollInterval: poll, Logger: a.log})
	if err != nil {
		return err
	}
	go version.Run(a.background)
	var front cache.Store = a.store
	if a.shared != nil {
		a.layer = shopredis.NewStore(a.store, a.shared, version.CatalogVersion)
		front, a.carts = a.layer, a.layer
	}
	cached, err := cache.New(ctx, front, cache.Config{Version: version, Logger: a.log})
	if err != nil {
		return err
	}
	go cached.Run(a.background)
	a.version, a.cached = version, cached
	a.catalog, a.sessions = cached, cached
	a.localSessions()
	return nil
}

// openQueue builds the job queue over the timed store (its workers run in
// this process unless it is an api) and the order desk over both, seen
// through the cache layers: a checkout refreshes the items it sold and
// drops the session's cart from Redis.
func (a *App) openQueue(ctx context.Context) error {
	jc := jobs.Config{Work: a.works(), PrepTime: a.cfg.PrepTime, MailLatency: a.cfg.MailLatency, MaxWorkers: a.cfg.Workers,
		PollInterval: a.cfg.JobPollInterval, FetchCooldown: a.cfg.JobFetchCooldown, Logger: a.log}
	if a.works() && a.backend.Postgres != nil {
		// On PostgreSQL the relay waits to be woken instead of polling.
		// Every order event is one this process's jobs see committed: a
		// checkout's "placed" with its confirmation job, the confirmation's
		// and the "ready" step's of their own. A notification from the
		// database would cost each of its listening connections a
		// transaction (docs/postgres.md).
		a.relayWake = make(chan struct{}, 1)
		jc.EventsWritten = func() { postgres.Poke(a.relayWake) }
	}
	if a.works() && a.cfg.DatabaseURL == "" {
		sole, err := a.lockWorker()
		if err != nil {
			return err
		}
		jc.SoleWorker = sole
	}
	if err := a.backend.OpenQueue(ctx, jc); err != nil {
		return err
	}
	// The job backlog is read at each scrape of /metrics (admin listener).
	a.reg.MustRegister(instrument.NewQueueCollector(a.backend.Queue.Backlog, time.Second))
	a.ordering = a.backend.Desk
	switch {
	case a.cfg.Role == RoleWorker:
	case a.cfg.NoCheckoutBackpressure:
		a.log.Warn("checkout backpressure is off: checkouts are never refused while confirmations fall behind")
	default:
		// Checkout is refused while its shard's confirmations fall
		// behind, so each backlog stays bounded (resilience.Backpressure).
		be := a.backend
		conf := resilience.Confirmations{Shards: be.QueueShards(), Backlog: func(ctx context.Context, k int) (resilience.Backlog, error) {
			b, err := be.ShardBacklog(ctx, k)
			return resilience.Backlog{Waiting: b.Waiting, OldestAge: b.OldestAge}, err
		}}
		if be.Sharded != nil {
			conf.ShardOf = be.Sharded.OwnerOfSession
		}
		bp := a.guards.Backpressure(a.ordering, conf, resilience.BackpressureConfig{})
		go bp.Run(a.background)
		a.ordering = bp
	}
	if a.cached != nil {
		a.ordering = a.cached.Ordering(a.ordering)
	}
	if a.layer != nil {
		a.ordering = a.layer.Ordering(a.ordering)
	}
	a.orderingAntipatterns()
	return nil
}

// lockWorker takes the SQLite database's worker lock: a worker holding it
// is the only live one on the database, so what it finds running was left
// by a killed process and can be taken up at once (jobs.Config.SoleWorker).
// The kernel drops the lock when its holder dies, kill -9 included. On
// PostgreSQL workers may run anywhere, and River's rescuer does it.
func (a *App) lockWorker() (sole bool, err error) {
	path, err := a.sqliteFile()
	if err != nil {
		return false, err
	}
	unlock, ok, err := tryLock(path + ".worker-lock")
	if err != nil {
		return false, err
	}
	a.onClose(func() error { unlock(); return nil })
	return ok, nil
}

// listen binds the API's address, so the replica is named by its port
// before the parts that carry the name are built, and the admin address;
// neither serves until Serve.
func (a *App) listen(context.Context) error {
	a.api = &httpapi.Server{Addr: a.cfg.Addr, Registry: a.reg, Logger: a.log}
	if err := a.api.Listen(); err != nil {
		return fmt.Errorf("the API: %w", err)
	}
	a.onClose(func() error { return a.api.Close(context.Background()) })
	a.replica = a.cfg.ReplicaName
	if a.replica == "" {
		a.replica = listenerName(a.cfg.Addr, a.api.Port())
	}
	if a.cfg.AdminAddr == "" {
		return nil
	}
	a.admin = &httpapi.Server{Addr: a.cfg.AdminAddr}
	if err := a.admin.Listen(); err != nil {
		return fmt.Errorf("the admin listener: %w", err)
	}
	a.onClose(func() error { return a.admin.Close(context.Background()) })
	return nil
}

// openEvents connects to NATS (--nats): the bus feeds the API's order
// streams, and the worker's relay publishes the outbox to it.
func (a *App) openEvents(ctx context.Context) error {
	if a.cfg.NATSURL == "" {
		return nil
	}
	bus, err := shopnats.Open(ctx, shopnats.Config{URL: a.cfg.NATSURL, Stream: a.cfg.NATSStream,
		Subject: strings.ToLower(strings.ReplaceAll(a.cfg.NATSStream, "_", ".")), CallTimeout: a.cfg.NATSTimeout, ClientName: "shop " + a.replica, Logger: a.log.With("component", "nats")})
	if err != nil {
		return err
	}
	a.onClose(func() error { bus.Close(); return nil })
	a.bus = bus
	// While NATS fails, the relay's rounds and new order streams are
	// refused at once (the events wait in the outbox, the streams poll the
	// database) instead of each waiting out its own timeout.
	a.events = resilience.NewBus(bus, a.guards.Guard(resilience.Config{Name: "nats", What: "NATS", Logger: a.log}))
	return nil
}

// catalogStale says the catalog's database (on shards, the catalog's
// home: shard 1) cannot be read now: its read guard refuses, or its
// items were last read from another shard's copy.
func (a *App) catalogStale() bool {
	if a.guarded != nil && a.guarded.Reads().Ready() != nil {
		return true
	}
	return a.backend.Sharded != nil && a.backend.Sharded.CatalogFromCopy()
}

// buildHandler builds the HTTP adapter over the cache layers (catalog,
// sessions, carts, ordering) and the timed store (health, order history).
func (a *App) buildHandler(context.Context) error {
	hcfg := httpapi.Config{
		Catalog: a.catalog, Sessions: a.sessions, Carts: a.carts, Ordering: a.ordering, Health: a.store, OrderHistory: a.store,
		Logger: a.log, Registry: a.reg, AdminToken: a.cfg.AdminToken, AdminReads: a.backend.AdminReads,
		OpsOnly: a.cfg.Role == RoleWorker, Draining: a.draining.Load,
		SessionLimit: a.cfg.SessionLimit, TrustedProxies: a.cfg.TrustedProxies,
		Admission:    a.cfg.Admission,
		Antipatterns: a.cfg.Antipatterns.Names(), MenuPerRequest: a.on(antipattern.NoCache),
		// While the database's reads are refused, the menu in memory is
		// served as the last good copy, marked stale, and item pages are
		// marked stale; on shards also while the catalog's home fails the
		// reads another shard's copy answers.
		Stale: a.catalogStale,
	}
	if a.shared != nil {
		hcfg.SharedMenus = a.shared
	}
	if a.events != nil {
		hcfg.EventFeed = a.events
	}
	h, err := a.httpAntipatterns(httpapi.NewHandler(hcfg))
	if err != nil {
		return err
	}
	a.api.Handler = httpapi.WithReplica(a.replica, h)
	if a.admin != nil {
		a.admin.Handler = adminMux(a.reg)
	}
	return nil
}
