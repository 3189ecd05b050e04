// Command cluster runs the ordering service on this machine the way it
// scales out: N stateless API replicas and one background worker behind
// nginx, on a PostgreSQL server of the cluster's own (or a database on an
// existing server, --pg-url), each replica and the database server
// optionally in a cgroup of its own with a CPU quota. scripts/cluster.sh
// builds it and runs it; docs/cluster.md describes the verbs.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

const help = `cluster runs the ordering service on this machine the way it scales out:
N stateless API replicas and one background worker behind nginx, on a
PostgreSQL server of the cluster's own, each replica (and the database
server) optionally in a cgroup of its own with a CPU quota.

  scripts/cluster.sh up N [--shards S] [--db-replica] [--cpu C] [--db-cpu C] [--pg-url URL [--pg-replica-url URL]] [--prometheus]
                                           start, or rescale a running cluster to N replicas
                                           (of C cores); the last line printed is the URL
  scripts/cluster.sh status                what runs: pids, ports, quotas, alive or not
  scripts/cluster.sh kill-replica K|worker SIGKILL API replica K (1..N) or the worker
  scripts/cluster.sh start-replica K|worker
                                           start a stopped one again on its old port
  scripts/cluster.sh kill-db K|standby     SIGKILL database server K (1..S), or the read
                                           replica's server, and its backends
  scripts/cluster.sh start-db K|standby    start it again on its old port and data
  scripts/cluster.sh add-shard             add a database server (shard S+1) to a running
                                           cluster of --shards S: shop reshard adds it to the
                                           map, the worker and replicas restart one at a time
                                           with it, and its buckets move there while it serves
  scripts/cluster.sh down                  stop what up started, remove its database server,
                                           cgroups, NATS stream and Redis keys

up starts a PostgreSQL server of the cluster's own (initdb in the state
directory, its own port, pg_stat_statements); --db-cpu C holds it to C
cores; --pg-url URL makes the cluster's database on that existing server
instead (postgres://postgres@127.0.0.1:5432/postgres). --db-replica adds
a streaming read replica the API replicas read from; with --pg-url, one
made by scripts/pg-replica.sh of the machine's server, or the standby of
that server --pg-replica-url URL names (no database path needed: the
cluster's is added). --shards S starts S
servers (db-1..db-S, each in its own cgroup under --db-cpu), one shard
database on each, and gives the replicas and the worker one --db per
shard and --shards S (docs/sharding.md). --prometheus also starts
Prometheus (Debian's prometheus) with its configuration and data in the
state directory, scraping every shop process's /metrics and itself, with
deploy/prometheus/rules.yml; status prints its URL ("prometheus: URL"),
down stops it and removes its data.

Every command takes --state-dir DIR (or PERFSCALE_CLUSTER_DIR); the
default is ${TMPDIR:-/tmp}/perfscale-cluster, so clusters in different
state directories run side by side. The replicas and the worker inherit
this command's environment (SHOP_ADMIN_TOKEN, SHOP_PREP_TIME, ...), as a
single process would; PERFSCALE_CLUSTER_SHOP names a shop binary to use
instead of building one.

Processes are stopped by the pids up recorded, checked against their
start time so a recycled pid is never signalled; never by name.

Exit status: 0 done; 1 not done, with one line saying why (no cluster in
the state directory, no such replica or server, a change a running
cluster cannot take, a process that did not start); 2 bad input (an
unknown command or option, a bad number), with the usage line.
`

const usageLine = "usage: scripts/cluster.sh [--state-dir DIR] up N [--shards S] [--db-replica] [--cpu C] [--db-cpu C] [--pg-url URL [--pg-replica-url URL]] [--prometheus] | status | kill-replica K | start-replica K | kill-db K|standby | start-db K|standby | add-shard | down"

// maxShards bounds --shards: each shard is a PostgreSQL server of its
// own on this machine.
const maxShards = 16

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		// One line, whatever the cause quoted (pgx's errors span several).
		fmt.Fprintf(os.Stderr, "cluster: %s\n", strings.Join(strings.Fields(err.Error()), " "))
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, usageLine)
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is bad input: exit status 2 and the usage line.
type usageError string

func (e usageError) Error() string { return string(e) }

func usagef(format string, args ...any) error { return usageError(fmt.Sprintf(format, args...)) }

// options are the command line's.
type options struct {
	state     string
	verb, arg string
	dbReplica bool
	cpu       float64 // 0: no quota
	cpuText   string
	dbCPU     float64
	dbCPUText string
	// pgURLs are the existing servers of --pg-url: one, or one per shard
	// (shard K's database on the K-th).
	pgURLs []string
	// pgReplicaURL: with one pgURL, the read replica is this standby of
	// that server (dbReplica is set too).
	pgReplicaURL string
	shards       int // 1 unless --shards
	// prometheus: up also starts the cluster's Prometheus.
	prometheus bool
	help       bool
}

var numberRE = regexp.MustCompile(`^[0-9]*\.?[0-9]+$`)

func parseArgs(args []string) (options, error) {
	o := options{state: os.Getenv("PERFSCALE_CLUSTER_DIR")}
	if o.state == "" {
		o.state = filepath.Join(os.TempDir(), "perfscale-cluster")
	}
	cpuSet, dbCPUSet, shardsText := false, false, ""
	value := func(i *int, name, missing string) (string, error) {
		a := args[*i]
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, nil
		}
		if *i+1 >= len(args) {
			return "", usageError(missing)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, _ := strings.Cut(a, "=")
		var err error
		switch name {
		case "--state-dir":
			if o.state, err = value(&i, name, "--state-dir needs a directory"); err == nil && o.state == "" {
				err = usageError("--state-dir needs a directory")
			}
		case "--db-replica":
			o.dbReplica = true
		case "--prometheus":
			o.prometheus = true
		case "--shards":
			shardsText, err = value(&i, name, "--shards needs a number of shards, such as 2")
		case "--cpu":
			o.cpuText, err = value(&i, name, "--cpu needs a number of cores, such as 0.5")
			cpuSet = true
		case "--db-cpu":
			o.dbCPUText, err = value(&i, name, "--db-cpu needs a number of cores, such as 0.5")
			dbCPUSet = true
		case "--pg-url":
			var u string
			if u, err = value(&i, name, "--pg-url needs a PostgreSQL URL, such as postgres://postgres@127.0.0.1:5432/postgres"); err == nil &&
				!strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
				err = usagef("--pg-url must be a postgres:// URL, got '%s'", u)
			}
			o.pgURLs = append(o.pgURLs, u)
		case "--pg-replica-url":
			if o.pgReplicaURL, err = value(&i, name, "--pg-replica-url needs a PostgreSQL URL of a standby of --pg-url's server"); err == nil &&
				!strings.HasPrefix(o.pgReplicaURL, "postgres://") && !strings.HasPrefix(o.pgReplicaURL, "postgresql://") {
				err = usagef("--pg-replica-url must be a postgres:// URL, got '%s'", o.pgReplicaURL)
			}
			o.dbReplica = true
		case "-h", "--help":
			o.help = true
		default:
			switch {
			case strings.HasPrefix(a, "-"):
				err = usagef("unknown option %s", a)
			case o.verb == "":
				o.verb = a
			case o.arg == "":
				o.arg = a
			default:
				err = usagef("unexpected argument %s", a)
			}
		}
		if err != nil {
			return o, err
		}
	}
	if o.help {
		return o, nil
	}
	if o.verb == "" {
		return o, usageError("no command given")
	}
	upOnly := cpuSet || dbCPUSet || o.dbReplica || len(o.pgURLs) > 0 || shardsText != "" || o.prometheus
	o.shards = 1
	switch o.verb {
	case "up":
		if err := o.parseShards(shardsText); err != nil {
			return o, err
		}
		if n, err := strconv.Atoi(o.arg); err != nil || n < 1 || n > 64 || !regexp.MustCompile(`^[0-9]+$`).MatchString(o.arg) {
			return o, usagef("up needs the number of API replicas, a whole number from 1 to 64, got '%s'", o.arg)
		}
		var err error
		if o.cpu, err = cores("--cpu", o.cpuText, cpuSet); err != nil {
			return o, err
		}
		if o.dbCPU, err = cores("--db-cpu", o.dbCPUText, dbCPUSet); err != nil {
			return o, err
		}
		if o.pgReplicaURL != "" && len(o.pgURLs) == 0 {
			return o, usageError("--pg-replica-url names a standby of --pg-url's server; without --pg-url the cluster makes its own (--db-replica)")
		}
		if len(o.pgURLs) > 0 && dbCPUSet {
			return o, usageError("--db-cpu holds the cluster's own database server to a quota; with --pg-url there is none")
		}
	case "kill-replica", "start-replica":
		if !regexp.MustCompile(`^([0-9]+|worker)$`).MatchString(o.arg) {
			return o, usagef("%s needs a replica number (1..N) or 'worker', got '%s'", o.verb, o.arg)
		}
		if upOnly {
			return o, usageError(upOnlyFlags)
		}
	case "kill-db", "start-db":
		if !regexp.MustCompile(`^([0-9]+|standby)$`).MatchString(o.arg) {
			return o, usagef("%s needs a database server number (1..S) or 'standby', got '%s'", o.verb, o.arg)
		}
		if upOnly {
			return o, usageError(upOnlyFlags)
		}
	case "status", "down", "add-shard":
		if o.arg != "" {
			return o, usagef("%s takes no argument, got '%s'", o.verb, o.arg)
		}
		if upOnly {
			return o, usageError(upOnlyFlags)
		}
	default:
		return o, usagef("unknown command '%s'", o.verb)
	}
	return o, nil
}

const upOnlyFlags = "--cpu, --db-cpu, --pg-url, --pg-replica-url, --db-replica, --shards and --prometheus belong to up"

// parseShards reads --shards: S servers of the cluster's own, or S
// existing ones (--pg-url given once per shard); a read replica (one
// standby of one primary today) does not go with S above 1.
func (o *options) parseShards(text string) error {
	if text == "" {
		if len(o.pgURLs) > 1 {
			return usagef("%d --pg-url are one per shard: give --shards %d", len(o.pgURLs), len(o.pgURLs))
		}
		return nil
	}
	n, err := strconv.Atoi(text)
	if err != nil || n < 1 || n > maxShards || !regexp.MustCompile(`^[0-9]+$`).MatchString(text) {
		return usagef("--shards must be a whole number from 1 to %d, got '%s'", maxShards, text)
	}
	o.shards = n
	if len(o.pgURLs) > 0 && len(o.pgURLs) != n {
		return usagef("--pg-url is given once per shard, each shard's database on the server it names: --shards %d wants %d, got %d", n, n, len(o.pgURLs))
	}
	if n > 1 && o.dbReplica {
		return usageError("--db-replica with --shards above 1 is not built: a read replica is of one primary")
	}
	return nil
}

// cores reads a CPU quota flag: at least 0.01 cores (the kernel's 1 ms
// per 100 ms period).
func cores(flag, text string, set bool) (float64, error) {
	if !set {
		return 0, nil
	}
	v, err := strconv.ParseFloat(text, 64)
	if !numberRE.MatchString(text) || err != nil {
		return 0, usagef("%s must be a number of cores such as 0.25 or 1, got '%s'", flag, text)
	}
	if v < 0.01-1e-9 {
		return 0, usagef("%s must be at least 0.01 cores, got '%s'", flag, text)
	}
	return v, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseArgs(args)
	if err != nil {
		return err
	}
	if o.help {
		fmt.Fprint(stdout, help)
		return nil
	}
	c := &cluster{opts: o, state: o.state, stdout: stdout, stderr: stderr}
	switch o.verb {
	case "up":
		return c.up(ctx)
	case "status":
		return c.status()
	case "kill-replica":
		return c.killReplica(ctx)
	case "start-replica":
		return c.startReplica(ctx)
	case "kill-db":
		return c.killDB(ctx)
	case "start-db":
		return c.startDB(ctx)
	case "add-shard":
		return c.addShard(ctx)
	case "down":
		return c.down(ctx)
	}
	return nil
}
