package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/perfscale/perfscale/internal/pgserver"
	"github.com/perfscale/perfscale/internal/supervise"
	"github.com/perfscale/perfscale/shop"
)

// startTimeout bounds each process's start, as the script's 60 s did.
const startTimeout = 2 * time.Minute

// up starts a cluster, or rescales the one running in the state directory.
func (c *cluster) up(ctx context.Context) error {
	running, err := c.load()
	if err != nil {
		return err
	}
	if running {
		return c.rescale(ctx)
	}
	if c.opts.prometheus {
		if _, err := prometheusPath(); err != nil {
			return err
		}
	}
	if err := ensureNginx(c); err != nil {
		return err
	}
	for _, u := range c.opts.pgURLs {
		if err := pgserver.Ping(ctx, u); err != nil {
			return fmt.Errorf("PostgreSQL is not reachable at --pg-url %s: %v (scripts/services.sh starts the machine's server)", u, err)
		}
	}
	if len(c.opts.pgURLs) == 0 {
		if _, err := pgserver.Bin(); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(c.state, 0o755); err != nil {
		return err
	}
	// nginx's workers run as nobody and need its temp directory.
	os.Chmod(c.state, 0o755) //nolint:errcheck // best effort, as before
	name, err := clusterName()
	if err != nil {
		return err
	}
	c.cfg = config{Replicas: mustAtoi(c.opts.arg), CPU: c.opts.cpu, DBCPU: c.opts.dbCPU, DBReplica: c.opts.dbReplica, Name: name, Shards: c.opts.shards}
	c.cfg.RedisURL = envOr("SHOP_REDIS_URL", "redis://127.0.0.1:6379/0")
	c.cfg.NATSURL = envOr("SHOP_NATS_URL", "nats://127.0.0.1:4222")
	if c.cfg.RedisURL != "" {
		c.cfg.RedisPrefix = "shop:" + name + ":"
	}
	if c.cfg.NATSURL != "" {
		c.cfg.NATSStream = strings.ToUpper(name) + "_ORDERS"
	}
	if err := c.save(); err != nil {
		return err
	}
	// From here on, a failure stops and removes whatever was started.
	if err := c.bringUp(ctx); err != nil {
		c.logf("up failed; stopping what it started")
		if derr := c.teardown(context.WithoutCancel(ctx)); derr != nil {
			c.logf("%v", derr)
		}
		return err
	}
	on := "database " + c.cfg.Name
	if c.cfg.shards() > 1 {
		on = fmt.Sprintf("%d shards (%s_s1..%s_s%d)", c.cfg.shards(), c.cfg.Name, c.cfg.Name, c.cfg.shards())
	}
	c.logf("%s and a worker on %s%s; scripts/cluster.sh status shows them",
		count(c.cfg.Replicas, "API replica"), on, c.quotaNote())
	nginx, _, err := c.dir().Load("nginx")
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, nginx.URL("http"))
	return nil
}

// count is n with its noun, singular for one: "1 API replica", "2 API
// replicas".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func (c *cluster) quotaNote() string {
	s := ""
	if c.cfg.CPU > 0 {
		s += fmt.Sprintf(", %s cores each", coresText(c.cfg.CPU))
	}
	if c.cfg.DBCPU > 0 && c.cfg.shards() > 1 {
		s += fmt.Sprintf(", each database server %s cores", coresText(c.cfg.DBCPU))
	} else if c.cfg.DBCPU > 0 {
		s += fmt.Sprintf(", the database server %s cores", coresText(c.cfg.DBCPU))
	}
	return s
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v // set empty: the component is left out
	}
	return def
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func clusterName() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "perfscale_cluster_" + hex.EncodeToString(b), nil
}

func (c *cluster) bringUp(ctx context.Context) error {
	if err := c.buildShop(ctx); err != nil {
		return err
	}
	if c.cfg.CPU > 0 || c.cfg.DBCPU > 0 {
		if err := c.makeCgroupParent(); err != nil {
			return err
		}
	}
	if err := c.createDatabases(ctx); err != nil {
		return err
	}
	if err := c.migrate(ctx); err != nil {
		return err
	}
	if err := c.vacuumDatabases(ctx); err != nil {
		return err
	}
	if c.cfg.DBReplica {
		if err := c.startReadReplica(ctx); err != nil {
			return err
		}
	}
	if err := c.startShops(ctx); err != nil {
		return err
	}
	if err := c.startNginx(ctx); err != nil {
		return err
	}
	if err := c.checkMenus(ctx); err != nil {
		return err
	}
	if c.opts.prometheus {
		return c.startPrometheus(ctx)
	}
	return nil
}

// buildShop puts the shop binary into the state directory: a copy of
// PERFSCALE_CLUSTER_SHOP (the tests build one for all their clusters),
// or built from the repository (PERFSCALE_REPO, default here).
func (c *cluster) buildShop(ctx context.Context) error {
	c.cfg.Shop = filepath.Join(c.state, "shop")
	if err := c.save(); err != nil {
		return err
	}
	if src := os.Getenv("PERFSCALE_CLUSTER_SHOP"); src != "" {
		if err := copyFile(src, c.cfg.Shop); err != nil {
			return fmt.Errorf("cannot copy PERFSCALE_CLUSTER_SHOP=%s: %v", src, err)
		}
		return nil
	}
	c.logf("building shop")
	repo := os.Getenv("PERFSCALE_REPO")
	if repo == "" {
		repo = "."
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", c.cfg.Shop, "./cmd/shop")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/shop failed: %v: %s", err, lastLine(out))
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// parentWeight is the CPU weight of the cluster's parent cgroup: the
// highest there is (cgroup v2's cpu.weight 10000; v1's cpu.shares 102400).
// The parent is a sibling of every process outside a cgroup (nginx, the
// worker, Redis, NATS, the generator, whatever else runs here), and each
// of their threads weighs as much as a group of the default weight: with
// the default, all the quota'd processes together weighed as one such
// thread, so whenever the machine's CPUs were contended they got a small
// part of their quotas, waited for a CPU several times as long as they ran
// and answered late. A quota'd process stands for a small server of its
// own, whose cores nobody else takes; the quotas, not the weight, bound
// what the group uses, so the weight takes nothing from the rest beyond
// them.
const parentWeight = 10000

// makeCgroupParent makes the cluster's parent cgroup, under which each
// process with a quota gets one of its own, at the highest CPU weight
// (parentWeight).
func (c *cluster) makeCgroupParent() error {
	h, err := supervise.CPUHierarchy()
	if err != nil {
		return fmt.Errorf("--cpu and --db-cpu need the cgroup cpu controller: %v", err)
	}
	rel := fmt.Sprintf("perfscale-%s-%d", filepath.Base(c.state), os.Getpid())
	// Recorded before it is made: down removes it whatever happens next.
	c.cfg.Cgroups = h.String()[:2] + " " + filepath.Join(h.Root, rel)
	if err := c.save(); err != nil {
		return err
	}
	if _, err := h.Create(rel, supervise.Limit{Weight: parentWeight}); err != nil {
		return err
	}
	return nil
}

// cgroup makes the cgroup of one process, held to cores.
func (c *cluster) cgroup(name string, cores float64) (string, error) {
	if cores == 0 {
		return "", nil
	}
	h, err := supervise.CPUHierarchy()
	if err != nil {
		return "", err
	}
	parent := c.cgroupParent()
	rel, err := filepath.Rel(h.Root, filepath.Join(parent, name))
	if err != nil {
		return "", err
	}
	cg, err := h.Create(rel, supervise.Limit{Cores: cores})
	return cg.Dir, err
}

func (c *cluster) cgroupParent() string {
	if c.cfg.Cgroups == "" {
		return ""
	}
	return strings.TrimSpace(c.cfg.Cgroups[2:])
}

// createDatabases makes the cluster's databases: with --pg-url its one
// database on that existing server; else one server of the cluster's own
// per shard (initdb, started in its cgroup), started side by side, each
// with its shard's database and pg_stat_statements.
func (c *cluster) createDatabases(ctx context.Context) error {
	if len(c.opts.pgURLs) > 0 {
		return c.createSharedDatabases(ctx)
	}
	n := c.cfg.shards()
	c.cfg.Databases = make([]database, n)
	for k := 1; k <= n; k++ {
		// Recorded first: down stops whatever of them started.
		c.cfg.Databases[k-1] = database{Name: c.cfg.shardDatabase(k), Server: serverName(k)}
	}
	if err := c.save(); err != nil {
		return err
	}
	urls := make([]string, n)
	errs := make([]error, n)
	var mu sync.Mutex // c.cfg.External grows as servers start
	var wg sync.WaitGroup
	for k := 1; k <= n; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			urls[k-1], errs[k-1] = c.createOwnDatabase(ctx, c.cfg.Databases[k-1], &mu)
		}()
	}
	wg.Wait()
	for k := range n {
		c.cfg.Databases[k].URL = urls[k]
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.save()
}

// createOwnDatabase starts server db.Server and makes db.Name on it,
// returning its URL.
func (c *cluster) createOwnDatabase(ctx context.Context, db database, mu *sync.Mutex) (string, error) {
	rec, err := c.startServer(ctx, db.Server, mu, func(s pgserver.Server) error {
		return pgserver.Init(ctx, s.Bin, s.DataDir, s.Owner)
	})
	if err != nil {
		return "", err
	}
	admin := pgserver.URL(rec.Port("postgres"), "postgres")
	u := pgserver.URL(rec.Port("postgres"), db.Name)
	if err := pgserver.Exec(ctx, admin, "CREATE DATABASE "+db.Name); err != nil {
		return "", fmt.Errorf("could not create database %s: %v", db.Name, err)
	}
	if err := pgserver.Exec(ctx, u, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		return "", err
	}
	c.logf("database server %s on port %d, database %s created", db.Server, rec.Port("postgres"), db.Name)
	return u, nil
}

// createSharedDatabases makes the cluster's databases on the existing
// servers of --pg-url: its one database, or shard K's on the K-th.
func (c *cluster) createSharedDatabases(ctx context.Context) error {
	c.cfg.Databases = nil
	for k, admin := range c.opts.pgURLs {
		db := database{Name: c.cfg.shardDatabase(k + 1), AdminURL: admin}
		c.cfg.Databases = append(c.cfg.Databases, db) // recorded first: down drops it
		if err := c.save(); err != nil {
			return err
		}
		if err := pgserver.Exec(ctx, db.AdminURL, "CREATE DATABASE "+db.Name); err != nil {
			return fmt.Errorf("could not create database %s: %v", db.Name, err)
		}
		u, err := url.Parse(db.AdminURL)
		if err != nil {
			return err
		}
		u.Path = "/" + db.Name
		c.cfg.Databases[k].URL = u.String()
		c.logf("database %s created on %s", db.Name, u.Host)
	}
	return c.save()
}

// startServer makes the data directory of a server of the cluster's own
// (with prepare: initdb, or a base backup), its cgroup, and starts it.
// mu guards c.cfg while servers start side by side (nil: one at a time).
func (c *cluster) startServer(ctx context.Context, name string, mu *sync.Mutex, prepare func(pgserver.Server) error) (supervise.Record, error) {
	bin, err := pgserver.Bin()
	if err != nil {
		return supervise.Record{}, err
	}
	owner, err := pgserver.Owner()
	if err != nil {
		return supervise.Record{}, err
	}
	dataDir, external, err := pgserver.DataDir(c.state, name, owner)
	if err != nil {
		return supervise.Record{}, err
	}
	if external {
		if mu != nil {
			mu.Lock()
		}
		c.cfg.External = append(c.cfg.External, dataDir)
		err := c.save()
		if mu != nil {
			mu.Unlock()
		}
		if err != nil {
			return supervise.Record{}, err
		}
	}
	s := pgserver.Server{Name: name, DataDir: dataDir, Bin: bin, Owner: owner, Standby: strings.HasSuffix(name, "-standby")}
	if err := prepare(s); err != nil {
		return supervise.Record{}, err
	}
	if s.Cgroup, err = c.cgroup(name, c.cfg.DBCPU); err != nil {
		return supervise.Record{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	spec := s.Spec()
	spec.Logf = c.logf
	return c.dir().Start(sctx, spec)
}

// dbArgs are the shop's database flags: one --db per shard, in shard
// order, and --shards S with more than one.
func (cfg config) dbArgs() []string {
	var args []string
	for _, db := range cfg.Databases {
		args = append(args, "--db", db.URL)
	}
	if n := cfg.shards(); n > 1 {
		args = append(args, "--shards", strconv.Itoa(n))
	}
	return args
}

func (c *cluster) migrate(ctx context.Context) error {
	log := filepath.Join(c.state, "migrate.log")
	args := append([]string{"migrate", "--data-dir", filepath.Join(c.state, "data")}, c.cfg.dbArgs()...)
	cmd := exec.CommandContext(ctx, c.cfg.Shop, args...)
	out, err := cmd.CombinedOutput()
	os.WriteFile(log, out, 0o644) //nolint:errcheck // the error below quotes it
	if err != nil {
		return fmt.Errorf("shop migrate failed: %s", lastLine(out))
	}
	return nil
}

// vacuumDatabases vacuums and analyzes the system catalogs of each of
// the cluster's new databases once the migrations ran. Their DDL leaves
// dead rows in the catalogs (pg_attribute, pg_class, pg_depend) of a
// database just made; left to autovacuum, every server vacuumed them 2 to
// 4 s after the cluster started, all at once, inside the first probes of
// a scaleout count, where a database of 0.14 core was throttled in all
// ten quota periods of that second (docs/scaleout.md, "The first
// autovacuum cycle"). The service's own tables are not vacuumed: a
// vacuum of the whole database recorded them empty, and the generic
// plans made on that read order lines and orders by sequential scans
// (docs/postgres.md, "Every statement of the journey").
func (c *cluster) vacuumDatabases(ctx context.Context) error {
	for _, db := range c.cfg.Databases {
		if err := pgserver.VacuumCatalogs(ctx, db.URL); err != nil {
			return fmt.Errorf("vacuum the catalogs of database %s after migrating: %w", db.Name, err)
		}
	}
	return nil
}

// startReadReplica starts a streaming standby of the cluster's database
// and waits until it has replayed the migrations.
func (c *cluster) startReadReplica(ctx context.Context) error {
	db := &c.cfg.Databases[0]
	if db.Server != "" {
		primary, _, err := c.dir().Load(db.Server)
		if err != nil {
			return err
		}
		db.Standby = db.Server + "-standby"
		if err := c.save(); err != nil {
			return err
		}
		rec, err := c.startServer(ctx, db.Standby, nil, func(s pgserver.Server) error {
			return pgserver.BaseBackup(ctx, s.Bin, pgserver.URL(primary.Port("postgres"), "postgres"), s.DataDir, "standby_1", s.Owner)
		})
		if err != nil {
			return err
		}
		db.ReplicaURL = pgserver.URL(rec.Port("postgres"), db.Name)
	} else if c.opts.pgReplicaURL != "" {
		u, err := url.Parse(c.opts.pgReplicaURL)
		if err != nil {
			return fmt.Errorf("--pg-replica-url: %v", err)
		}
		u.Path = "/" + db.Name
		db.ReplicaURL = u.String()
	} else {
		if err := c.startSharedReplica(ctx, db); err != nil {
			return err
		}
	}
	if err := c.save(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := pgserver.WaitReplayed(wctx, db.URL, db.ReplicaURL); err != nil {
		return err
	}
	c.logf("streaming read replica at %s", db.ReplicaURL)
	return nil
}

// startSharedReplica is --db-replica with --pg-url: a replica of the
// machine's server made by scripts/pg-replica.sh, on a port of the
// cluster's own so clusters starting together do not take the same.
func (c *cluster) startSharedReplica(ctx context.Context, db *database) error {
	dir, err := os.MkdirTemp("", "perfscale-cluster-pg-replica.")
	if err != nil {
		return err
	}
	db.PGReplicaDir = dir
	if err := c.save(); err != nil {
		return err
	}
	port, err := supervise.FreePort(nil)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(repoDir(), "scripts/pg-replica.sh"), "start")
	cmd.Env = append(os.Environ(), "PG_REPLICA_DIR="+dir, "PG_REPLICA_PORT="+strconv.Itoa(port))
	cmd.Stderr = c.stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("scripts/pg-replica.sh start failed: %v", err)
	}
	u, err := url.Parse(lastLine(out))
	if err != nil {
		return err
	}
	u.Path = "/" + db.Name
	db.ReplicaURL = u.String()
	return nil
}

func repoDir() string {
	if r := os.Getenv("PERFSCALE_REPO"); r != "" {
		return r
	}
	return "."
}

// startShops starts the worker and the API replicas; with shards or a
// read replica, the worker first. With a read replica: the first process
// to open the database seeds the catalog, on the primary, and the API
// replicas read the standby, so they start once the standby has replayed
// the seed (before, one could serve an empty menu just after up).
func (c *cluster) startShops(ctx context.Context) error {
	if c.cfg.DBReplica {
		if err := c.startShop(ctx, "worker"); err != nil {
			return err
		}
		db := c.cfg.Databases[0]
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := pgserver.WaitReplayed(wctx, db.URL, db.ReplicaURL); err != nil {
			return err
		}
		return c.startReplicas(ctx, 1, c.cfg.Replicas)
	}
	if c.cfg.shards() > 1 {
		// The first process to open the shards claims each its number and
		// seeds them: the worker does it alone, before the replicas (all
		// at once, they raced: a replica saw no shard number while the
		// worker's claim committed).
		if err := c.startShop(ctx, "worker"); err != nil {
			return err
		}
		return c.startReplicas(ctx, 1, c.cfg.Replicas)
	}
	names := []string{"worker"}
	for i := 1; i <= c.cfg.Replicas; i++ {
		names = append(names, replicaName(i))
	}
	return c.startAll(ctx, names)
}

func (c *cluster) startReplicas(ctx context.Context, from, to int) error {
	var names []string
	for i := from; i <= to; i++ {
		names = append(names, replicaName(i))
	}
	return c.startAll(ctx, names)
}

// startAll starts processes side by side and waits for each.
func (c *cluster) startAll(ctx context.Context, names []string) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.startShop(ctx, name)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startShop starts one shop process (an API replica or the worker) in
// its cgroup, on the ports recorded for it (new free ones the first
// time), and waits until its /readyz answers.
func (c *cluster) startShop(ctx context.Context, name string) error {
	role, cores := "api", c.cfg.CPU
	if name == "worker" {
		role, cores = "worker", 0
	}
	cg := ""
	if cores > 0 {
		var err error
		if cg, err = c.cgroup(name, cores); err != nil {
			return err
		}
	}
	db := c.cfg.Databases[0] // its read replica, if any (one shard only)
	spec := supervise.Spec{
		Name: name, Path: c.cfg.Shop, Ports: []string{"http", "admin"}, Cgroup: cg, Go: true,
		Meta: map[string]string{"role": role},
		Logf: c.logf,
		Args: func(p map[string]int) []string {
			args := []string{"--role", role, "--addr", "127.0.0.1:" + strconv.Itoa(p["http"]),
				"--admin-addr", "127.0.0.1:" + strconv.Itoa(p["admin"]), "--replica-name", name}
			if role == "worker" {
				args = append(args, "--drain-delay", "0s")
			}
			args = append(append(args, "--data-dir", filepath.Join(c.state, "data")), c.cfg.dbArgs()...)
			if role == "api" {
				// Only the API replicas read from the read replica; the
				// worker's reads decide what it does next and go to the
				// primary.
				if db.ReplicaURL != "" {
					args = append(args, "--db-replica", db.ReplicaURL)
				}
				// nginx (on 127.0.0.1) names the client in X-Forwarded-For:
				// trust it, so per-client rules see clients, not nginx.
				proxies := "127.0.0.1"
				if extra := os.Getenv("SHOP_TRUSTED_PROXIES"); extra != "" {
					proxies += "," + extra
				}
				args = append(args, "--trusted-proxies", proxies)
			}
			return append(args, "--redis", c.cfg.RedisURL, "--redis-prefix", "shop:"+c.cfg.Name+":",
				"--nats", c.cfg.NATSURL, "--nats-stream", strings.ToUpper(c.cfg.Name)+"_ORDERS")
		},
		Ready: func(ctx context.Context, r supervise.Record) error {
			return httpOK(ctx, r.URL("http")+"/readyz")
		},
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	_, err := c.dir().Start(sctx, spec)
	return err
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

func httpGet(ctx context.Context, u string) ([]byte, error) { return fetch(ctx, httpClient, u) }

func fetch(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", u, res.Status)
	}
	return b, err
}

func httpOK(ctx context.Context, u string) error {
	_, err := httpGet(ctx, u)
	return err
}

// menuClient has no timeout of its own: firstMenu bounds it.
var menuClient = &http.Client{}

// firstMenu is a replica's first menu, waited for as long as a start may
// take, not httpClient's 2 s: a replica of a small CPU share builds its
// first menu slowly (at 0.05 core, over 2 s at 3401d18 on a quiet machine:
// up failed).
func firstMenu(ctx context.Context, base string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	return fetch(ctx, menuClient, base+"/v1/menu")
}

// checkMenus asks each API replica for the menu: up returns only once
// every replica serves the seeded catalog.
func (c *cluster) checkMenus(ctx context.Context) error {
	for i := 1; i <= c.cfg.Replicas; i++ {
		r, _, err := c.dir().Load(replicaName(i))
		if err != nil {
			return err
		}
		b, err := firstMenu(ctx, r.URL("http"))
		if err != nil {
			return fmt.Errorf("%s: the menu: %v", r.Name, err)
		}
		var m shop.Menu
		if err := json.Unmarshal(b, &m); err != nil || len(m.Categories) == 0 {
			return fmt.Errorf("%s serves an empty menu after up (%.100s)", r.Name, b)
		}
	}
	return nil
}
