package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"

	"github.com/perfscale/perfscale/internal/pgserver"
	"github.com/perfscale/perfscale/internal/supervise"
)

// The exporters (up --prometheus): nginx, PostgreSQL and Redis export no
// Prometheus metrics of their own, so the cluster starts Debian's
// exporter for each beside its Prometheus, supervised like the other
// processes, and Prometheus scrapes them as jobs nginx, postgres and
// redis (component "exporter": the exporters' own process metrics are
// the monitoring's, not the server's). The machine's node exporter (job
// node) gives loadlab --prometheus the machine's CPU, busy and waited
// for, to tell a step the machine held back (loadlab/promwatch). An
// exporter that is not installed is skipped: up says so, and status
// prints a "not scraped" line.

// exporter is one exporter process to start.
type exporter struct {
	// name is its supervise record, job and instance Prometheus' labels.
	name, job, instance string
	bin, pkg            string // Debian's binary and package
	what                string // what it watches, for the messages
	args                func(listen string) []string
	env                 []string
}

// exporters are the exporters for the cluster as it runs: the machine's,
// one per database server (the cluster's own, with the standby, or the
// existing server of --pg-url), Redis's and nginx's.
func (c *cluster) exporters() ([]exporter, error) {
	list := []exporter{{
		name: "node-exporter", job: "node", instance: "node",
		bin: "prometheus-node-exporter", pkg: "prometheus-node-exporter",
		what: "the machine's CPU",
		// Only what loadlab reads: the CPUs' time by mode, and the run
		// queue's wait (the scheduler's statistics where the kernel has
		// them, its CPU pressure else). The default collectors cost a
		// busy machine more and tell it nothing more.
		args: func(listen string) []string {
			return []string{"--web.listen-address=" + listen, "--collector.disable-defaults",
				"--collector.cpu", "--collector.schedstat", "--collector.pressure"}
		},
	}}
	pg := func(instance, dsn string) {
		list = append(list, exporter{
			name: instance + "-exporter", job: "postgres", instance: instance,
			bin: "prometheus-postgres-exporter", pkg: "prometheus-postgres-exporter",
			what: "PostgreSQL server " + instance,
			args: func(listen string) []string { return []string{"--web.listen-address=" + listen} },
			env:  append(os.Environ(), "DATA_SOURCE_NAME="+dsn),
		})
	}
	for _, db := range c.cfg.Databases {
		for _, server := range []string{db.Server, db.Standby} {
			if server == "" {
				continue
			}
			r, ok, err := c.dir().Load(server)
			if err != nil {
				return nil, err
			}
			if ok {
				pg(server, pgserver.URL(r.Port("postgres"), "postgres"))
			}
		}
		if db.AdminURL != "" {
			pg("postgres", db.AdminURL)
		}
	}
	if c.cfg.RedisURL != "" {
		list = append(list, exporter{
			name: "redis-exporter", job: "redis", instance: "redis",
			bin: "prometheus-redis-exporter", pkg: "prometheus-redis-exporter",
			what: "Redis at " + redactedURL(c.cfg.RedisURL),
			args: func(listen string) []string {
				return []string{"-web.listen-address", listen, "-redis.addr", c.cfg.RedisURL}
			},
		})
	}
	nginx, ok, err := c.dir().Load("nginx")
	if err != nil {
		return nil, err
	}
	if ok {
		list = append(list, exporter{
			name: "nginx-exporter", job: "nginx", instance: "nginx",
			bin: "prometheus-nginx-exporter", pkg: "prometheus-nginx-exporter",
			what: "nginx",
			args: func(listen string) []string {
				return []string{"-web.listen-address", listen, "-nginx.scrape-uri", nginx.URL("http") + nginxStatusPath}
			},
		})
	}
	return list, nil
}

// redactedURL is u without its password, for messages.
func redactedURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}

// startExporters starts the exporters that are installed and not yet
// running, and returns the scrape jobs of those that run; it records the
// ones skipped for status.
func (c *cluster) startExporters(ctx context.Context) ([]scrapeTarget, error) {
	list, err := c.exporters()
	if err != nil {
		return nil, err
	}
	var targets []scrapeTarget
	c.cfg.NotScraped = nil
	for _, e := range list {
		path, err := exec.LookPath(e.bin)
		if err != nil {
			note := fmt.Sprintf("%s (%s is not installed: apt-get install %s)", e.what, e.bin, e.pkg)
			c.logf("not scraped: %s", note)
			c.cfg.NotScraped = append(c.cfg.NotScraped, note)
			continue
		}
		r, err := c.startExporter(ctx, e, path)
		if err != nil {
			return nil, err
		}
		targets = append(targets, scrapeTarget{
			job: e.job, addr: "127.0.0.1:" + strconv.Itoa(r.Port("http")),
			labels: map[string]string{"instance": e.instance, "component": "exporter"},
		})
	}
	c.cfg.NotScraped = append(c.cfg.NotScraped, natsNotScraped)
	return targets, c.save()
}

// natsNotScraped says why NATS is not scraped: the machine's server
// (scripts/services.sh) runs without its monitoring port, and that port
// answers JSON, which Prometheus does not read; Debian packages no NATS
// exporter. The worker exports what matters of it, the order stream.
const natsNotScraped = "NATS (the server runs without a monitoring port, and Debian packages no NATS exporter); the worker exports the order stream's state (shop_nats_stream_*)"

func (c *cluster) startExporter(ctx context.Context, e exporter, path string) (supervise.Record, error) {
	if r, ok, err := c.dir().Load(e.name); err != nil || (ok && r.Alive()) {
		return r, err
	}
	spec := supervise.Spec{
		Name: e.name, Path: path, Ports: []string{"http"}, Logf: c.logf, Env: e.env,
		Meta: map[string]string{"role": "exporter"},
		Args: func(p map[string]int) []string { return e.args("127.0.0.1:" + strconv.Itoa(p["http"])) },
		Ready: func(ctx context.Context, r supervise.Record) error {
			return httpOK(ctx, r.URL("http")+"/metrics")
		},
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	return c.dir().Start(sctx, spec)
}
