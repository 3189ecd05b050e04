package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/promwatch"
	"github.com/perfscale/perfscale/loadlab/report"
	"github.com/perfscale/perfscale/loadlab/scaleout"
	"github.com/perfscale/perfscale/loadlab/scenario"
	"github.com/perfscale/perfscale/loadlab/threshold"
)

const scaleoutUsage = `Usage: loadlab scaleout --scale-cmd CMD --down-cmd CMD [flags]

Measures what adding replicas buys. For each count in --replicas it runs
the scale command with {n} replaced by the count; the command's last line
of output is the URL to load (with --scenario, the scenario's base). It
waits until that URL answers (below 500; a target that answers all of one
user's requests with a client error other than 429, a wrong --path's 404,
stops the run, exit 3), then finds the capacity: the
highest open-loop rate whose p99 meets --slo with under 0.1% errors, by a
short search (bracket, then bisect, --probe-duration a probe); before
each probe the target drains: an idle gap, then one user's latency back
near the count's own baseline, with no more errors than it had (429s
aside: a rate limit is not a queue). It prints replicas, capacity, speed-up,
efficiency = capacity(n) / (n x capacity(1)), p99 at capacity and the
bottleneck: the watched process that is CPU-bound (the processes behind
the URL's local port, followed through a proxy to its replicas, and
PostgreSQL, nginx, Redis and NATS when local and connected; a process
under a cgroup CPU quota counts as CPU-bound at its quota), the errors
(statuses, requests) when errors, not latency, bound the capacity, or the
generator when its own check failed. Then the Universal Scalability Law
fitted over replica counts. Counts that contradict each other (more than
linear, below the count before, off any USL curve) are measured again; a
contradiction that stays is printed as a warning above the table, and so
is a count measured again more than 10% from its first (JSON: the step's
swung).

scripts/cluster.sh up on a running cluster rescales it, so its scale
command needs no down between counts. The cluster's nginx limits what
each client address may send (docs/cluster.md), and all of the load
comes from this one address: the examples turn the limits off with
PERFSCALE_CLUSTER_CLIENT_LIMITS=off, or near them the capacity found is
the limit's. A count whose capacity 429 Too Many Requests bounded is
warned of above the table as not the system's.

--users N spreads each count's probes of a --scenario over N simulated
users, made in the count's warm-up (lengthened to send a request a user)
and kept for its probes; without it a user is a request in flight, a few
dozen at capacity. A system that places sessions by a hash (shards)
needs many: with a few dozen sessions the shard that drew the most
carries well over its share, and the table measures the draw.

--prometheus URL reads each probe's CPU per process (by job and
component), in-flight requests, jobs waiting and database pool waits
from a Prometheus server scraping the replicas instead of watching
processes here; a probe should span two scrapes or more. The server must
run before scaleout starts: start the cluster with scripts/cluster.sh up
1 --prometheus, take the URL status prints, and give --scale-cmd
'PERFSCALE_CLUSTER_CLIENT_LIMITS=off scripts/cluster.sh up {n}' (a
rescale keeps Prometheus on its port, and it follows the new replicas).

With --cpus, {cpu} in the scale command is the CPU per replica: the
horizontal steps run at the first size, and one replica is also measured
at each size (scaling up), set beside scaling out at equal total CPU.

The down command always runs at the end: on success, on failure and on
Ctrl-C.

--agents A,B,C sends every probe's load (and the drain checks' single
user, from the first agent) from 'loadlab agent' processes instead of
this one: the rate is split across them, they start at one instant,
their HDR histograms merge exactly, an agent's saturation check marks the
probe, and an agent that dies fails the search (exit 3) naming it. Only
agents on this machine count as the generator's CPU.

Examples:
  loadlab scaleout --scale-cmd 'PERFSCALE_CLUSTER_CLIENT_LIMITS=off scripts/cluster.sh up {n} --cpu 0.25' \
      --down-cmd 'scripts/cluster.sh down' --replicas 1,2,4 --scenario shop --slo 50ms
  loadlab scaleout --scale-cmd 'PERFSCALE_CLUSTER_CLIENT_LIMITS=off scripts/cluster.sh up {n} --cpu {cpu}' --down-cmd 'scripts/cluster.sh down' \
      --replicas 1,2,4 --cpus 0.25,0.5,1 --path /v1/menu --json scale.json --html scale.html
  loadlab scaleout --scale-cmd 'kubectl scale deployment/shop-api --replicas={n} >&2 && kubectl rollout status deployment/shop-api >&2 && echo http://shop.example/' \
      --down-cmd 'kubectl scale deployment/shop-api --replicas=1' --replicas 1,2,4,8
  loadlab scaleout --agents 127.0.0.1:7071,127.0.0.1:7072 --scale-cmd 'PERFSCALE_CLUSTER_CLIENT_LIMITS=off scripts/cluster.sh up {n} --cpu 0.25' \
      --down-cmd 'scripts/cluster.sh down' --replicas 1,2 --path /v1/menu

Flags:
`

// scaleoutFlagOf names the flag that sets each scaleout.Config field, for
// its validation errors.
var scaleoutFlagOf = map[string]string{
	"ScaleCmd": "--scale-cmd", "DownCmd": "--down-cmd", "Replicas": "--replicas", "CPUs": "--cpus", "SLO": "--slo",
	"ProbeDuration": "--probe-duration", "Users": "--users", "ReadyTimeout": "--ready-timeout", "StartRate": "--start-rate",
}

// scaleoutFlags are scaleout's command-line flags.
type scaleoutFlags struct {
	fs                                      *flag.FlagSet
	scaleCmd, downCmd, replicas, cpus, scen *string
	path, client, prometheus                *string
	slo, probe, readyTimeout                *time.Duration
	startRate                               *float64
	users                                   *int
	suspects                                *bool
	agents                                  agentFlags
	outputs                                 *report.Outputs
	checks                                  threshold.List
}

func newScaleoutFlags(stdout io.Writer) *scaleoutFlags {
	fs := newFlagSet("scaleout", scaleoutUsage, stdout)
	f := &scaleoutFlags{
		fs:           fs,
		scaleCmd:     fs.String("scale-cmd", "", "command that brings the system to {n} replicas ({cpu} cores each) and prints the URL last"),
		downCmd:      fs.String("down-cmd", "", "command that stops everything; always run at the end"),
		replicas:     fs.String("replicas", "1,2,4", "replica counts, ascending"),
		cpus:         fs.String("cpus", "", "CPU per replica for {cpu}, e.g. 0.25,0.5,1 (first: the horizontal steps)"),
		scen:         fs.String("scenario", "", "scenario file or built-in name (shop, shop-writes); its base is the printed URL"),
		path:         fs.String("path", "", "without --scenario: path added to the printed URL, e.g. /v1/menu"),
		slo:          fs.Duration("slo", 50*time.Millisecond, "p99 a probe must meet"),
		probe:        fs.Duration("probe-duration", 3*time.Second, "length of each probe"),
		startRate:    fs.Float64("start-rate", 100, "first rate tried, req/s"),
		users:        fs.Int("users", 0, "with --scenario: spread each count's probes over this many users, kept from probe to probe (0: a user for each request in flight)"),
		readyTimeout: fs.Duration("ready-timeout", 60*time.Second, "how long to wait for the URL to answer after scaling"),
		suspects:     fs.Bool("suspects", true, "also watch PostgreSQL, nginx, Redis and NATS running on this machine"),
		client:       fs.String("client", string(load.ClientFastHTTP), "HTTP client: fasthttp or nethttp"),
		prometheus:   fs.String("prometheus", "", "a Prometheus server scraping the replicas: the bottleneck's CPU comes from it"),
		outputs:      outputFlags(fs),
		agents:       newAgentFlags(fs, "each probe's load"),
	}
	fs.Var(&f.checks, "threshold", "fail (exit 1) unless this holds at every replica count: rps>500 (capacity), p99<50ms (at capacity) (repeatable)")
	return f
}

func runScaleout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newScaleoutFlags(stdout)
	pos, err := parseArgs(f.fs, args)
	if err != nil {
		return err
	}
	cfg, err := f.config(pos, stderr)
	if err != nil {
		return err
	}
	terminal := isTerminal(stderr)
	cfg.Progress = func(line string) {
		if terminal {
			fmt.Fprintf(stderr, "\r\033[K  %s", line)
			return
		}
		fmt.Fprintf(stderr, "  %s\n", line)
	}
	human := f.outputs.Human(stdout, stderr)
	fmt.Fprintf(human, "loadlab scaleout: replicas %s, SLO p99 %v, probes of %v\n", *f.replicas, *f.slo, *f.probe)
	if f.agents.on() {
		fmt.Fprintf(human, "  load from %s, each probe's rate split across them: %s\n", agentCount(len(f.agents.agents())), strings.Join(f.agents.agents(), ", "))
	}
	markStarted(ctx)
	res, err := scaleout.Run(ctx, cfg)
	if terminal {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if res != nil && len(res.Steps) > 0 {
		if perr := (report.TextReporter{}).Scaleout(human, res); perr != nil && err == nil {
			err = perr
		}
	}
	if err != nil {
		return fmt.Errorf("scaleout: %v", err)
	}
	if err := f.outputs.Write(stdout, func(r report.Reporter, w io.Writer) error { return r.Scaleout(w, res) }); err != nil {
		return fmt.Errorf("scaleout: %v", err)
	}
	outcomes, failure := scaleoutThresholds(f.checks, res)
	report.Thresholds(human, outcomes)
	return failure
}

// config checks the flags and arguments and turns them into the search's
// configuration, before anything is scaled.
func (f *scaleoutFlags) config(pos []string, stderr io.Writer) (scaleout.Config, error) {
	if err := f.check(pos); err != nil {
		return scaleout.Config{}, err
	}
	counts, err := parseCounts(*f.replicas)
	if err != nil {
		return scaleout.Config{}, fmt.Errorf("scaleout: --replicas: %v", err)
	}
	var sizes []float64
	if *f.cpus != "" {
		if sizes, err = parseSizes(*f.cpus); err != nil {
			return scaleout.Config{}, fmt.Errorf("scaleout: --cpus: %v", err)
		}
	}
	scen, path, suspects, prom := *f.scen, *f.path, *f.suspects, *f.prometheus
	cfg := scaleout.Config{
		ScaleCmd: *f.scaleCmd, DownCmd: *f.downCmd, Replicas: counts, CPUs: sizes, SLO: *f.slo,
		ProbeDuration: *f.probe, StartRate: *f.startRate, ReadyTimeout: *f.readyTimeout,
		MaxErrorRate: scaleout.DefaultMaxErrorRate, DownTimeout: scaleout.DefaultDownTimeout,
		DrainGap: scaleout.DefaultDrainGap, DrainTimeout: scaleout.DefaultDrainTimeout,
		Cores: float64(runtime.NumCPU()), Log: stderr, Client: load.Client(*f.client), Users: *f.users,
		Workload: func(u string) (scaleout.Workload, error) { return f.workload(u, scen, path) },
		Watch: func(ctx context.Context, u string) (scaleout.Watcher, error) {
			if prom != "" {
				return promwatch.New(ctx, prom)
			}
			// Not visible (a remote target): an empty set, and the
			// bottleneck column says nothing local was watched.
			set, _ := measure.Discover(u, suspects)
			return set, nil
		},
	}
	if err := cfg.Validate(); err != nil {
		var bad *scaleout.ConfigError
		if errors.As(err, &bad) {
			return cfg, fmt.Errorf("scaleout: %s: %s (see loadlab scaleout --help)", scaleoutFlagOf[bad.Field], bad.Reason)
		}
		return cfg, fmt.Errorf("scaleout: %v", err)
	}
	return cfg, nil
}

// check refuses what the search's configuration cannot express: stray
// arguments, conflicting flags, a bad threshold, client, output path or
// scenario.
func (f *scaleoutFlags) check(pos []string) error {
	if err := checkScaleoutThresholds(f.checks); err != nil {
		return badInput(fmt.Errorf("scaleout: %v", err))
	}
	switch {
	case len(pos) > 0:
		return fmt.Errorf("scaleout: unexpected argument %q: the URL comes from the scale command's last line", pos[0])
	case *f.scen != "" && *f.path != "":
		return errors.New("scaleout: --path applies without --scenario only")
	case *f.path != "" && !strings.HasPrefix(*f.path, "/"):
		return fmt.Errorf("scaleout: --path must start with /, such as /v1/menu, got %q", *f.path)
	case *f.users > 0 && *f.scen == "":
		// Users carry a scenario's sessions; a URL target has none, and
		// the search would run as if the flag had not been given.
		return errors.New("scaleout: --users applies with --scenario only")
	case *f.prometheus != "" && load.CheckURL(*f.prometheus) != nil:
		return fmt.Errorf("scaleout: --prometheus: %v", load.CheckURL(*f.prometheus))
	}
	if err := f.agents.check(); err != nil {
		return fmt.Errorf("scaleout: %v", err)
	}
	switch load.Client(*f.client) {
	case load.ClientFastHTTP, load.ClientNetHTTP:
	default:
		return fmt.Errorf("scaleout: unknown --client %q (want fasthttp or nethttp)", *f.client)
	}
	if err := f.outputs.Check(); err != nil {
		return fmt.Errorf("scaleout: %v", err)
	}
	if *f.scen != "" {
		// Fail on a bad scenario now, not after the first scale-up.
		if _, err := scenario.Load(*f.scen, "http://127.0.0.1/"); err != nil {
			return fmt.Errorf("scaleout: %v", err)
		}
	}
	return nil
}

// workload is what each probe sends to the URL the scale command
// printed: the scenario with that URL as its base, or a GET of the URL
// with path added; from the --agents when given.
func (f *scaleoutFlags) workload(u, scen, path string) (scaleout.Workload, error) {
	var w scaleout.Workload
	if scen != "" {
		s, err := scenario.Load(scen, u)
		if err != nil {
			return w, err
		}
		w = scaleout.Workload{Scenario: s, ReadyURL: u}
	} else {
		target := u
		if path != "" {
			target = strings.TrimSuffix(u, "/") + path
		}
		if err := load.CheckURL(target); err != nil {
			return w, err
		}
		w = scaleout.Workload{Target: &load.Request{Method: "GET", URL: target}, ReadyURL: target}
	}
	if f.agents.on() {
		cfg := load.Config{Target: w.Target, Scenario: w.Scenario, Client: load.Client(*f.client), Timeout: scaleout.ProbeTimeout, SLO: *f.slo}
		src, err := f.agents.source(cfg, scen, u)
		if err != nil {
			return w, err
		}
		w.Source = src
	}
	return w, nil
}

// parseCounts reads "1,2,4"; scaleout.Config.Validate judges the counts.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q is not a replica count (want e.g. 1,2,4)", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseSizes reads "0.25,0.5,1"; scaleout.Config.Validate judges the
// sizes.
func parseSizes(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number of cores (want e.g. 0.25,0.5,1)", f)
		}
		out = append(out, v)
	}
	return out, nil
}
