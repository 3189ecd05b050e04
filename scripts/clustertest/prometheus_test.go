package clustertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/perfscale/perfscale/internal/testwait"
)

// requirePrometheus skips the test when Debian's prometheus is missing,
// and fails it under CI=true, where .ci/run installs it.
func requirePrometheus(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("prometheus"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus is not installed; under CI=true .ci/run must install it (apt-get install prometheus)")
		}
		t.Skip("prometheus is not installed (apt-get install prometheus); skipping the cluster's Prometheus test")
	}
}

// exporterJobs are the jobs of the exporters the cluster starts with
// Prometheus (instance, and the series that is 1 when the exporter
// reaches what it exports) for those installed; a missing one is left
// out (the cluster skips it), except under CI=true, where .ci/run
// installs them.
func exporterJobs(t *testing.T) map[string]exporterJob {
	t.Helper()
	jobs := map[string]exporterJob{}
	for _, e := range []struct {
		bin string
		job string
		exporterJob
	}{
		{"prometheus-postgres-exporter", "postgres", exporterJob{"db-1-exporter", "db-1", "pg_up"}},
		{"prometheus-redis-exporter", "redis", exporterJob{"redis-exporter", "redis", "redis_up"}},
		{"prometheus-nginx-exporter", "nginx", exporterJob{"nginx-exporter", "nginx", "nginx_up"}},
		// The node exporter has no *_up series: its CPU collector's
		// success stands for it (the machine's CPU, as loadlab reads it).
		{"prometheus-node-exporter", "node", exporterJob{"node-exporter", "node", `node_scrape_collector_success{collector="cpu"}`}},
	} {
		if _, err := exec.LookPath(e.bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed; under CI=true .ci/run must install it (apt-get install %s)", e.bin, e.bin)
			}
			t.Logf("%s is not installed (apt-get install %s): its job is not checked", e.bin, e.bin)
			continue
		}
		jobs[e.job] = e.exporterJob
	}
	return jobs
}

// exporterJob is an exporter's process (status's row), its instance
// label and its *_up series.
type exporterJob struct{ process, instance, upSeries string }

// prometheusURL is the URL status prints on its "prometheus: URL" line.
func (c *cluster) prometheusURL() string {
	c.t.Helper()
	for _, line := range strings.Split(c.mustScript("status"), "\n") {
		if u, ok := strings.CutPrefix(line, "prometheus: "); ok {
			return u
		}
	}
	c.t.Fatal("status prints no prometheus line")
	return ""
}

// upTargets are the instances Prometheus scrapes with success, by job.
func upTargets(ctx context.Context, api promv1.API) (map[string][]string, error) {
	res, err := api.Targets(ctx)
	if err != nil {
		return nil, err
	}
	up := map[string][]string{}
	for _, tg := range res.Active {
		if tg.Health == promv1.HealthGood {
			job := string(tg.Labels["job"])
			up[job] = append(up[job], string(tg.Labels["instance"]))
		}
	}
	for _, v := range up {
		slices.Sort(v)
	}
	return up, nil
}

// up --prometheus starts a Prometheus that scrapes every shop process
// and itself and evaluates the repository's rules; a rescale changes its
// targets; down stops it and removes its files.
func TestPrometheusScrapesEveryProcess(t *testing.T) {
	requirePrometheus(t)
	exporters := exporterJobs(t)
	t.Parallel()
	c := startCluster(t, nil, "1", "--prometheus")
	client, err := promapi.NewClient(promapi.Config{Address: c.prometheusURL()})
	if err != nil {
		t.Fatal(err)
	}
	api := promv1.NewAPI(client)
	waitScraped := func(want map[string][]string) {
		t.Helper()
		testwait.Eventually(t, 90*time.Second, func() error {
			up, err := upTargets(t.Context(), api)
			if err != nil {
				return err
			}
			for job, instances := range want {
				if !slices.Equal(up[job], instances) {
					return fmt.Errorf("targets up: %v, want %v", up, want)
				}
			}
			return nil
		})
	}
	want := map[string][]string{"prometheus": {"prometheus"}, "shop": {"replica-1", "worker"}}
	for job, e := range exporters {
		want[job] = []string{e.instance}
	}
	waitScraped(want)
	// Each exporter reaches what it exports (its *_up series is 1).
	for job, e := range exporters {
		testwait.Eventually(t, 90*time.Second, func() error {
			v, _, _, err := api.Query(t.Context(), e.upSeries, time.Now())
			if err != nil {
				return err
			}
			if vec := v.(model.Vector); len(vec) != 1 || vec[0].Value != 1 || string(vec[0].Metric["job"]) != job {
				return fmt.Errorf("%s: %v, want 1 for job %s", e.upSeries, vec, job)
			}
			return nil
		})
	}
	// NATS is not scraped, and status says why; the worker exports the
	// order stream as the server holds it.
	if out := c.mustScript("status"); !strings.Contains(out, "not scraped: NATS (") {
		t.Errorf("status says nothing of NATS not being scraped:\n%s", out)
	}
	testwait.Eventually(t, 90*time.Second, func() error {
		v, _, _, err := api.Query(t.Context(), `shop_nats_stream_up`, time.Now())
		if err != nil {
			return err
		}
		if vec := v.(model.Vector); len(vec) != 1 || vec[0].Value != 1 || vec[0].Metric["instance"] != "worker" {
			return fmt.Errorf("shop_nats_stream_up: %v, want 1 from the worker alone", vec)
		}
		return nil
	})

	// The rules are loaded and evaluate: the database pools' share in use
	// is recorded for each shop process.
	testwait.Eventually(t, 90*time.Second, func() error {
		v, _, _, err := api.Query(t.Context(), `pool:shop_db_pool_in_use:ratio{pool="primary"}`, time.Now())
		if err != nil {
			return err
		}
		var instances []string
		for _, s := range v.(model.Vector) {
			instances = append(instances, string(s.Metric["instance"]))
		}
		slices.Sort(instances)
		if !slices.Equal(instances, []string{"replica-1", "worker"}) {
			return fmt.Errorf("pool:shop_db_pool_in_use:ratio recorded for %v", instances)
		}
		return nil
	})
	rules, err := api.Rules(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules.Groups) == 0 {
		t.Fatal("Prometheus loaded no rules")
	}

	c.mustScript("up", "2")
	waitScraped(map[string][]string{"shop": {"replica-1", "replica-2", "worker"}})

	pids := map[string]int{}
	pids["prometheus"], _, _, _ = c.status("prometheus")
	for _, e := range exporters {
		pids[e.process], _, _, _ = c.status(e.process)
	}
	c.mustScript("down")
	// Signal 0 also reaches a zombie that its parent has not reaped yet
	// (a fresh-clone CI run saw one): processGone counts that as gone.
	for name, pid := range pids {
		if err := processGone(pid); err != nil {
			t.Errorf("%s (pid %d) after down: %v", name, pid, err)
		}
	}
	if _, err := os.Stat(c.state); !os.IsNotExist(err) {
		t.Errorf("the state directory (with Prometheus' data) is still there after down: %v", err)
	}
}

// --prometheus without Prometheus installed fails before anything starts
// (no state directory made), with exit status 1 and the package to
// install. The cluster command runs with a PATH that has no prometheus.
func TestPrometheusMissingFailsUpAtOnce(t *testing.T) {
	_, bin := build(t, repoRoot(t))
	state := t.TempDir() + "/cluster"
	cmd := exec.Command(bin, "--state-dir", state, "up", "1", "--prometheus")
	cmd.Env = append(os.Environ(), "PATH=/nonexistent")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "apt-get install prometheus") {
		t.Fatalf("up --prometheus without prometheus on PATH: %v, %q", err, out)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("up made the state directory before refusing: %v", err)
	}
}
