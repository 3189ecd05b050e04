package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/perfscale/perfscale/internal/supervise"
)

// The cluster's Prometheus (up --prometheus): Debian's prometheus binary
// with its configuration, data and rules in STATE/prometheus, on a port
// of its own, scraping every shop process's /metrics (the API replicas and
// the worker, job "shop", instance the process's name, component api or
// worker, as deploy/k8s labels pods) and itself (job "prometheus"),
// evaluating deploy/prometheus/rules.yml. The shop targets are a file
// Prometheus watches (file_sd), rewritten when the replicas change: a
// rescale needs no reload. nginx, PostgreSQL and Redis are scraped
// through exporters (exporters.go), NATS is not.

// scrapeInterval is short so that a load step of a few tens of seconds
// (loadlab diagnose) spans several scrapes.
const scrapeInterval = "5s"

func prometheusPath() (string, error) {
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("--prometheus needs Prometheus, which is not installed (apt-get install prometheus)")
}

func (c *cluster) prometheusDir() string { return filepath.Join(c.state, "prometheus") }

// startPrometheus writes the configuration, the rules and the targets,
// and starts Prometheus, waiting until it is ready.
func (c *cluster) startPrometheus(ctx context.Context) error {
	path, err := prometheusPath()
	if err != nil {
		return err
	}
	dir := c.prometheusDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	rules, err := os.ReadFile(filepath.Join(repoDir(), "deploy", "prometheus", "rules.yml"))
	if err != nil {
		return fmt.Errorf("the rules for Prometheus: %v (PERFSCALE_REPO names the repository)", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), rules, 0o644); err != nil {
		return err
	}
	if err := c.writeTargets(); err != nil {
		return err
	}
	exported, err := c.startExporters(ctx)
	if err != nil {
		return err
	}
	spec := supervise.Spec{
		Name: "prometheus", Path: path, Ports: []string{"http"}, Logf: c.logf,
		Meta: map[string]string{"role": "monitor"},
		Args: func(p map[string]int) []string {
			addr := "127.0.0.1:" + strconv.Itoa(p["http"])
			// The configuration names the port it scrapes itself on.
			if err := writeFileAtomic(filepath.Join(dir, "prometheus.yml"), prometheusConfig(dir, addr, exported)); err != nil {
				c.logf("%v", err)
			}
			return []string{"--config.file=" + filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path=" + filepath.Join(dir, "data"),
				"--web.listen-address=" + addr, "--storage.tsdb.retention.time=2d"}
		},
		Ready: func(ctx context.Context, r supervise.Record) error {
			return httpOK(ctx, r.URL("http")+"/-/ready")
		},
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	r, err := c.dir().Start(sctx, spec)
	if err != nil {
		return err
	}
	// Its first scrapes come up to an interval (more on a busy machine)
	// after it is ready: up returns once every target has been scraped,
	// so that what runs next (loadlab --prometheus) finds data.
	wctx, wcancel := context.WithTimeout(ctx, startTimeout)
	defer wcancel()
	if err := waitScraped(wctx, r.URL("http")); err != nil {
		return fmt.Errorf("prometheus at %s did not scrape every target within %s (see %s): %v", r.URL("http"), startTimeout, r.Log, err)
	}
	scraped := "the replicas and the worker"
	for _, t := range exported {
		scraped += ", " + t.labels["instance"]
	}
	c.logf("prometheus at %s scrapes %s every %s", r.URL("http"), scraped, scrapeInterval)
	return nil
}

// waitScraped waits until Prometheus at url has scraped each of its
// targets with success.
func waitScraped(ctx context.Context, url string) error {
	var last error
	for {
		last = scrapedAll(ctx, url)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func scrapedAll(ctx context.Context, url string) error {
	b, err := httpGet(ctx, url+"/api/v1/targets?state=active")
	if err != nil {
		return err
	}
	var res struct {
		Data struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return err
	}
	if len(res.Data.ActiveTargets) == 0 {
		return fmt.Errorf("no target yet")
	}
	for _, t := range res.Data.ActiveTargets {
		if t.Health != "up" {
			return fmt.Errorf("%s is %s %s", t.Labels["instance"], t.Health, t.LastError)
		}
	}
	return nil
}

// scrapeTarget is one target of a job other than the shop's (an
// exporter); a job's targets come one after the other.
type scrapeTarget struct {
	job, addr string
	labels    map[string]string
}

func prometheusConfig(dir, self string, targets []scrapeTarget) []byte {
	// One job per name (Prometheus refuses a name twice), a static
	// target per exporter under it.
	var jobs strings.Builder
	for i, t := range targets {
		if i == 0 || targets[i-1].job != t.job {
			fmt.Fprintf(&jobs, "  - job_name: %s\n    static_configs:\n", t.job)
		}
		fmt.Fprintf(&jobs, "      - targets: ['%s']\n        labels:\n", t.addr)
		for _, k := range slices.Sorted(maps.Keys(t.labels)) {
			fmt.Fprintf(&jobs, "          %s: %s\n", k, t.labels[k])
		}
	}
	return []byte(`# Written by scripts/cluster.sh up --prometheus.
global:
  scrape_interval: ` + scrapeInterval + `
  evaluation_interval: ` + scrapeInterval + `
rule_files:
  - ` + filepath.Join(dir, "rules.yml") + `
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['` + self + `']
        labels:
          instance: prometheus
  - job_name: shop
    file_sd_configs:
      - files: ['` + filepath.Join(dir, "targets.json") + `']
` + jobs.String())
}

// targetGroup is one entry of a file_sd targets file.
type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// writeTargets writes the shop processes' admin listeners (their
// /metrics) for Prometheus, when the cluster runs one.
func (c *cluster) writeTargets() error {
	if err := os.MkdirAll(c.prometheusDir(), 0o755); err != nil {
		return err
	}
	names := []string{"worker"}
	for i := 1; i <= c.cfg.Replicas; i++ {
		names = append(names, replicaName(i))
	}
	groups := []targetGroup{}
	for _, name := range names {
		r, ok, err := c.dir().Load(name)
		if err != nil {
			return err
		}
		if !ok || r.Port("admin") == 0 {
			continue
		}
		groups = append(groups, targetGroup{
			Targets: []string{"127.0.0.1:" + strconv.Itoa(r.Port("admin"))},
			Labels:  map[string]string{"instance": name, "component": r.Meta["role"]},
		})
	}
	b, err := json.MarshalIndent(groups, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.prometheusDir(), "targets.json"), append(b, '\n'))
}

// writeFileAtomic writes a file a watcher sees whole: the old or the new.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// prometheusRunning reports whether the cluster's Prometheus runs.
func (c *cluster) prometheusRunning() (bool, error) {
	r, ok, err := c.dir().Load("prometheus")
	return ok && r.Alive(), err
}
