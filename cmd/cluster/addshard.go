package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// addShard is add-shard: one more database server of the cluster's own
// (db-K, under --db-cpu like the others) with its shard's database, added
// to the running service without stopping it (docs/sharding.md,
// "Resharding while the service runs", in its order):
//
//  1. shop reshard --add-only: the new database migrated, given the
//     catalog with no stock quota, and named in the bucket map, owning no
//     bucket yet;
//  2. the worker, then each API replica, one at a time, restarted with
//     every shard's --db (nginx sends a replica's requests to the others
//     while it restarts);
//  3. shop reshard: the buckets the balanced map gives the new shard
//     copied, frozen (their writes get 503 with Retry-After for that
//     while), switched, and deleted from their old shards.
//
// Each step can be run again, so an add-shard cut short (killed, even
// with SIGKILL) is finished by running it again; a server it left half
// made is made again, and a shop reshard it ran dies with it (no two run
// at once).
func (c *cluster) addShard(ctx context.Context) error {
	ok, err := c.load()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no cluster in %s", c.state)
	}
	if c.cfg.shards() < 2 {
		return fmt.Errorf("the cluster in %s runs on one unsharded database (up without --shards), which cannot become a shard: start it with 'up N --shards 2' to add shards later", c.state)
	}
	k := c.cfg.shards() + 1
	if c.cfg.Adding {
		k = len(c.cfg.Databases)
	} else if k > maxShards {
		return fmt.Errorf("the cluster has %d shards already, the most up --shards and add-shard make", maxShards)
	}
	if r, ok, err := c.dir().Load("nginx"); err != nil || !ok || !r.Alive() {
		return fmt.Errorf("the cluster in %s is recorded but its nginx is not running; add-shard adds to a running cluster", c.state)
	}
	switch {
	case !c.cfg.Adding:
		if err := c.createShardServer(ctx, k); err != nil {
			return err
		}
	case c.cfg.Databases[k-1].URL == "":
		if err := c.discardHalfMadeServer(ctx, k); err != nil {
			return err
		}
		if err := c.createShardServer(ctx, k); err != nil {
			return err
		}
	default:
		c.logf("finishing the add-shard of shard %d that was cut short", k)
	}
	urls := make([]string, k)
	for i, db := range c.cfg.Databases[:k] {
		urls[i] = db.URL
	}
	args := []string{"reshard"}
	for _, u := range urls[:k-1] {
		args = append(args, "--db", u)
	}
	if _, err := c.shopReshard(ctx, "reshard-add.log", append(args, "--add", urls[k-1], "--add-only")...); err != nil {
		return err
	}
	c.logf("shard %d added to the bucket map, owning no bucket yet", k)
	c.cfg.Shards = k
	if err := c.save(); err != nil {
		return err
	}
	if err := c.restartShops(ctx); err != nil {
		return fmt.Errorf("%v; run add-shard again to finish", err)
	}
	args = []string{"reshard"}
	for _, u := range urls {
		args = append(args, "--db", u)
	}
	out, err := c.shopReshard(ctx, "reshard.log", args...)
	if err != nil {
		return err
	}
	c.cfg.Adding = false
	if err := c.save(); err != nil {
		return err
	}
	db := c.cfg.Databases[k-1]
	c.logf("database: %s (%s) is shard %d; shop reshard moved its buckets (every bucket's line in %s):", db.Name, db.URL, k, filepath.Join(c.state, "reshard.log"))
	for _, line := range summaryLines(out) {
		fmt.Fprintln(c.stdout, line)
	}
	if running, err := c.prometheusRunning(); err == nil && running {
		c.cfg.NotScraped = append(c.cfg.NotScraped, db.Server+": added by add-shard, its exporter is not started")
		return c.save()
	}
	return nil
}

// createShardServer starts server db-k and makes shard k's database on
// it, recorded first so that down removes it whatever happens; a server
// that failed to start is stopped and forgotten, so add-shard can be run
// again.
func (c *cluster) createShardServer(ctx context.Context, k int) error {
	db := database{Name: c.cfg.Name + "_s" + strconv.Itoa(k), Server: serverName(k)}
	c.cfg.Databases, c.cfg.Adding = append(c.cfg.Databases, db), true
	if err := c.save(); err != nil {
		return err
	}
	u, err := c.createOwnDatabase(ctx, db, nil)
	if err != nil {
		if r, ok, lerr := c.dir().Load(db.Server); lerr == nil && ok {
			c.stop(context.WithoutCancel(ctx), r)
			c.dir().Forget(db.Server) //nolint:errcheck // a leftover record names a dead process
		}
		c.cfg.Databases, c.cfg.Adding = c.cfg.Databases[:k-1], false
		if serr := c.save(); serr != nil {
			c.logf("%v", serr)
		}
		return err
	}
	c.cfg.Databases[k-1].URL = u
	return c.save()
}

// discardHalfMadeServer stops and removes what an add-shard cut short
// while it made shard k's server left of it (the server, its record, its
// data directory), and forgets the shard, so that it is made again.
func (c *cluster) discardHalfMadeServer(ctx context.Context, k int) error {
	name := c.cfg.Databases[k-1].Server
	c.logf("shard %d's server %s was left half made by an add-shard cut short: making it again", k, name)
	data := filepath.Join(c.state, "pg", name)
	r, ok, err := c.dir().Load(name)
	if err != nil {
		return err
	}
	if ok {
		if d := r.Meta["data"]; d != "" {
			data = d
		}
		if r.Alive() {
			c.stop(ctx, r)
		}
		if err := c.dir().Forget(name); err != nil {
			return err
		}
	}
	// A data directory outside the state directory is in c.cfg.External
	// too, and down removes it if this does not.
	if err := os.RemoveAll(data); err != nil {
		return fmt.Errorf("could not remove the half-made data directory of %s: %v", name, err)
	}
	c.cfg.Databases, c.cfg.Adding = c.cfg.Databases[:k-1], false
	return c.save()
}

// shopReshard runs the cluster's shop reshard with args, its output kept
// in the state directory under log.
func (c *cluster) shopReshard(ctx context.Context, log string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.cfg.Shop, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	// Killed with this command (SIGKILL, which it cannot pass on), not
	// left running beside the shop reshard of the add-shard run again.
	// The kernel sends it when the thread that started the child ends,
	// so that thread is kept until the child has.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	out, err := cmd.CombinedOutput()
	os.WriteFile(filepath.Join(c.state, log), out, 0o644) //nolint:errcheck // the error below quotes it
	if err != nil {
		return out, fmt.Errorf("shop %s failed: %s; run add-shard again to finish", args[0], lastLine(out))
	}
	return out, nil
}

// restartShops restarts the worker, then each API replica, one at a
// time, on their ports, with the database flags of c.cfg: the others
// serve while one restarts.
func (c *cluster) restartShops(ctx context.Context) error {
	names := []string{"worker"}
	for i := 1; i <= c.cfg.Replicas; i++ {
		names = append(names, replicaName(i))
	}
	for _, name := range names {
		if r, ok, err := c.dir().Load(name); err != nil {
			return err
		} else if ok && r.Alive() {
			c.stop(ctx, r)
		}
		if err := c.startShop(ctx, name); err != nil {
			return err
		}
		c.logf("%s restarted with %d shards", name, c.cfg.shards())
	}
	return nil
}

// summaryLines are shop reshard's lines after its one line per bucket.
func summaryLines(out []byte) []string {
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(line, "bucket ") && !strings.HasPrefix(line, "{") {
			lines = append(lines, line)
		}
	}
	return lines
}
