package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/perfscale/perfscale/internal/supervise"
)

// cluster is one cluster's state directory and what the command was asked.
type cluster struct {
	opts   options
	state  string
	stdout io.Writer
	stderr io.Writer
	cfg    config // cluster.json, once loaded or made
}

// config is cluster.json: what up made, for the later commands.
type config struct {
	Replicas  int     `json:"replicas"`
	CPU       float64 `json:"cpu,omitempty"`
	DBCPU     float64 `json:"db_cpu,omitempty"`
	DBReplica bool    `json:"db_replica"`
	// Shards is the number of database servers, one shard each (0 in a
	// cluster.json from before shards: one).
	Shards int `json:"shards,omitempty"`
	// Adding is set while add-shard runs: the last of Databases is the
	// shard being added (counted in Shards once the map names it), and
	// add-shard run again finishes adding it.
	Adding bool `json:"adding,omitempty"`
	// Name is the cluster's database, and its Redis key prefix and NATS
	// stream are named after it: clusters sharing those servers do not
	// mix carts or order events.
	Name string `json:"name"`
	// Databases are the cluster's databases, each on a server of the
	// cluster's own or on an existing one: shard k is Databases[k-1] on
	// server db-k.
	Databases []database `json:"databases"`
	// Cgroups is the parent cgroup of the cluster's processes with
	// quotas ("" without), as "v1 DIR" or "v2 DIR".
	Cgroups     string `json:"cgroups,omitempty"`
	Shop        string `json:"shop"`
	RedisURL    string `json:"redis_url,omitempty"`
	RedisPrefix string `json:"redis_prefix,omitempty"`
	NATSURL     string `json:"nats_url,omitempty"`
	NATSStream  string `json:"nats_stream,omitempty"`
	// External are directories outside the state directory the cluster
	// made (a database server's data where the postgres user cannot
	// reach the state directory); down removes them.
	External []string `json:"external,omitempty"`
	// NotScraped are the components the cluster's Prometheus does not
	// scrape, each with the reason (status prints them).
	NotScraped []string `json:"not_scraped,omitempty"`
}

// shards is the number of shards, at least 1.
func (cfg config) shards() int { return max(cfg.Shards, 1) }

// database is one database of the cluster.
type database struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Server is the supervise record of the cluster's own server (db-1);
	// empty for a database on an existing server (--pg-url).
	Server string `json:"server,omitempty"`
	// AdminURL is the existing server's URL (--pg-url), to drop the
	// database at down.
	AdminURL   string `json:"admin_url,omitempty"`
	ReplicaURL string `json:"replica_url,omitempty"`
	// Standby is the supervise record of the read replica of the
	// cluster's own server; PGReplicaDir that of scripts/pg-replica.sh's
	// replica of an existing server.
	Standby      string `json:"standby,omitempty"`
	PGReplicaDir string `json:"pg_replica_dir,omitempty"`
}

func (c *cluster) dir() supervise.Dir { return supervise.Dir(c.state) }

func (c *cluster) configPath() string { return filepath.Join(c.state, "cluster.json") }

// load reads cluster.json; ok is false when there is no cluster.
func (c *cluster) load() (ok bool, err error) {
	b, err := os.ReadFile(c.configPath())
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, &c.cfg); err != nil {
		return false, fmt.Errorf("%s: %w", c.configPath(), err)
	}
	return true, nil
}

func (c *cluster) save() error {
	b, err := json.MarshalIndent(c.cfg, "", "  ")
	if err != nil {
		return err
	}
	tmp := c.configPath() + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, c.configPath())
}

func (c *cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.stderr, "cluster: "+format+"\n", args...)
}

// summary is the first line of status: the shape up was asked for.
func (cfg config) summary() string {
	return fmt.Sprintf("replicas=%d shards=%d cpu=%s db_cpu=%s db_replica=%t", cfg.Replicas, cfg.shards(), coresText(cfg.CPU), coresText(cfg.DBCPU), cfg.DBReplica)
}

func coresText(c float64) string {
	if c == 0 {
		return "none"
	}
	return strconv.FormatFloat(c, 'f', -1, 64)
}

func replicaName(i int) string { return "replica-" + strconv.Itoa(i) }

// serverName is the name of the cluster's own database server of shard k.
func serverName(k int) string { return "db-" + strconv.Itoa(k) }

// shardDatabase is the name of shard k's database: the cluster's name
// with one shard (as before shards), with _sK after it with several, so
// each status line names its shard.
func (cfg config) shardDatabase(k int) string {
	if cfg.shards() == 1 {
		return cfg.Name
	}
	return cfg.Name + "_s" + strconv.Itoa(k)
}
