// Package postgres is the PostgreSQL storage adapter of the ordering
// service (pgx v5, pgxpool): the same contract as the embedded SQLite store
// (shop/storetest), for N stateless replicas sharing one database, with
// River's pgx driver inserting jobs in the checkout's own transaction.
// Migrations (goose, embedded) are a step of their own (Migrate, run by
// `shop migrate`); Open only checks that the schema is current.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/perfscale/perfscale/shop/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune the connection pools. Zero values take the defaults.
type Options struct {
	// MaxConns is the size of each pool (primary, and each replica).
	MaxConns int32
	// ConnectTimeout bounds establishing one connection.
	ConnectTimeout time.Duration
	// StatementTimeout makes the server cancel a statement that runs longer.
	StatementTimeout time.Duration
	// Replicas are read-only standbys for the read queries.
	Replicas []string
	// ReplicaGuard, if set, gives each replica (named host:port/database)
	// the guard its reads go through (read.go); ReplicaTimeout bounds a
	// read on a replica before the primary is asked instead.
	ReplicaGuard   func(at string) Guard
	ReplicaTimeout time.Duration
	// PrimaryReadGuard, if set and there are replicas, gives the primary
	// (named host:port/database) a guard of its own for the reads that
	// run on it beside the replicas' (read.go, primaryReader): the
	// store's read guard counts the replicas' answers as the database's
	// progress, so it never saw the primary stall.
	PrimaryReadGuard func(at string) Guard
	// QueryHook, if set, sees every statement run on the pools (River's
	// included) with its arguments, before it runs: tests EXPLAIN them.
	QueryHook func(sql string, args []any)
	// NoPool closes each connection when it is given back, so every
	// statement or transaction opens a new one: the no-pool anti-pattern
	// (shop --antipattern no-pool).
	NoPool bool
	// Tracer, if set, sees every query on every pool with its connection
	// (tests use it to tell which server ran a query). It takes the place
	// of QueryHook.
	Tracer pgx.QueryTracer
	// ConnConfig, if set, adjusts each pool's connection settings before
	// it connects (the EXPLAIN tests load auto_explain and read its plans
	// from notices).
	ConnConfig func(*pgx.ConnConfig)
	// OnReset, if set, is told each time a pool dropped every connection
	// because its server (host:port/database) went away (servergone.go),
	// with the sign it saw.
	OnReset func(at string, cause error)
	// OrderRetention is how long orders are kept: MaintainPartitions drops
	// the months (orders with their lines and events) older than that.
	// Zero keeps every order; otherwise it is at least MinOrderRetention.
	OrderRetention time.Duration
}

// hookTracer hands each statement to a QueryHook.
type hookTracer struct{ hook func(string, []any) }

func (h hookTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	h.hook(d.SQL, d.Args)
	return ctx
}

func (hookTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// The statements of a batch (a checkout at once) are handed over too.
func (hookTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (h hookTracer) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	h.hook(d.SQL, d.Args)
}

func (hookTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// Defaults, measured on this repository's 2-core machine with
// scripts/bench-pgpool.sh and BenchmarkConnect (docs/postgres.md): pools
// of 2 to 16 connections gave the same checkout throughput within the
// noise and 32 a third of it, so 8 leaves room for River's listener and
// jobs in the same pool; a connection took 174 ms to open on the loaded
// machine and the worst checkout p99 was 3.8 s, under both timeouts and
// within the 10 s request budget.
const (
	DefaultMaxConns         = 8
	DefaultConnectTimeout   = 5 * time.Second
	DefaultStatementTimeout = 5 * time.Second
	// DefaultReplicaTimeout: a replica's catalog reads are point reads
	// and pages, milliseconds when well; one that takes half a second is
	// crawling, and the primary is asked instead.
	DefaultReplicaTimeout = 500 * time.Millisecond
)

func (o *Options) defaults() {
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = DefaultStatementTimeout
	}
	if o.ReplicaTimeout <= 0 {
		o.ReplicaTimeout = DefaultReplicaTimeout
	}
}

// DB is the primary's pool and the replicas' pools.
type DB struct {
	primary  *pgxpool.Pool
	replicas []replicaPool
	next     atomic.Uint32 // round-robin over replicas
	// primaryReads guards the primary's reads when there are replicas
	// (Options.PrimaryReadGuard).
	primaryReads Guard
	// replicaTimeout: see Options.ReplicaTimeout.
	replicaTimeout time.Duration
	where          string
	replicaW       []string
	// orderRetention: see Options.OrderRetention.
	orderRetention time.Duration
}

// ParseURL checks a database URL and returns where it points
// (host:port/database), for messages; it never echoes a password.
func ParseURL(url string) (string, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return "", fmt.Errorf("%q is not a PostgreSQL URL (want postgres://user@host:5432/database): %s", redact(url), oneLine(err))
	}
	return where(cfg), nil
}

func where(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))) + "/" + c.Database
}

// redact hides the password of a URL that failed to parse.
func redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return url
	}
	user, _, _ := strings.Cut(rest[:at], ":")
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// oneLine puts an error on one line; pgx reports each connection attempt
// (TLS, then plain) on a line of its own, often the same twice, and a
// failed host name lookup once with its context ("hostname resolving
// error: lookup ...") and once without: a line already said within an
// earlier one is left out.
func oneLine(err error) string {
	var b strings.Builder
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.Join(strings.Fields(l), " ")
		if l == "" || strings.Contains(b.String(), l) {
			continue
		}
		switch said := b.String(); {
		case said == "":
		case strings.HasSuffix(said, ":"):
			b.WriteString(" ") // pgx's "failed to connect to ...:" introduces the next line
		default:
			b.WriteString("; ")
		}
		b.WriteString(l)
	}
	return b.String()
}

func newPool(ctx context.Context, url string, o Options) (*pgxpool.Pool, string, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, "", fmt.Errorf("%q is not a PostgreSQL URL (want postgres://user@host:5432/database): %s", redact(url), oneLine(err))
	}
	at := where(cfg)
	cfg.MaxConns = o.MaxConns
	cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(o.StatementTimeout.Milliseconds(), 10)
	cfg.ConnConfig.RuntimeParams["application_name"] = "shop"
	if o.NoPool {
		cfg.AfterRelease = func(*pgx.Conn) bool { return false }
	}
	if o.QueryHook != nil {
		cfg.ConnConfig.Tracer = hookTracer{o.QueryHook}
	}
	if o.Tracer != nil {
		cfg.ConnConfig.Tracer = o.Tracer
	}
	if o.ConnConfig != nil {
		o.ConnConfig(cfg.ConnConfig)
	}
	watch := watchServer(cfg, at, o.OnReset)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, at, fmt.Errorf("postgres at %s: %s", at, oneLine(err))
	}
	watch.pool.Store(pool)
	pctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		return nil, at, &unreachableError{pool: pool, msg: fmt.Sprintf("postgres at %s is not reachable: %s", at, oneLine(err))}
	}
	return pool, at, nil
}

// unreachableError is a pool whose server did not answer its first ping;
// the pool is open, and its owner closes it or keeps it.
type unreachableError struct {
	pool *pgxpool.Pool
	msg  string
}

func (e *unreachableError) Error() string { return e.msg }

// Open connects to the primary at url (and to each replica) and checks
// that the primary answers; a replica that does not is used once it does
// (its reads go to the primary meanwhile). It does not migrate (see
// Migrate).
func Open(ctx context.Context, url string, o Options) (*DB, error) {
	o.defaults()
	if err := checkOrderRetention(o.OrderRetention); err != nil {
		return nil, err
	}
	primary, at, err := newPool(ctx, url, o)
	if err != nil {
		var unreachable *unreachableError
		if errors.As(err, &unreachable) {
			unreachable.pool.Close()
		}
		return nil, err
	}
	db := &DB{primary: primary, where: at, orderRetention: o.OrderRetention, replicaTimeout: o.ReplicaTimeout, primaryReads: noGuard{}}
	if len(o.Replicas) > 0 && o.PrimaryReadGuard != nil {
		db.primaryReads = o.PrimaryReadGuard(at)
	}
	for _, r := range o.Replicas {
		pool, rat, err := newPool(ctx, r, o)
		var unreachable *unreachableError
		if errors.As(err, &unreachable) {
			// A replica down at the start does not stop the process: its
			// reads go to the primary (read.go) until it answers, and its
			// breaker's opening is logged.
			pool, err = unreachable.pool, nil
		}
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("read replica: %w", err)
		}
		var guard Guard = noGuard{}
		if o.ReplicaGuard != nil {
			guard = o.ReplicaGuard(rat)
		}
		db.replicas = append(db.replicas, replicaPool{pool: pool, guard: guard})
		db.replicaW = append(db.replicaW, rat)
	}
	return db, nil
}

func (db *DB) provider() (*goose.Provider, error) {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(db.primary), fsys, goose.WithSessionLocker(locker))
}

// Migrate brings the shop's tables up to date. Concurrent runs wait for
// each other (a session advisory lock), so two `shop migrate` cannot race.
func (db *DB) Migrate(ctx context.Context) error {
	p, err := db.provider()
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	defer p.Close()
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", db.where, err)
	}
	return nil
}

// ErrNotMigrated: the schema is older than this binary.
var ErrNotMigrated = errors.New("not migrated")

// CheckSchema fails, saying what to run, unless the shop's tables are at
// the version this binary needs.
func (db *DB) CheckSchema(ctx context.Context) error {
	p, err := db.provider()
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	defer p.Close()
	current, target, err := p.GetVersions(ctx)
	if err != nil {
		return fmt.Errorf("postgres at %s: read the schema version: %s", db.where, oneLine(err))
	}
	if current < target {
		return fmt.Errorf("postgres at %s: the schema is at version %d, this binary needs %d: run `shop migrate` with the same --db first: %w",
			db.where, current, target, ErrNotMigrated)
	}
	return nil
}

// Pool is the primary's pool (River's driver uses it).
func (db *DB) Pool() *pgxpool.Pool { return db.primary }

// NamedPool is one of the database's pools and its role.
type NamedPool struct {
	// Role is "primary" or "replica-N" (N from 1, in the order of
	// Options.Replicas).
	Role string
	Pool *pgxpool.Pool
}

// Pools are the primary's pool and each replica's, for their statistics.
func (db *DB) Pools() []NamedPool {
	pools := []NamedPool{{Role: "primary", Pool: db.primary}}
	for k, r := range db.replicas {
		pools = append(pools, NamedPool{Role: "replica-" + strconv.Itoa(k+1), Pool: r.pool})
	}
	return pools
}

// Where is the primary as host:port/database, and the replicas if any.
func (db *DB) Where() string {
	if len(db.replicaW) == 0 {
		return db.where
	}
	return db.where + " (read replicas " + strings.Join(db.replicaW, ", ") + ")"
}

// Close closes every pool.
func (db *DB) Close() {
	for _, r := range db.replicas {
		r.pool.Close()
	}
	db.primary.Close()
}

// Store is the shop's store on PostgreSQL: the logic both stores share
// (sqlstore), over this database's pools and read routing.
type Store = sqlstore.Store

// NewStore returns a store on db; now is the clock (nil: the wall clock).
func NewStore(db *DB, now func() time.Time) *Store {
	return sqlstore.New(flowDB{db, placeAtOnce(false)}, dialect{}, now)
}

// NewShardStore returns the store of one shard of several (shop/sharded
// routes to it): the same store, whose session and order ids carry their
// bucket and whose menu follows the sold-out flag instead of its own
// quota (docs/sharding.md).
func NewShardStore(db *DB, now func() time.Time) *Store {
	return sqlstore.New(flowDB{db, placeAtOnce(true)}, dialect{sharded: true}, now)
}
