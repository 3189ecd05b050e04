package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/perfscale/perfscale/shop/antipattern"
	"github.com/perfscale/perfscale/shop/app"
	"github.com/perfscale/perfscale/shop/httpapi"
	"github.com/perfscale/perfscale/shop/jobs"
	shopnats "github.com/perfscale/perfscale/shop/nats"
	"github.com/perfscale/perfscale/shop/postgres"
	shopredis "github.com/perfscale/perfscale/shop/redis"
	"github.com/perfscale/perfscale/shop/seed"
	"github.com/perfscale/perfscale/shop/shard"
)

// config is the service's settings (app.Config) and the command's own.
type config struct {
	app.Config
	logLevel string
	// migrate is the `shop migrate` subcommand: migrate and exit.
	migrate bool
	// dropEvents deletes the order events stream on --nats and exits.
	dropEvents bool
}

// setting is one entry of the configuration: a flag, the environment
// variable that sets it when the flag is absent, its default, its help
// text, and how its value is checked and stored. The flag set, --help and
// the environment lookup are all made from settings, and a test holds
// docs/configuration.md to --help, so none of them can drift.
type setting struct {
	flag string // empty: set by the environment only
	env  string
	def  string // the default, as the flag takes it
	// list: a repeatable flag, a comma-separated list in the environment
	// (spaced: separated by spaces, for values that may hold commas);
	// parse gets the values one per line.
	list   bool
	spaced bool
	// kind names the value in --help's flag column, as the flag package
	// names its own types (int, float, duration; URL for a repeatable
	// URL); empty: string. Every value is read as a string (the
	// environment's or the flag's) and checked by parse.
	kind  string
	usage string
	parse func(c *config, v string) error
}

// settings is the configuration table, in the order values are checked.
var settings = []setting{
	{flag: "addr", env: "SHOP_ADDR", def: "127.0.0.1:8080", usage: "listen address of the API, HOST:PORT or :PORT (port 0: a free one)", parse: listenAddr("addr", false, func(c *config) *string { return &c.Addr })},
	{flag: "admin-addr", env: "SHOP_ADMIN_ADDR", usage: "listen address of /debug/pprof and /metrics, HOST:PORT or :PORT; empty disables it", parse: listenAddr("admin-addr", true, func(c *config) *string { return &c.AdminAddr })},
	{flag: "data-dir", env: "SHOP_DATA_DIR", def: "./shop-data", usage: "directory of the SQLite database", parse: text(func(c *config) *string { return &c.DataDir })},
	{flag: "role", env: "SHOP_ROLE", def: app.RoleAll, usage: "api (HTTP only), worker (background jobs only) or all", parse: parseRole},
	{flag: "log-level", env: "SHOP_LOG_LEVEL", def: "info", usage: "debug, info, warn or error", parse: text(func(c *config) *string { return &c.logLevel })},
	{flag: "replica-name", env: "SHOP_REPLICA_NAME", usage: "name sent in the X-Replica response header; default the API listener's host:port", parse: text(func(c *config) *string { return &c.ReplicaName })},
	{flag: "redis", env: "SHOP_REDIS_URL", usage: "Redis URL (redis://host:6379/0): sessions, carts and the menu shared by the replicas, catalog changes announced over pub/sub; empty: none", parse: parseRedis},
	{flag: "redis-prefix", env: "SHOP_REDIS_PREFIX", def: "shop:", usage: "prefix of every Redis key and channel: one per database sharing a Redis", parse: text(func(c *config) *string { return &c.RedisPrefix })},
	{flag: "nats-stream", env: "SHOP_NATS_STREAM", def: shopnats.DefaultStream, usage: "JetStream stream of the order events, one per database sharing a NATS; its subjects are its name in lower case with _ as . (SHOP_ORDERS: shop.orders.<id>.<status>)", parse: parseStream},
	{flag: "nats-timeout", env: "SHOP_NATS_TIMEOUT", def: shopnats.DefaultCallTimeout.String(), kind: "duration", usage: "how long a call that sets something up on NATS (an order stream's consumer) may wait for an answer before the stream polls the database instead", parse: positiveDuration("nats-timeout", func(c *config) *time.Duration { return &c.NATSTimeout })},
	{flag: "nats", env: "SHOP_NATS_URL", usage: "NATS URL (nats://host:4222) for order events on JetStream; empty: events stay in the database's outbox and order streams poll it", parse: parseNATS},
	{flag: "db", env: "SHOP_DATABASE_URL", list: true, spaced: true, kind: "URL", usage: "PostgreSQL URL (postgres://user@host:5432/db); empty runs the embedded SQLite default in --data-dir; with --shards S, given S times, once per shard, shard 1 first", parse: parseDB},
	{flag: "shards", env: "SHOP_SHARDS", kind: "int", usage: "spread sessions and orders over S PostgreSQL servers, the --db URLs in shard order (docs/sharding.md); empty: one database, unsharded", parse: parseShards},
	{flag: "db-replica", env: "SHOP_DB_REPLICAS", list: true, kind: "URL", usage: "PostgreSQL read replica URL, repeatable: the menu, items and own-order reads go there, writes to --db", parse: parseReplicas},
	{flag: "db-max-conns", env: "SHOP_DB_MAX_CONNS", def: strconv.Itoa(postgres.DefaultMaxConns), kind: "int", usage: "PostgreSQL pool size per process (and per replica)", parse: parseMaxConns},
	{flag: "db-connect-timeout", env: "SHOP_DB_CONNECT_TIMEOUT", def: postgres.DefaultConnectTimeout.String(), kind: "duration", usage: "how long connecting to PostgreSQL may take", parse: positiveDuration("db-connect-timeout", func(c *config) *time.Duration { return &c.Postgres.ConnectTimeout })},
	{flag: "db-statement-timeout", env: "SHOP_DB_STATEMENT_TIMEOUT", def: postgres.DefaultStatementTimeout.String(), kind: "duration", usage: "PostgreSQL cancels a statement running longer", parse: positiveDuration("db-statement-timeout", func(c *config) *time.Duration { return &c.Postgres.StatementTimeout })},
	{flag: "order-retention", env: "SHOP_ORDER_RETENTION", kind: "duration", usage: fmt.Sprintf("PostgreSQL only: how long orders are kept, e.g. 8760h; older months of orders (with their lines and events) are dropped whole, daily; at least %s; empty or 0 keeps every order", postgres.MinOrderRetention), parse: parseOrderRetention},
	{flag: "drain-delay", env: "SHOP_DRAIN_DELAY", kind: "duration", usage: "on SIGTERM, how long to keep serving with /readyz failing before the listener closes; default 5s with --role api, else 0s; a second signal cuts it short", parse: parseDrainDelay},
	{flag: "seed-items", env: "SHOP_SEED_ITEMS", def: strconv.Itoa(seed.DefaultItems), kind: "int", usage: "catalog size seeded on first start, at most 1000000", parse: parseSeedItems},
	{flag: "prep-time", env: "SHOP_PREP_TIME", def: "10s", kind: "duration", usage: "time from confirmed to ready", parse: duration("prep-time", func(c *config) *time.Duration { return &c.PrepTime })},
	{flag: "mail-latency", env: "SHOP_MAIL_LATENCY", def: "0s", kind: "duration", usage: "simulated mail provider latency", parse: duration("mail-latency", func(c *config) *time.Duration { return &c.MailLatency })},
	{flag: "shutdown-timeout", env: "SHOP_SHUTDOWN_TIMEOUT", def: "15s", kind: "duration", usage: "how long shutdown waits for in-flight requests and running jobs before cancelling them", parse: duration("shutdown-timeout", func(c *config) *time.Duration { return &c.ShutdownTimeout })},
	{flag: "job-poll-interval", env: "SHOP_JOB_POLL_INTERVAL", kind: "duration", usage: "how often an idle worker looks for jobs; default 200ms on the embedded SQLite, 1s on PostgreSQL (where an insert wakes the workers)", parse: parseJobPollInterval},
	{flag: "job-fetch-cooldown", env: "SHOP_JOB_FETCH_COOLDOWN", kind: "duration", usage: "least time between a worker's fetches of jobs (at most --job-poll-interval); default 50ms on the embedded SQLite, 100ms on PostgreSQL", parse: parseJobFetchCooldown},
	{flag: "workers", env: "SHOP_WORKERS", def: strconv.Itoa(jobs.DefaultMaxWorkers), kind: "int", usage: "background jobs one worker process runs at once", parse: parseWorkers},
	{flag: "session-rate", env: "SHOP_SESSION_RATE", def: strconv.Itoa(httpapi.DefaultSessionRate), kind: "float", usage: "new sessions per second allowed to one client address, on average; 0 disables the limit", parse: parseSessionRate},
	{flag: "session-burst", env: "SHOP_SESSION_BURST", def: strconv.Itoa(httpapi.DefaultSessionBurst), kind: "int", usage: "new sessions one client address may create at once", parse: parseSessionBurst},
	{flag: "admission", env: "SHOP_ADMISSION", def: "on", usage: "on (the same as split): a bound for reads sized to the CPUs and one for writes sized to the database's writer, each queueing by priority and, once requests have come faster than its slots served them for 500 ms (open-loop overload, not a burst or a closed loop of users), refusing with 503 and Retry-After a request that could not be answered within its objective, browsing first, checkout last (docs/reliability.md); adaptive: failsafe-go's adaptive concurrency limit instead, which also refuses at loads served within objective (kept for comparison); off: every request is queued and served (for experiments)", parse: parseAdmission},
	{flag: "checkout-backpressure", env: "SHOP_CHECKOUT_BACKPRESSURE", def: "on", usage: "on: checkout is refused with 503 and Retry-After while order confirmations wait for a worker past a bound (docs/reliability.md); off: never (for benchmarks that run no worker on purpose)", parse: parseCheckoutBackpressure},
	{flag: "trusted-proxies", env: "SHOP_TRUSTED_PROXIES", usage: "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For/X-Real-IP name the client; empty trusts none", parse: parseTrustedProxies},
	{flag: "antipattern", env: "SHOP_ANTIPATTERNS", usage: "anti-pattern switches to run with, comma-separated, none by default (docs/antipatterns.md): " + strings.Join(antipattern.Names(), ", "), parse: parseAntipatterns},
	{flag: "hops", env: "SHOP_HOPS", def: strconv.Itoa(antipattern.DefaultHops), kind: "int", usage: "internal HTTP hops a checkout passes through with --antipattern extra-hops", parse: parseHops},
	{env: "SHOP_ADMIN_TOKEN", usage: "enables PUT /v1/admin/items/{id}", parse: parseAdminToken},
}

// help is --help's text before the flags; the environment-only settings
// are listed after it.
const help = "Usage: shop [flags]\n       shop migrate [flags]\n       shop drop-events --nats URL --nats-stream NAME\n       shop reshard --db URL [--db URL ...] --add URL (see shop reshard --help)\n\nRuns the ordering service; `shop migrate` migrates the database (shop and job tables) and exits,\nwhich PostgreSQL needs before the service starts; `shop drop-events` deletes a deployment's order events\nstream from NATS JetStream (which reserves its --nats-stream's storage until then) and exits;\n`shop reshard` adds a shard to a sharded deployment and moves buckets to it while it runs.\n"

// subcommand is one of shop's one-off commands that take the service's
// flags: its --help is its own usage and the flags it reads (the others
// are accepted and ignored, so one environment serves every command).
type subcommand struct {
	name, help string
	reads      []string // the flags it reads
}

var subcommands = map[string]subcommand{
	"migrate": {name: "migrate", help: `Usage: shop migrate [flags]

Brings the database's tables, the shop's and River's job tables, up to
date and exits. PostgreSQL needs it before the service starts (replicas
refuse an old schema); there it also creates the order partitions of the
months ahead and drops those past --order-retention. Safe while replicas
serve; two runs at once wait for each other. Without --db it migrates the
embedded SQLite default in --data-dir. Exit 0 when done, 1 when it
failed, 2 for a bad flag.
`, reads: []string{"data-dir", "db", "shards", "db-connect-timeout", "db-statement-timeout", "order-retention", "log-level"}},
	"drop-events": {name: "drop-events", help: `Usage: shop drop-events --nats URL [--nats-stream NAME]

Deletes a deployment's order events stream from NATS JetStream, which
reserves the stream's storage until then, and exits (tearing down a
deployment that shared a NATS server with others). A stream that does
not exist is no error. Exit 0 when done, 1 when it failed, 2 for a bad
flag or no --nats.
`, reads: []string{"nats", "nats-stream", "log-level"}},
}

// flagUsage is a setting's line in --help.
func (s setting) flagUsage() string {
	if s.list && s.spaced {
		return fmt.Sprintf("%s (env %s, space-separated)", s.usage, s.env)
	}
	if s.list {
		return fmt.Sprintf("%s (env %s, comma-separated)", s.usage, s.env)
	}
	return fmt.Sprintf("%s (env %s)", s.usage, s.env)
}

// parseConfig reads the settings from flags, each defaulting to its SHOP_*
// environment variable, so the same binary is configured the same way by
// hand, in a container or under a process manager.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	var c config
	var sub *subcommand
	if len(args) > 0 {
		if s, ok := subcommands[args[0]]; ok {
			sub, args = &s, args[1:]
			c.migrate, c.dropEvents = s.name == "migrate", s.name == "drop-events"
		}
	}
	name := "shop"
	if sub != nil {
		name += " " + sub.name
	}
	fs, values := newFlagSet(getenv)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			if sub != nil {
				fmt.Fprint(stderr, sub.help)
				printFlags(fs, stderr, sub.reads)
			} else {
				printHelp(fs, stderr)
			}
			return nil, err
		}
		// One line, not the whole usage: the reason is what matters.
		return nil, fmt.Errorf("%v (see %s --help)", err, name)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (%s takes only flags; see %s --help)", fs.Arg(0), name, name)
	}
	for i, s := range settings {
		if err := s.parse(&c, values[i]()); err != nil {
			return nil, err
		}
	}
	if len(c.Postgres.Replicas) > 0 && len(c.ShardURLs) > 0 {
		return nil, errors.New("--db-replica cannot be used with --shards: read replicas are of one primary")
	}
	if len(c.Postgres.Replicas) > 0 && c.DatabaseURL == "" {
		return nil, errors.New("--db-replica needs --db: read replicas are of a PostgreSQL primary")
	}
	if c.AdminAddr != "" && c.AdminAddr == c.Addr && !strings.HasSuffix(c.Addr, ":0") {
		// Two listeners on one address: the second bind failed with
		// "address already in use", as if another process held it.
		return nil, fmt.Errorf("--admin-addr must differ from --addr, both %q: the API and the admin endpoints listen apart", c.Addr)
	}
	if c.Postgres.OrderRetention > 0 && c.DatabaseURL == "" {
		return nil, errors.New("--order-retention needs --db: the embedded SQLite default keeps every order")
	}
	return &c, nil
}

// newFlagSet makes the flag set from settings; values[i] returns setting
// i's raw value after parsing: the flag's, else the environment's, else
// the default.
func newFlagSet(getenv func(string) string) (*flag.FlagSet, []func() string) {
	fs := flag.NewFlagSet("shop", flag.ContinueOnError)
	values := make([]func() string, len(settings))
	for i, s := range settings {
		initial := getenv(s.env)
		switch {
		case s.flag == "":
			values[i] = func() string { return initial }
		case s.list:
			l := &urlList{urls: splitList(initial)}
			if s.spaced {
				l.urls = strings.Fields(initial)
			}
			fs.Var(l, s.flag, s.flagUsage())
			values[i] = func() string { return strings.Join(l.urls, "\n") }
		default:
			if initial == "" {
				initial = s.def
			}
			v := fs.String(s.flag, initial, s.flagUsage())
			values[i] = func() string { return *v }
		}
	}
	// The flag package prints the usage on every parse error; parseConfig
	// prints it for --help only.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs, values
}

// printHelp writes --help: what shop does, the settings read from the
// environment only, then every flag.
func printHelp(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, help)
	for _, s := range settings {
		if s.flag == "" {
			fmt.Fprintf(w, "%s (environment only) %s.\n", s.env, s.usage)
		}
	}
	printFlags(fs, w, nil)
}

// printFlags writes the flags named in only (all when nil), as
// flag.PrintDefaults lays them out.
func printFlags(fs *flag.FlagSet, w io.Writer, only []string) {
	fmt.Fprint(w, "\nFlags:\n")
	kinds := map[string]string{}
	for _, s := range settings {
		kinds[s.flag] = cmp.Or(s.kind, "string")
	}
	// As flag.PrintDefaults lays a flag out, with the setting's kind in
	// the type column: every flag is a string to the flag set, and
	// PrintDefaults called a number or a duration "string".
	fs.VisitAll(func(f *flag.Flag) {
		if only != nil && !slices.Contains(only, f.Name) {
			return
		}
		kind := kinds[f.Name]
		fmt.Fprintf(w, "  -%s %s\n    \t%s", f.Name, kind, strings.ReplaceAll(f.Usage, "\n", "\n    \t"))
		switch {
		case f.DefValue == "":
		case kind == "string":
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		default:
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

func text(field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error { *field(c) = v; return nil }
}

// listenAddr checks a listen address before anything starts: a port out
// of range or not a number is the operator's typo (exit 2), not a failure
// to listen (exit 1, after the listener was tried). The host is left to
// the listener: a name resolves only there.
func listenAddr(name string, optional bool, field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error {
		if v == "" && optional {
			*field(c) = v
			return nil
		}
		_, port, err := net.SplitHostPort(v)
		if err == nil {
			if n, perr := strconv.ParseUint(port, 10, 16); perr != nil || strconv.FormatUint(n, 10) != port {
				err = fmt.Errorf("port %q is not a number from 0 to 65535", port)
			}
		}
		if err != nil {
			return fmt.Errorf("--%s must be HOST:PORT or :PORT with a port from 0 to 65535, got %q", name, v)
		}
		*field(c) = v
		return nil
	}
}

func duration(name string, field func(*config) *time.Duration) func(*config, string) error {
	return func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("--%s must be a duration such as 5s or 250ms, got %q", name, v)
		}
		if d < 0 {
			return fmt.Errorf("--%s must not be negative, got %q", name, v)
		}
		*field(c) = d
		return nil
	}
}

func positiveDuration(name string, field func(*config) *time.Duration) func(*config, string) error {
	parse := duration(name, field)
	return func(c *config, v string) error {
		if err := parse(c, v); err != nil {
			return err
		}
		if *field(c) == 0 {
			return fmt.Errorf("--%s must be above 0", name)
		}
		return nil
	}
}

// wholeNumber parses v as a whole number from lo to hi, or says what
// --name must be.
func wholeNumber(name, v string, lo, hi int, must string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("--%s must be %s, got %q", name, must, v)
	}
	return n, nil
}

func parseRole(c *config, v string) error {
	switch v {
	case app.RoleAPI, app.RoleWorker, app.RoleAll:
		c.Role = v
		return nil
	}
	return fmt.Errorf("--role must be api, worker or all, got %q", v)
}

// parseDrainDelay defaults by role (parsed before it): a replica behind a
// load balancer drains long enough for a balancer that probes /readyz
// every second or two to see it fail twice, and for a passive balancer
// (nginx) to retire its keep-alive connections, each closed after one
// answer. The all-in-one default and the worker have no balancer in front,
// so they stop at once.
func parseDrainDelay(c *config, v string) error {
	if v == "" {
		v = "0s"
		if c.Role == app.RoleAPI {
			v = "5s"
		}
	}
	return duration("drain-delay", func(c *config) *time.Duration { return &c.DrainDelay })(c, v)
}

// parseJobPollInterval: empty leaves the store's default (jobs.Config,
// shop/backend).
func parseJobPollInterval(c *config, v string) error {
	if v == "" {
		return nil
	}
	return positiveDuration("job-poll-interval", func(c *config) *time.Duration { return &c.JobPollInterval })(c, v)
}

// parseJobFetchCooldown: empty leaves the store's default.
func parseJobFetchCooldown(c *config, v string) error {
	if v == "" {
		return nil
	}
	return positiveDuration("job-fetch-cooldown", func(c *config) *time.Duration { return &c.JobFetchCooldown })(c, v)
}

func parseOrderRetention(c *config, v string) error {
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || (d > 0 && d < postgres.MinOrderRetention) {
		return fmt.Errorf("--order-retention must be 0 (keep every order) or a duration of at least %s such as 8760h, got %q", postgres.MinOrderRetention, v)
	}
	c.Postgres.OrderRetention = d
	return nil
}

func parseSeedItems(c *config, v string) (err error) {
	c.SeedItems, err = wholeNumber("seed-items", v, 0, seed.MaxItems, fmt.Sprintf("a whole number from 0 to %d", seed.MaxItems))
	return err
}

func parseWorkers(c *config, v string) (err error) {
	c.Workers, err = wholeNumber("workers", v, 1, 1000, "a whole number from 1 to 1000")
	return err
}

func parseMaxConns(c *config, v string) error {
	n, err := wholeNumber("db-max-conns", v, 1, 1000, "a whole number from 1 to 1000")
	c.Postgres.MaxConns = int32(n) // #nosec G115 -- n is 1 to 1000
	return err
}

func parseSessionBurst(c *config, v string) (err error) {
	c.SessionLimit.Burst, err = wholeNumber("session-burst", v, 1, math.MaxInt, "a whole number of at least 1")
	return err
}

func parseSessionRate(c *config, v string) error {
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || r < 0 || math.IsInf(r, 0) || math.IsNaN(r) {
		return fmt.Errorf("--session-rate must be a number of sessions per second, 0 or more, got %q", v)
	}
	if r == 0 {
		r = -1 // httpapi: no limit
	}
	c.SessionLimit.Rate = r
	return nil
}

func parseAdmission(c *config, v string) error {
	switch v {
	case "on", "split":
		c.Admission.On, c.Admission.Split = true, true
	case "adaptive":
		c.Admission.On, c.Admission.Split = true, false
	case "off":
		c.Admission.On, c.Admission.Split = false, false
	default:
		return fmt.Errorf("--admission must be on, adaptive, split or off, got %q", v)
	}
	return nil
}

func parseCheckoutBackpressure(c *config, v string) error {
	switch v {
	case "on":
		c.NoCheckoutBackpressure = false
	case "off":
		c.NoCheckoutBackpressure = true
	default:
		return fmt.Errorf("--checkout-backpressure must be on or off, got %q", v)
	}
	return nil
}

func parseTrustedProxies(c *config, v string) (err error) {
	if c.TrustedProxies, err = httpapi.ParseTrustedProxies(v); err != nil {
		return fmt.Errorf("--trusted-proxies must be addresses or CIDR prefixes separated by commas, got %q", v)
	}
	return nil
}

// parsePostgresURL checks a --db or --db-replica URL, with its password
// hidden in the error.
func parsePostgresURL(name, v string) error {
	if !strings.HasPrefix(v, "postgres://") && !strings.HasPrefix(v, "postgresql://") {
		if name == "db" {
			return fmt.Errorf("--db must be a postgres:// URL (postgres://user@host:5432/database), got %q", redactURL(v))
		}
		return fmt.Errorf("--%s must be a postgres:// URL, got %q", name, redactURL(v))
	}
	if _, err := postgres.ParseURL(v); err != nil {
		return fmt.Errorf("--%s: %w", name, err)
	}
	return nil
}

// parseDB reads --db, once or once per shard; parseShards, after it,
// says which.
func parseDB(c *config, v string) error {
	urls := strings.FieldsFunc(v, func(r rune) bool { return r == '\n' })
	for _, u := range urls {
		if err := parsePostgresURL("db", u); err != nil {
			return err
		}
	}
	if len(urls) > 0 {
		c.DatabaseURL = urls[0]
	}
	c.ShardURLs = urls
	return nil
}

// parseShards checks --shards against the --db list: S URLs for S
// shards, a guard against a half-edited list.
func parseShards(c *config, v string) error {
	urls := c.ShardURLs
	c.ShardURLs = nil
	if v == "" {
		if len(urls) > 1 {
			return fmt.Errorf("--db is given %d times: say --shards %d to spread the data over them (docs/sharding.md), or give one --db", len(urls), len(urls))
		}
		return nil
	}
	n, err := wholeNumber("shards", v, 1, shard.MaxShards, fmt.Sprintf("a whole number from 1 to %d", shard.MaxShards))
	if err != nil {
		return err
	}
	if len(urls) != n {
		return fmt.Errorf("--shards %d needs --db given %d times, one PostgreSQL URL per shard in shard order, got %d", n, n, len(urls))
	}
	c.ShardURLs = urls
	return nil
}

func parseReplicas(c *config, v string) error {
	c.Postgres.Replicas = strings.FieldsFunc(v, func(r rune) bool { return r == '\n' })
	for _, r := range c.Postgres.Replicas {
		if err := parsePostgresURL("db-replica", r); err != nil {
			return err
		}
	}
	return nil
}

func parseRedis(c *config, v string) error {
	if v != "" {
		if err := shopredis.CheckURL(v); err != nil {
			return err
		}
	}
	c.RedisURL = v
	return nil
}

// streamName is a JetStream stream name that also reads as subject tokens.
var streamName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*$`)

func parseStream(c *config, v string) error {
	if !streamName.MatchString(v) {
		return fmt.Errorf("--nats-stream must be letters, digits and _ (starting with a letter), got %q", v)
	}
	c.NATSStream = v
	return nil
}

// parseNATS refuses a --nats value that is not a NATS URL, with one line.
func parseNATS(c *config, v string) error {
	if v != "" {
		for _, one := range strings.Split(v, ",") {
			u, err := url.Parse(strings.TrimSpace(one))
			if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls") {
				return fmt.Errorf("--nats must be nats://host:port (several separated by commas), got %q", v)
			}
		}
	}
	c.NATSURL = v
	return nil
}

func parseAntipatterns(c *config, v string) (err error) {
	if c.Antipatterns, err = antipattern.Parse(v); err != nil {
		return fmt.Errorf("--antipattern: %w", err)
	}
	return nil
}

func parseHops(c *config, v string) (err error) {
	c.Hops, err = wholeNumber("hops", v, 1, 20, "a whole number from 1 to 20")
	return err
}

func parseAdminToken(c *config, v string) error {
	// A token with surrounding spaces (a stray newline from a secrets file)
	// would be logged as enabled and then match no Authorization header.
	if strings.TrimSpace(v) != v {
		return errors.New("SHOP_ADMIN_TOKEN has leading or trailing whitespace; set it to the token alone")
	}
	c.AdminToken = v
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
