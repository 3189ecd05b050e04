package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/perfscale/perfscale/internal/pgserver"
	"github.com/perfscale/perfscale/internal/supervise"
	shopnats "github.com/perfscale/perfscale/shop/nats"
)

// rescaledText says what a rescale from old to n replicas did; requota:
// every replica restarted under a new quota. An up to the count already
// running said "rescaled from 1 to 1 API replica" (loadlab scaleout
// measuring a count again runs it).
func rescaledText(old, n int, requota bool) string {
	switch {
	case requota && old == n:
		return fmt.Sprintf("restarted %s under the new quota", count(n, "API replica"))
	case requota:
		return fmt.Sprintf("rescaled from %d to %s, every one restarted under the new quota", old, count(n, "API replica"))
	case old == n:
		return fmt.Sprintf("already at %s, nothing restarted", count(n, "API replica"))
	}
	return fmt.Sprintf("rescaled from %d to %s", old, count(n, "API replica"))
}

// stopGrace is how long a shop process has after SIGTERM (its shutdown
// timeout is 15 s) before it is killed.
const stopGrace = 30 * time.Second

// rescale brings a running cluster to N replicas on the same database,
// worker, nginx and shop binary (nothing is rebuilt): replicas past N
// stop, missing ones start, and nginx reloads its upstreams. A new --cpu
// restarts every replica under the new quota; --db-replica, --db-cpu and
// --pg-url cannot change on a running cluster.
func (c *cluster) rescale(ctx context.Context) error {
	o := c.opts
	downFirst := fmt.Sprintf("run 'scripts/cluster.sh --state-dir %s down' first", c.state)
	if o.dbReplica != c.cfg.DBReplica {
		return fmt.Errorf("the cluster in %s runs with db_replica=%t; --db-replica cannot change on a running cluster: %s", c.state, c.cfg.DBReplica, downFirst)
	}
	if o.dbCPU != c.cfg.DBCPU {
		return fmt.Errorf("the cluster in %s runs with db_cpu=%s; --db-cpu cannot change on a running cluster: %s", c.state, coresText(c.cfg.DBCPU), downFirst)
	}
	if o.shards != c.cfg.shards() {
		return fmt.Errorf("the cluster in %s runs with shards=%d; --shards cannot change on a running cluster: %s", c.state, c.cfg.shards(), downFirst)
	}
	if len(o.pgURLs) > 0 && !slices.Equal(o.pgURLs, c.adminURLs()) {
		return fmt.Errorf("the cluster in %s has its database elsewhere; --pg-url cannot change on a running cluster: %s", c.state, downFirst)
	}
	if r, ok, err := c.dir().Load("nginx"); err != nil || !ok || !r.Alive() {
		return fmt.Errorf("the cluster in %s is recorded but its nginx is not running; %s", c.state, downFirst)
	}
	n, old := mustAtoi(o.arg), c.cfg.Replicas
	from, requota := old+1, o.cpu != c.cfg.CPU
	if requota {
		// Every replica restarts under the new quota.
		c.removeReplicas(ctx, 1, old)
		from = 1
	}
	if o.cpu > 0 && c.cfg.Cgroups == "" {
		if err := c.makeCgroupParent(); err != nil {
			return err
		}
	}
	c.cfg.CPU, c.cfg.Replicas = o.cpu, n
	if err := c.save(); err != nil {
		return err
	}
	if err := c.startReplicas(ctx, from, n); err != nil {
		return err
	}
	// nginx reads its new upstreams first; the replicas past N stop after
	// that, so none is sent new requests while it stops.
	if err := c.reloadNginx(ctx); err != nil {
		return err
	}
	c.removeReplicas(ctx, n+1, old)
	if err := c.rescalePrometheus(ctx); err != nil {
		return err
	}
	c.logf("%s%s on the same database, worker and nginx", rescaledText(old, n, requota), c.quotaNote())
	r, _, err := c.dir().Load("nginx")
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, r.URL("http"))
	return nil
}

// rescalePrometheus gives a running Prometheus the replicas as they now
// are, or starts one (--prometheus on a running cluster without).
func (c *cluster) rescalePrometheus(ctx context.Context) error {
	running, err := c.prometheusRunning()
	switch {
	case err != nil:
		return err
	case running:
		return c.writeTargets()
	case c.opts.prometheus:
		return c.startPrometheus(ctx)
	}
	return nil
}

// removeReplicas stops replicas from..to side by side and forgets them:
// their ports, their cgroups.
func (c *cluster) removeReplicas(ctx context.Context, from, to int) {
	var wg sync.WaitGroup
	for i := from; i <= to; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := replicaName(i)
			r, ok, err := c.dir().Load(name)
			if err != nil || !ok {
				return
			}
			c.stop(ctx, r)
			if r.Cgroup != "" {
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if err := supervise.Open(r.Cgroup).Remove(rctx); err != nil {
					c.logf("%v", err)
				}
				cancel()
			}
			c.dir().Forget(name) //nolint:errcheck // a leftover record names a dead process
			os.Remove(r.Log)     //nolint:errcheck
		}()
	}
	wg.Wait()
}

func (c *cluster) stop(ctx context.Context, r supervise.Record) {
	if pgserver.IsServer(r) {
		if err := pgserver.Stop(ctx, r); err != nil {
			c.logf("%v", err)
		}
		return
	}
	killed, err := r.Stop(ctx, syscall.SIGTERM, stopGrace)
	if err != nil {
		c.logf("%v", err)
	} else if killed {
		c.logf("%s (pid %d) still ran %s after SIGTERM; killed it", r.Name, r.PID, stopGrace)
	}
}

// status prints what runs.
func (c *cluster) status() error {
	ok, err := c.load()
	if err != nil {
		return err
	}
	if !ok {
		fmt.Fprintf(c.stdout, "no cluster in %s\n", c.state)
		return nil
	}
	w := c.stdout
	fmt.Fprintf(w, "cluster in %s: %s\n", c.state, c.cfg.summary())
	for _, db := range c.cfg.Databases {
		fmt.Fprintf(w, "database: %s (%s)\n", db.Name, db.URL)
		if db.ReplicaURL != "" {
			fmt.Fprintf(w, "read replica: %s\n", db.ReplicaURL)
		}
	}
	if c.cfg.Cgroups != "" {
		fmt.Fprintf(w, "cgroups: %s\n", c.cfg.Cgroups)
	}
	if r, ok, err := c.dir().Load("prometheus"); err == nil && ok {
		fmt.Fprintf(w, "prometheus: %s\n", r.URL("http"))
		for _, note := range c.cfg.NotScraped {
			fmt.Fprintf(w, "not scraped: %s\n", note)
		}
	}
	const row = "%-21s %-8s %-8s %-26s %-24s %-6s %s\n"
	fmt.Fprintf(w, row, "NAME", "ROLE", "PID", "URL", "ADMIN", "CPU", "STATE")
	names := []string{"nginx"}
	for i := 1; i <= c.cfg.Replicas; i++ {
		names = append(names, replicaName(i))
	}
	names = append(names, "worker", "prometheus")
	for _, db := range c.cfg.Databases {
		names = append(names, db.Server, db.Standby)
	}
	records, err := c.dir().List()
	if err != nil {
		return err
	}
	for _, r := range records {
		if r.Meta["role"] == "exporter" {
			names = append(names, r.Name)
		}
	}
	for _, name := range names {
		r, ok, err := c.dir().Load(name)
		if err != nil {
			return err
		}
		if name == "" || !ok || r.PID == 0 {
			continue
		}
		url, admin := r.URL("http"), r.URL("admin")
		if p := r.Port("postgres"); p != 0 {
			url = fmt.Sprintf("postgres://127.0.0.1:%d", p)
		}
		quota := "-"
		if r.Cgroup != "" {
			if cores, limited, err := supervise.Open(r.Cgroup).Quota(); err == nil && limited {
				quota = fmt.Sprintf("%.2f", cores)
			} else if err == nil {
				quota = "none"
			}
		}
		state := "dead"
		if r.Alive() {
			state = "alive"
		}
		fmt.Fprintf(w, row, name, r.Meta["role"], strconv.Itoa(r.PID), dash(url), dash(admin), quota, state)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// target is the process kill-replica and start-replica act on.
func (c *cluster) target() (string, error) {
	ok, err := c.load()
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("no cluster in %s", c.state)
	}
	if c.opts.arg == "worker" {
		return "worker", nil
	}
	k := mustAtoi(c.opts.arg)
	if k < 1 || k > c.cfg.Replicas {
		return "", fmt.Errorf("no replica %s: the cluster has replicas 1 to %d", c.opts.arg, c.cfg.Replicas)
	}
	return replicaName(k), nil
}

// running is the record of process name, which must be running: the
// kill verbs refuse a process that is already down.
func (c *cluster) running(name string) (supervise.Record, error) {
	r, ok, err := c.dir().Load(name)
	if err != nil {
		return r, err
	}
	if !ok || !r.Alive() {
		return r, fmt.Errorf("%s is not running", name)
	}
	return r, nil
}

func (c *cluster) killReplica(ctx context.Context) error {
	name, err := c.target()
	if err != nil {
		return err
	}
	r, err := c.running(name)
	if err != nil {
		return err
	}
	if err := r.Kill(ctx); err != nil {
		return err
	}
	c.logf("%s (pid %d) killed", name, r.PID)
	return nil
}

func (c *cluster) startReplica(ctx context.Context) error {
	name, err := c.target()
	if err != nil {
		return err
	}
	if r, ok, err := c.dir().Load(name); err != nil {
		return err
	} else if ok && r.Alive() {
		return fmt.Errorf("%s is already running", name)
	}
	if err := c.startShop(ctx, name); err != nil {
		return err
	}
	r, _, err := c.dir().Load(name)
	if err != nil {
		return err
	}
	c.logf("%s started again at %s", name, r.URL("http"))
	return nil
}

// server is the database server kill-db and start-db act on: db-K of
// the cluster's own, or ("standby") its read replica's.
func (c *cluster) server() (string, error) {
	ok, err := c.load()
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("no cluster in %s", c.state)
	}
	if c.opts.arg == "standby" {
		if len(c.cfg.Databases) == 0 || c.cfg.Databases[0].Standby == "" {
			return "", fmt.Errorf("the cluster in %s has no read replica server of its own (up --db-replica without --pg-url makes one)", c.state)
		}
		return c.cfg.Databases[0].Standby, nil
	}
	k := mustAtoi(c.opts.arg)
	if k < 1 || k > len(c.cfg.Databases) {
		return "", fmt.Errorf("no database server %s: the cluster has database servers 1 to %d", c.opts.arg, len(c.cfg.Databases))
	}
	db := c.cfg.Databases[k-1]
	if db.Server == "" {
		return "", fmt.Errorf("the cluster's database %s is on an existing server (--pg-url), not one of its own", db.Name)
	}
	return db.Server, nil
}

// killDB SIGKILLs database server K with its backends and auxiliary
// processes, at once, as a crash would: nothing is flushed or shut down cleanly, and start-db
// recovers it from its WAL.
func (c *cluster) killDB(ctx context.Context) error {
	name, err := c.server()
	if err != nil {
		return err
	}
	r, err := c.running(name)
	if err != nil {
		return err
	}
	if err := r.KillTree(ctx); err != nil {
		return err
	}
	c.logf("%s (pid %d) and its backends killed", name, r.PID)
	return nil
}

// startDB starts database server K again on its port and data directory
// (PostgreSQL replays its WAL first), in its cgroup.
func (c *cluster) startDB(ctx context.Context) error {
	name, err := c.server()
	if err != nil {
		return err
	}
	r, ok, err := c.dir().Load(name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s has no record in %s", name, c.state)
	}
	if r.Alive() {
		return fmt.Errorf("%s is already running", name)
	}
	bin, err := pgserver.Bin()
	if err != nil {
		return err
	}
	owner, err := pgserver.Owner()
	if err != nil {
		return err
	}
	s := pgserver.Server{Name: name, DataDir: r.Meta["data"], Bin: bin, Owner: owner, Cgroup: r.Cgroup, Standby: r.Meta["role"] == pgserver.RoleStandby}
	if s.DataDir == "" {
		return fmt.Errorf("%s's record names no data directory", name)
	}
	if err := pgserver.RemoveStaleLock(s.DataDir, r.PID); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	spec := s.Spec()
	spec.Logf = c.logf
	if _, err := c.dir().Start(sctx, spec); err != nil {
		return err
	}
	c.logf("%s started again on port %d", name, r.Port("postgres"))
	return nil
}

// down stops everything up started and removes it.
func (c *cluster) down(ctx context.Context) error {
	ok, err := c.load()
	if err != nil {
		return err
	}
	records, _ := c.dir().List()
	if !ok && len(records) == 0 {
		fmt.Fprintf(c.stdout, "no cluster in %s\n", c.state)
		return nil
	}
	if err := c.teardown(ctx); err != nil {
		return fmt.Errorf("%v; %s kept", err, c.state)
	}
	fmt.Fprintf(c.stdout, "cluster in %s stopped and removed\n", c.state)
	return nil
}

// teardown stops and removes everything of the cluster: its processes
// (the balancer first, so no new work arrives; then the replicas and the
// worker at once, a second SIGTERM cutting their drain delay short; then
// the database servers, standby first), cgroups, NATS stream, Redis keys,
// database, directories.
func (c *cluster) teardown(ctx context.Context) error {
	records, err := c.dir().List()
	if err != nil {
		return err
	}
	var shops, servers []supervise.Record
	for _, r := range records {
		switch {
		case r.Name == "nginx":
			c.stop(ctx, r)
		case pgserver.IsServer(r):
			servers = append(servers, r)
		default:
			shops = append(shops, r)
		}
	}
	var wg sync.WaitGroup
	for _, r := range shops {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop(ctx, r) }()
	}
	wg.Wait()
	// Standbys first (a primary's fast shutdown waits for its standby to
	// take the last WAL); then the primaries, one per shard, at once.
	var primaries []supervise.Record
	for _, r := range servers {
		if r.Meta["role"] == pgserver.RoleStandby {
			wg.Add(1)
			go func() { defer wg.Done(); c.stop(ctx, r) }()
		} else {
			primaries = append(primaries, r)
		}
	}
	wg.Wait()
	for _, r := range primaries {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop(ctx, r) }()
	}
	wg.Wait()
	var errs []error
	if parent := c.cgroupParent(); parent != "" {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := supervise.Open(parent).Remove(rctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	for _, db := range c.cfg.Databases {
		if db.PGReplicaDir != "" {
			cmd := exec.CommandContext(ctx, filepath.Join(repoDir(), "scripts/pg-replica.sh"), "stop")
			cmd.Env = append(os.Environ(), "PG_REPLICA_DIR="+db.PGReplicaDir)
			if out, err := cmd.CombinedOutput(); err != nil {
				c.logf("scripts/pg-replica.sh stop failed: %s", lastLine(out))
			}
		}
	}
	if c.cfg.NATSURL != "" && c.cfg.NATSStream != "" {
		// JetStream reserves a stream's storage (1 GiB) until it is
		// deleted, and a shared server refuses new streams once the
		// reservations reach its limit (59 leftover clusters did).
		if _, err := shopnats.DeleteStream(ctx, c.cfg.NATSURL, c.cfg.NATSStream); err != nil {
			c.logf("could not delete NATS stream %s: %v", c.cfg.NATSStream, err)
		}
	}
	if c.cfg.RedisURL != "" && c.cfg.RedisPrefix != "" {
		if n, err := deleteRedisKeys(ctx, c.cfg.RedisURL, c.cfg.RedisPrefix); err != nil {
			c.logf("could not delete the Redis keys %s*: %v", c.cfg.RedisPrefix, err)
		} else if n > 0 {
			c.logf("deleted %s %s*", count(n, "Redis key"), c.cfg.RedisPrefix)
		}
	}
	for _, db := range c.cfg.Databases {
		if db.AdminURL != "" {
			if err := pgserver.Exec(ctx, db.AdminURL, "DROP DATABASE IF EXISTS "+db.Name+" WITH (FORCE)"); err != nil {
				errs = append(errs, fmt.Errorf("could not drop database %s: %v", db.Name, err))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, dir := range c.cfg.External {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return os.RemoveAll(c.state)
}

// deleteRedisKeys removes every key under prefix (the cluster's sessions,
// carts and menu), scanning so the server is never blocked.
func deleteRedisKeys(ctx context.Context, url, prefix string) (int, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return 0, err
	}
	rdb := goredis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pattern := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(prefix) + "*"
	deleted := 0
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n, err := rdb.Unlink(ctx, batch...).Result()
		deleted += int(n)
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return deleted, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return deleted, err
	}
	return deleted, flush()
}

// adminURLs are the existing servers (--pg-url) of the cluster's
// databases, in shard order.
func (c *cluster) adminURLs() []string {
	var urls []string
	for _, db := range c.cfg.Databases {
		urls = append(urls, db.AdminURL)
	}
	return urls
}
