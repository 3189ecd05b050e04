// Command shop runs the perfscale ordering service. On its embedded default
// it needs nothing but a directory: the catalog, sessions, carts, orders and
// the job queue live in one SQLite file, seeded on first start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/cache"
	"github.com/perfscale/perfscale/shop/httpapi"
	"github.com/perfscale/perfscale/shop/instrument"
	"github.com/perfscale/perfscale/shop/jobs"
	shopnats "github.com/perfscale/perfscale/shop/nats"
	"github.com/perfscale/perfscale/shop/postgres"
	shopredis "github.com/perfscale/perfscale/shop/redis"
	"github.com/perfscale/perfscale/shop/seed"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "shop: %v\n", err)
		os.Exit(1)
	}
}

type config struct {
	addr, adminAddr, dataDir, role, logLevel string
	seedItems                                int
	prepTime, mailLatency, shutdownTimeout   time.Duration
	adminToken                               string
	// replicaName is sent as X-Replica; empty means the listener's host:port.
	replicaName string
	// drainDelay is how long a stopping process keeps serving with /readyz
	// failing before its listener closes.
	drainDelay time.Duration
	// dbURL selects PostgreSQL; empty runs the embedded SQLite default.
	dbURL string
	pg    postgres.Options
	// migrate is the `shop migrate` subcommand: migrate and exit.
	migrate bool
	// dropEvents deletes the order events stream on --nats and exits.
	dropEvents bool
	// natsURL enables order events on NATS JetStream; empty: none (order
	// streams poll the database).
	natsURL string
	// sessionLimit and trustedProxies: the per-address limit on new
	// sessions, and the proxies whose forwarding headers name the client.
	workers        int
	sessionLimit   httpapi.SessionLimit
	trustedProxies []netip.Prefix
	// redisURL enables the shared cache layer; empty: none.
	redisURL string
	// redisPrefix and natsStream name this deployment's keys and stream,
	// so deployments on other databases can share one Redis and one NATS.
	redisPrefix, natsStream string
}

// defaultDrainDelay is the drain of a replica behind a load balancer: long
// enough for a balancer that probes /readyz every second or two to see it
// fail twice, and for a passive balancer (nginx) to retire its keep-alive
// connections, each closed after one answer. The all-in-one default and the
// worker have no balancer in front, so they stop at once.
func defaultDrainDelay(role string) string {
	if role == "api" {
		return "5s"
	}
	return "0s"
}

// parseConfig reads flags, each defaulting to its SHOP_* environment
// variable, so the same binary is configured the same way by hand, in a
// container or under a process manager.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	var c config
	if len(args) > 0 && args[0] == "migrate" {
		c.migrate, args = true, args[1:]
	} else if len(args) > 0 && args[0] == "drop-events" {
		c.dropEvents, args = true, args[1:]
	}
	fs := flag.NewFlagSet("shop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&c.addr, "addr", env("SHOP_ADDR", "127.0.0.1:8080"), "listen address of the API (env SHOP_ADDR)")
	fs.StringVar(&c.adminAddr, "admin-addr", env("SHOP_ADMIN_ADDR", ""), "listen address of /debug/pprof and /metrics; empty disables it (env SHOP_ADMIN_ADDR)")
	fs.StringVar(&c.dataDir, "data-dir", env("SHOP_DATA_DIR", "./shop-data"), "directory of the SQLite database (env SHOP_DATA_DIR)")
	fs.StringVar(&c.role, "role", env("SHOP_ROLE", "all"), "api (HTTP only), worker (background jobs only) or all (env SHOP_ROLE)")
	fs.StringVar(&c.logLevel, "log-level", env("SHOP_LOG_LEVEL", "info"), "debug, info, warn or error (env SHOP_LOG_LEVEL)")
	fs.StringVar(&c.replicaName, "replica-name", env("SHOP_REPLICA_NAME", ""), "name sent in the X-Replica response header; default the API listener's host:port (env SHOP_REPLICA_NAME)")
	fs.StringVar(&c.redisURL, "redis", env("SHOP_REDIS_URL", ""), "Redis URL (redis://host:6379/0): sessions, carts and the menu shared by the replicas, catalog changes announced over pub/sub; empty: none (env SHOP_REDIS_URL)")
	fs.StringVar(&c.redisPrefix, "redis-prefix", env("SHOP_REDIS_PREFIX", "shop:"), "prefix of every Redis key and channel: one per database sharing a Redis (env SHOP_REDIS_PREFIX)")
	fs.StringVar(&c.natsStream, "nats-stream", env("SHOP_NATS_STREAM", shopnats.DefaultStream), "JetStream stream of the order events, one per database sharing a NATS; its subjects are its name in lower case with _ as . (SHOP_ORDERS: shop.orders.<id>.<status>) (env SHOP_NATS_STREAM)")
	fs.StringVar(&c.natsURL, "nats", env("SHOP_NATS_URL", ""), "NATS URL (nats://host:4222) for order events on JetStream; empty: events stay in the database's outbox and order streams poll it (env SHOP_NATS_URL)")
	fs.StringVar(&c.dbURL, "db", env("SHOP_DATABASE_URL", ""), "PostgreSQL URL (postgres://user@host:5432/db); empty runs the embedded SQLite default in --data-dir (env SHOP_DATABASE_URL)")
	replicas := urlList{urls: splitList(env("SHOP_DB_REPLICAS", ""))}
	fs.Var(&replicas, "db-replica", "PostgreSQL read replica URL, repeatable: the menu, items and own-order reads go there, writes to --db (env SHOP_DB_REPLICAS, comma-separated)")
	var maxConns, connectTimeout, statementTimeout string
	fs.StringVar(&maxConns, "db-max-conns", env("SHOP_DB_MAX_CONNS", strconv.Itoa(postgres.DefaultMaxConns)), "PostgreSQL pool size per process (and per replica) (env SHOP_DB_MAX_CONNS)")
	fs.StringVar(&connectTimeout, "db-connect-timeout", env("SHOP_DB_CONNECT_TIMEOUT", postgres.DefaultConnectTimeout.String()), "how long connecting to PostgreSQL may take (env SHOP_DB_CONNECT_TIMEOUT)")
	fs.StringVar(&statementTimeout, "db-statement-timeout", env("SHOP_DB_STATEMENT_TIMEOUT", postgres.DefaultStatementTimeout.String()), "PostgreSQL cancels a statement running longer (env SHOP_DB_STATEMENT_TIMEOUT)")
	var seedItems, prep, mailLat, shutdown, drain string
	fs.StringVar(&drain, "drain-delay", env("SHOP_DRAIN_DELAY", ""), "on SIGTERM, how long to keep serving with /readyz failing before the listener closes; default 5s with --role api, else 0s; a second signal cuts it short (env SHOP_DRAIN_DELAY)")
	fs.StringVar(&seedItems, "seed-items", env("SHOP_SEED_ITEMS", strconv.Itoa(seed.DefaultItems)), "catalog size seeded on first start, at most 1000000 (env SHOP_SEED_ITEMS)")
	fs.StringVar(&prep, "prep-time", env("SHOP_PREP_TIME", "10s"), "time from confirmed to ready (env SHOP_PREP_TIME)")
	fs.StringVar(&mailLat, "mail-latency", env("SHOP_MAIL_LATENCY", "0s"), "simulated mail provider latency (env SHOP_MAIL_LATENCY)")
	fs.StringVar(&shutdown, "shutdown-timeout", env("SHOP_SHUTDOWN_TIMEOUT", "15s"), "how long shutdown waits for in-flight requests and running jobs before cancelling them (env SHOP_SHUTDOWN_TIMEOUT)")
	var sessionRate, sessionBurst, trusted, workers string
	fs.StringVar(&workers, "workers", env("SHOP_WORKERS", strconv.Itoa(jobs.DefaultMaxWorkers)), "background jobs one worker process runs at once (env SHOP_WORKERS)")
	fs.StringVar(&sessionRate, "session-rate", env("SHOP_SESSION_RATE", strconv.Itoa(httpapi.DefaultSessionRate)), "new sessions per second allowed to one client address, on average; 0 disables the limit (env SHOP_SESSION_RATE)")
	fs.StringVar(&sessionBurst, "session-burst", env("SHOP_SESSION_BURST", strconv.Itoa(httpapi.DefaultSessionBurst)), "new sessions one client address may create at once (env SHOP_SESSION_BURST)")
	fs.StringVar(&trusted, "trusted-proxies", env("SHOP_TRUSTED_PROXIES", ""), "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For/X-Real-IP name the client; empty trusts none (env SHOP_TRUSTED_PROXIES)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: shop [flags]\n       shop migrate [flags]\n       shop drop-events --nats URL --nats-stream NAME\n\nRuns the ordering service; `shop migrate` migrates the database (shop and job tables) and exits,\nwhich PostgreSQL needs before the service starts; `shop drop-events` deletes a deployment's order events\nstream from NATS JetStream (which reserves its --nats-stream's storage until then) and exits.\nSHOP_ADMIN_TOKEN (environment only) enables PUT /v1/admin/items/{id}.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (shop takes only flags; see shop --help)", fs.Arg(0))
	}
	n, err := strconv.Atoi(seedItems)
	if err != nil || n < 0 || n > seed.MaxItems {
		return nil, fmt.Errorf("--seed-items must be a whole number from 0 to %d, got %q", seed.MaxItems, seedItems)
	}
	c.seedItems = n
	if c.dbURL != "" {
		if !strings.HasPrefix(c.dbURL, "postgres://") && !strings.HasPrefix(c.dbURL, "postgresql://") {
			return nil, fmt.Errorf("--db must be a postgres:// URL (postgres://user@host:5432/database), got %q", redactURL(c.dbURL))
		}
		if _, err := postgres.ParseURL(c.dbURL); err != nil {
			return nil, fmt.Errorf("--db: %w", err)
		}
	}
	if len(replicas.urls) > 0 && c.dbURL == "" {
		return nil, errors.New("--db-replica needs --db: read replicas are of a PostgreSQL primary")
	}
	for _, r := range replicas.urls {
		if !strings.HasPrefix(r, "postgres://") && !strings.HasPrefix(r, "postgresql://") {
			return nil, fmt.Errorf("--db-replica must be a postgres:// URL, got %q", redactURL(r))
		}
		if _, err := postgres.ParseURL(r); err != nil {
			return nil, fmt.Errorf("--db-replica: %w", err)
		}
	}
	c.pg.Replicas = replicas.urls
	mc, err := strconv.Atoi(maxConns)
	if err != nil || mc < 1 || mc > 1000 {
		return nil, fmt.Errorf("--db-max-conns must be a whole number from 1 to 1000, got %q", maxConns)
	}
	c.pg.MaxConns = int32(mc)
	if drain == "" {
		drain = defaultDrainDelay(c.role)
	}
	for _, d := range []struct {
		name, raw string
		dst       *time.Duration
	}{{"prep-time", prep, &c.prepTime}, {"mail-latency", mailLat, &c.mailLatency}, {"shutdown-timeout", shutdown, &c.shutdownTimeout}, {"drain-delay", drain, &c.drainDelay},
		{"db-connect-timeout", connectTimeout, &c.pg.ConnectTimeout}, {"db-statement-timeout", statementTimeout, &c.pg.StatementTimeout}} {
		v, err := time.ParseDuration(d.raw)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("--%s must be a duration such as 5s or 250ms, got %q", d.name, d.raw)
		}
		*d.dst = v
	}
	switch c.role {
	case "api", "worker", "all":
	default:
		return nil, fmt.Errorf("--role must be api, worker or all, got %q", c.role)
	}
	if c.addr == "" {
		return nil, errors.New("--addr must not be empty")
	}
	if c.pg.ConnectTimeout == 0 || c.pg.StatementTimeout == 0 {
		return nil, errors.New("--db-connect-timeout and --db-statement-timeout must be above 0")
	}
	if err := checkNATSURL(c.natsURL); err != nil {
		return nil, err
	}
	if c.workers, err = strconv.Atoi(workers); err != nil || c.workers < 1 || c.workers > 1000 {
		return nil, fmt.Errorf("--workers must be a whole number from 1 to 1000, got %q", workers)
	}
	if !streamName.MatchString(c.natsStream) {
		return nil, fmt.Errorf("--nats-stream must be letters, digits and _ (starting with a letter), got %q", c.natsStream)
	}
	if c.sessionLimit.Rate, err = strconv.ParseFloat(sessionRate, 64); err != nil || c.sessionLimit.Rate < 0 || math.IsInf(c.sessionLimit.Rate, 0) || math.IsNaN(c.sessionLimit.Rate) {
		return nil, fmt.Errorf("--session-rate must be a number of sessions per second, 0 or more, got %q", sessionRate)
	}
	if c.sessionLimit.Rate == 0 {
		c.sessionLimit.Rate = -1 // httpapi: no limit
	}
	if c.sessionLimit.Burst, err = strconv.Atoi(sessionBurst); err != nil || c.sessionLimit.Burst < 1 {
		return nil, fmt.Errorf("--session-burst must be a whole number of at least 1, got %q", sessionBurst)
	}
	if c.trustedProxies, err = httpapi.ParseTrustedProxies(trusted); err != nil {
		return nil, fmt.Errorf("--trusted-proxies must be addresses or CIDR prefixes separated by commas, got %q", trusted)
	}
	if c.redisURL != "" {
		if err := shopredis.CheckURL(c.redisURL); err != nil {
			return nil, err
		}
	}
	c.adminToken = getenv("SHOP_ADMIN_TOKEN")
	// A token with surrounding spaces (a stray newline from a secrets file)
	// would be logged as enabled and then match no Authorization header.
	if strings.TrimSpace(c.adminToken) != c.adminToken {
		return nil, errors.New("SHOP_ADMIN_TOKEN has leading or trailing whitespace; set it to the token alone")
	}
	return &c, nil
}

// migrate is `shop migrate`: the shop's and River's tables brought up to
// date, as a step of its own, so replicas starting together never race to
// migrate (on PostgreSQL they refuse to start on an old schema).
func migrate(ctx context.Context, cfg *config, log *slog.Logger) error {
	bc := backend.Config{DatabaseURL: cfg.dbURL, Postgres: cfg.pg, Jobs: jobs.Config{Logger: log}}
	if cfg.dbURL == "" {
		if err := os.MkdirAll(cfg.dataDir, 0o750); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		bc.SQLitePath = filepath.Join(cfg.dataDir, "shop.db")
	}
	where, err := backend.Migrate(ctx, bc)
	if err != nil {
		return err
	}
	log.Info("migrated", "database", where)
	return nil
}

// dropEvents deletes the deployment's order events stream: tearing a
// deployment down that shared a NATS server with others (the local
// clusters do) gives back the storage the stream reserved.
func dropEvents(ctx context.Context, cfg *config, log *slog.Logger) error {
	if cfg.natsURL == "" {
		return errors.New("drop-events needs --nats (or SHOP_NATS_URL)")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	deleted, err := shopnats.DeleteStream(ctx, cfg.natsURL, cfg.natsStream)
	if err != nil {
		return err
	}
	log.Info("order events stream", "stream", cfg.natsStream, "deleted", deleted)
	return nil
}

// urlList is a repeatable flag; the first use replaces the environment's
// list.
type urlList struct {
	urls   []string
	byFlag bool
}

func (l *urlList) String() string { return strings.Join(l.urls, ",") }

func (l *urlList) Set(v string) error {
	if v == "" {
		return errors.New("empty URL")
	}
	if !l.byFlag {
		l.urls, l.byFlag = nil, true
	}
	l.urls = append(l.urls, v)
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// redactURL hides a password in a URL that is echoed in an error.
func redactURL(u string) string {
	if p, err := url.Parse(u); err == nil && p.User != nil {
		if _, ok := p.User.Password(); ok {
			p.User = url.UserPassword(p.User.Username(), "xxxxx")
			return p.String()
		}
	}
	return u
}

// logFlushEvery bounds how late a log line reaches stdout.
const logFlushEvery = 100 * time.Millisecond

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", level)
	}
	return slog.New(httpapi.RequestIDHandler{Handler: slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})}), nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := parseConfig(args, getenv, stdout)
	if err != nil {
		return err
	}
	logs := newBatchedLog(stdout, logFlushEvery)
	defer logs.Close()
	log, err := newLogger(cfg.logLevel, logs)
	if err != nil {
		return err
	}

	if cfg.migrate {
		return migrate(ctx, cfg, log)
	}
	if cfg.dropEvents {
		return dropEvents(ctx, cfg, log)
	}
	// The composition: the store's timing wrapper is built here and the
	// workers and the HTTP adapter get the wrapped store, each as the
	// narrow interface it defines.
	reg := httpapi.NewRegistry()
	work := cfg.role != "api"
	soleWorker := false
	dbPath := ""
	if cfg.dbURL == "" {
		if err := os.MkdirAll(cfg.dataDir, 0o750); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		dbPath = filepath.Join(cfg.dataDir, "shop.db")
		// A worker that holds the database's worker lock is the only live
		// one on it, so what it finds running was left by a killed process
		// and can be taken up at once (jobs.Config.SoleWorker). The kernel
		// drops the lock when its holder dies, kill -9 included. On
		// PostgreSQL workers may run anywhere, and River's rescuer does it.
		if work {
			unlock, ok, err := tryLock(dbPath + ".worker-lock")
			if err != nil {
				return err
			}
			defer unlock()
			soleWorker = ok
		}
	}
	b, err := backend.Open(ctx, backend.Config{
		DatabaseURL: cfg.dbURL,
		Postgres:    cfg.pg,
		SQLitePath:  dbPath,
		Jobs: jobs.Config{
			Work:        work,
			SoleWorker:  soleWorker,
			PrepTime:    cfg.prepTime,
			MailLatency: cfg.mailLatency,
			MaxWorkers:  cfg.workers,
			Logger:      log,
		},
		Wrap: instrument.NewMetrics(reg).Wrap,
	})
	if err != nil {
		return err
	}
	defer b.Close()
	store, queue := b.Store, b.Queue
	// The job backlog is read at each scrape of /metrics (admin listener).
	reg.MustRegister(instrument.NewQueueCollector(queue.Backlog, time.Second))

	if n, err := b.Seed(ctx, seed.Items(cfg.seedItems)); err != nil {
		return err
	} else if n > 0 {
		log.Info("seeded catalog", "items", n, "database", b.Where)
	}

	// The in-process cache layer (catalog version, items, sessions) sits in
	// front of the timed store, so the store metrics count real store
	// calls. It keeps polling through the drain: requests are still served.
	// With --redis, the layers are: memory (shop/cache), then Redis
	// (shop/redis: sessions, carts, the encoded menu, catalog changes
	// announced over pub/sub), then the store.
	pollCtx, stopPoll := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPoll()
	var (
		front  cache.Store   = store
		carts  httpapi.Carts = store
		shared *shopredis.Client
		rstore *shopredis.Store
		feed   cache.Feed
	)
	if cfg.redisURL != "" && cfg.role != "worker" {
		shared, err = shopredis.Open(ctx, shopredis.Config{URL: cfg.redisURL, Prefix: cfg.redisPrefix, Registerer: reg, Logger: log.With("component", "redis")})
		if err != nil {
			return err
		}
		defer shared.Close()
		go shared.Run(pollCtx)
		rstore = shopredis.NewStore(store, shared)
		front, carts, feed = rstore, rstore, shared
	}
	cached, err := cache.New(ctx, front, cache.Config{Logger: log, Feed: feed})
	if err != nil {
		return err
	}
	go cached.Run(pollCtx)
	var orders httpapi.Orders = cached.Orders(b.Orders)
	if rstore != nil {
		rstore.VersionFrom(cached)
		orders = rstore.Orders(orders)
	}

	var draining atomic.Bool
	api := &httpapi.Server{Addr: cfg.addr}
	if err := api.Listen(); err != nil {
		return err
	}
	replica := cfg.replicaName
	if replica == "" {
		replica = listenerName(cfg.addr, api.Port())
	}
	// Order events: the bus (optional) feeds the API's order streams, and
	// the worker's relay publishes the outbox to it.
	hcfg := httpapi.Config{
		Catalog: cached, Sessions: cached, Carts: carts, Orders: orders, Health: store, Logger: log, Registry: reg, AdminToken: cfg.adminToken,
		OpsOnly: cfg.role == "worker", Draining: draining.Load, OrderHistory: store,
		SessionLimit: cfg.sessionLimit, TrustedProxies: cfg.trustedProxies,
	}
	if shared != nil {
		hcfg.SharedMenus = shared
	}
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRelay()
	relayDone := make(chan struct{})
	close(relayDone)
	if cfg.natsURL != "" {
		bus, err := shopnats.Open(ctx, shopnats.Config{URL: cfg.natsURL, Stream: cfg.natsStream,
			Subject: strings.ToLower(strings.ReplaceAll(cfg.natsStream, "_", ".")), ClientName: "shop " + replica, Logger: log.With("component", "nats")})
		if err != nil {
			return err
		}
		defer bus.Close()
		hcfg.EventFeed = bus
		if work {
			relay := shopnats.NewRelay(store, bus, shopnats.RelayConfig{Registerer: reg, Logger: log.With("component", "relay")})
			relayDone = make(chan struct{})
			go func() { defer close(relayDone); relay.Run(relayCtx) }() //nolint:errcheck // returns nil
		}
	}
	api.Handler = httpapi.WithReplica(replica, httpapi.NewHandler(hcfg))
	if err := api.Open(); err != nil {
		return err
	}
	log.Info("listening", "url", api.URL(), "replica", replica, "role", cfg.role, "database", b.Where, "admin_api", cfg.adminToken != "")

	var admin *httpapi.Server
	if cfg.adminAddr != "" {
		admin = &httpapi.Server{Addr: cfg.adminAddr, Handler: adminMux(reg)}
		if err := admin.Open(); err != nil {
			api.Close(context.Background())
			return err
		}
		log.Info("admin listening", "url", admin.URL())
	}
	if err := queue.Start(ctx); err != nil {
		api.Close(context.Background())
		return err
	}

	<-ctx.Done()
	// Fail readiness first and keep serving for the drain delay, so a load
	// balancer stops routing here while requests still succeed; then close
	// the listener and let in-flight requests and jobs finish.
	draining.Store(true)
	drain(cfg.drainDelay, log)
	log.Info("shutting down", "timeout", cfg.shutdownTimeout.String())
	stopCtx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	var errs []error
	errs = append(errs, api.Close(stopCtx))
	if admin != nil {
		errs = append(errs, admin.Close(stopCtx))
	}
	errs = append(errs, queue.Stop(stopCtx))
	// The relay stops after the jobs: it publishes what they changed, and
	// what it leaves, the next start publishes.
	stopRelay()
	<-relayDone
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// tryLock takes an exclusive advisory lock on path without waiting; ok is
// false when another process holds it.
func tryLock(path string) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("worker lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return func() {}, false, nil
		}
		return nil, false, fmt.Errorf("worker lock %s: %w", path, err)
	}
	return func() { f.Close() }, true, nil
}

// drain waits for the drain delay, or less if a second SIGINT or SIGTERM
// arrives: an operator who presses Ctrl-C twice means now.
func drain(delay time.Duration, log *slog.Logger) {
	if delay <= 0 {
		return
	}
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	log.Info("draining", "delay", delay.String())
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case sig := <-again:
		log.Info("drain cut short", "signal", sig.String())
	}
}

// listenerName is the default replica name: the API's host:port, with the
// machine's host name when the listener is on every interface.
func listenerName(addr string, port int) string {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// adminMux serves profiling and metrics on a listener of its own, so they
// are never exposed on the public address.
func adminMux(reg prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// streamName is a JetStream stream name that also reads as subject tokens.
var streamName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*$`)

// checkNATSURL refuses a --nats value that is not a NATS URL, with one line.
func checkNATSURL(raw string) error {
	if raw == "" {
		return nil
	}
	for _, one := range strings.Split(raw, ",") {
		u, err := url.Parse(strings.TrimSpace(one))
		if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls") {
			return fmt.Errorf("--nats must be nats://host:port (several separated by commas), got %q", raw)
		}
	}
	return nil
}
