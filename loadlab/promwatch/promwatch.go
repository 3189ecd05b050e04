// Package promwatch reads the server side's saturation from a Prometheus
// server (its HTTP API, through the official client) instead of watching
// local processes: for each measured step, after it, the CPU of every
// scraped process grouped by job and component (process_cpu_seconds_total),
// the requests in flight, the background jobs waiting and the calls
// waiting for a database connection, each over the step's time window;
// and, where a node exporter is scraped, the machine's CPU: how busy, and
// how many threads waited for a CPU, so that a step the machine held back
// is judged machine-bound (measure.Starved) as when loadlab reads the
// machine itself. It
// serves loadlab diagnose and scaleout's --prometheus URL, for a target
// whose processes are not on this machine (or not visible to it) but
// are scraped by a Prometheus, such as scripts/cluster.sh up --prometheus
// or a Kubernetes cluster's.
package promwatch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/procwatch"
)

// Queries over a window of W: each process's CPU, summed by job and
// component with the number of processes; the shop's requests in flight
// without the long-lived order event streams and the probes (as the
// recording rule instance:shop_http_requests_in_flight:sum), averaged;
// the job backlog's most; the calls waiting for a database connection,
// averaged over every pool of every process.
const (
	cpuQuery      = `sum by (job, component) (rate(process_cpu_seconds_total[%s]))`
	membersQuery  = `count by (job, component) (rate(process_cpu_seconds_total[%s]))`
	inFlightQuery = `sum(avg_over_time(shop_http_requests_in_flight{route!~"GET /v1/orders/\\{id\\}/events|GET /healthz|GET /readyz"}[%s]))`
	jobsQuery     = `max(max_over_time(shop_jobs_waiting[%s]))`
	poolQuery     = `sum(rate(shop_db_pool_wait_seconds_total[%s]))`
)

// The machine's CPU over a window of W, from Debian's (or any) node
// exporter, summed over the nodes scraped: exact for one machine (as
// scripts/cluster.sh runs it), the cluster as a whole for several. Busy
// is every mode but idle and iowait, as loadlab reads /proc/stat
// locally. The wait is the scheduler's run-queue wait of every CPU, in
// cores (schedstat, where the kernel has it); else the CPU pressure's
// share of time in which some thread waited, which is a lower bound of
// it in cores (at least one thread waited all that time).
const (
	machineBusyQuery  = `sum(rate(node_cpu_seconds_total{mode!~"idle|iowait"}[%[1]s])) / sum(rate(node_cpu_seconds_total[%[1]s]))`
	schedWaitQuery    = `sum(rate(node_schedstat_waiting_seconds_total[%s]))`
	pressureWaitQuery = `sum(rate(node_pressure_cpu_waiting_seconds_total[%s]))`
)

// Watcher reads steps' windows from one Prometheus server.
type Watcher struct {
	url string
	api promv1.API
}

var (
	_ measure.Watcher       = (*Watcher)(nil)
	_ measure.WindowWatcher = (*Watcher)(nil)
)

// New checks that a Prometheus answers at url and scrapes at least one
// target with success, and returns its watcher.
func New(ctx context.Context, url string) (*Watcher, error) {
	client, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("--prometheus %s: %v", url, err)
	}
	w := &Watcher{url: url, api: promv1.NewAPI(client)}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, _, _, err := w.api.Query(ctx, `count(up == 1)`, time.Now())
	if err != nil {
		return nil, fmt.Errorf("--prometheus %s does not answer as a Prometheus server: %v", url, err)
	}
	if vec, ok := v.(model.Vector); !ok || len(vec) == 0 || vec[0].Value == 0 {
		return nil, fmt.Errorf("--prometheus %s scrapes no target with success (up == 1): nothing to watch", url)
	}
	return w, nil
}

// Source names the source of the figures: "prometheus URL".
func (w *Watcher) Source() string { return "prometheus " + w.url }

// Describe is the one line scaleout and diagnose print of what is watched.
func (w *Watcher) Describe() []string {
	return []string{fmt.Sprintf("every process Prometheus at %s scrapes, by job and component: CPU, in flight, jobs waiting, database pool waits; the machine's CPU busy and run-queue wait, where a node exporter is scraped", w.url)}
}

// Sample is not how this watcher reads (Meter asks Window instead).
func (w *Watcher) Sample(context.Context) ([]procwatch.Usage, error) {
	return nil, errors.New("promwatch reads windows, not samples")
}

// Follow has nothing to follow: Prometheus discovers its targets.
func (w *Watcher) Follow(context.Context, time.Duration) (stop func()) { return func() {} }

// Window reads the step from..to. Prometheus' rate needs two scrapes in
// the window: a step shorter than two scrape intervals has no CPU.
func (w *Watcher) Window(ctx context.Context, from, to time.Time) (measure.Window, error) {
	win := measure.NoWindow()
	rng := model.Duration(to.Sub(from).Round(time.Second))
	if rng < model.Duration(time.Second) {
		rng = model.Duration(time.Second)
	}
	cpu, err := w.vector(ctx, fmt.Sprintf(cpuQuery, rng), to)
	if err != nil {
		return win, err
	}
	members, err := w.vector(ctx, fmt.Sprintf(membersQuery, rng), to)
	if err != nil {
		return win, err
	}
	count := map[string]int{}
	for _, s := range members {
		count[groupName(s.Metric)] = int(s.Value)
	}
	for _, s := range cpu {
		name := groupName(s.Metric)
		win.Processes = append(win.Processes, measure.ProcessStep{
			Name: name, Members: max(count[name], 1), CPUCores: float64(s.Value),
			WaitCores: math.NaN(), PreemptedCores: math.NaN(), QuotaCores: math.NaN(), ThrottledShare: math.NaN(),
			Suspect: monitoring(s.Metric),
		})
	}
	sort.Slice(win.Processes, func(i, j int) bool { return win.Processes[i].Name < win.Processes[j].Name })
	for q, dst := range map[string]*float64{inFlightQuery: &win.InFlight, jobsQuery: &win.JobsWaiting, poolQuery: &win.DBPoolWaiting} {
		v, err := w.vector(ctx, fmt.Sprintf(q, rng), to)
		if err != nil {
			return win, err
		}
		if len(v) == 1 {
			*dst = float64(v[0].Value)
		}
	}
	win.MachineBusy, win.MachineWaitCores, err = w.machine(ctx, rng, to)
	return win, err
}

// machine is the nodes' CPU busy share and run-queue wait over the window
// (NaN where no node exporter is scraped, or it exports neither wait).
func (w *Watcher) machine(ctx context.Context, rng model.Duration, to time.Time) (busy, wait float64, err error) {
	busy, wait = math.NaN(), math.NaN()
	for _, q := range []struct {
		query string
		dst   *float64
	}{{machineBusyQuery, &busy}, {schedWaitQuery, &wait}, {pressureWaitQuery, &wait}} {
		if !math.IsNaN(*q.dst) {
			continue // the scheduler's wait was read: the pressure is not needed
		}
		v, err := w.vector(ctx, fmt.Sprintf(q.query, rng), to)
		if err != nil {
			return busy, wait, err
		}
		if len(v) == 1 && !math.IsNaN(float64(v[0].Value)) {
			*q.dst = float64(v[0].Value)
		}
	}
	return busy, wait, nil
}

// monitoring says whether a series is the monitoring's own, whose CPU is
// not the server's: Prometheus itself, or an exporter (component
// "exporter", as scripts/cluster.sh labels them), whose process metrics
// are its own, not those of the server it exports.
func monitoring(m model.Metric) bool {
	return m["job"] == "prometheus" || m["component"] == "exporter"
}

// groupName is "job component", or the job alone.
func groupName(m model.Metric) string {
	return strings.TrimSpace(string(m["job"]) + " " + string(m["component"]))
}

func (w *Watcher) vector(ctx context.Context, q string, at time.Time) (model.Vector, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, _, _, err := w.api.Query(ctx, q, at)
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %s: %v", w.url, q, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("prometheus %s: %s: a %s, not a vector", w.url, q, v.Type())
	}
	return vec, nil
}
