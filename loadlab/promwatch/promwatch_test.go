package promwatch_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/loadlab/promwatch"
)

// target is a /metrics endpoint of known rates: CPU at 0.25 cores, calls
// waiting for a database connection at 0.5 on average, 3 requests in
// flight (and 7 on an order event stream, which does not count), 5 jobs
// waiting. The counters grow with the clock and carry the instant of their
// value, so their rates are exact whatever the machine's load.
func target(t *testing.T) string {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newClockedCounter("process_cpu_seconds_total", 0.25),
		newClockedCounter("shop_db_pool_wait_seconds_total", 0.5),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shop_jobs_waiting", Help: "jobs"}, func() float64 { return 5 }),
	)
	inFlight := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shop_http_requests_in_flight", Help: "in flight"}, []string{"route"})
	inFlight.WithLabelValues("GET /v1/menu").Set(3)
	inFlight.WithLabelValues("GET /v1/orders/{id}/events").Set(7)
	reg.MustRegister(inFlight)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// processTarget is a process's /metrics with only its CPU, at cores (as
// scripts/cluster.sh's PostgreSQL exporter's own), growing with the
// clock; each scrape is sent on scraped, if not nil, when the channel has
// room.
func processTarget(t *testing.T, cores float64, scraped chan<- struct{}) string {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newClockedCounter("process_cpu_seconds_total", cores))
	return serve(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), scraped)
}

// clockedCounter grows at rate a second and gives each sample the instant
// its value was taken, so a rate over its samples is exact however late a
// busy machine runs the scrape (Prometheus would stamp a sample without a
// timestamp with the scrape's start).
type clockedCounter struct {
	desc  *prometheus.Desc
	rate  float64
	start time.Time
}

func newClockedCounter(name string, rate float64) *clockedCounter {
	return &clockedCounter{desc: prometheus.NewDesc(name, name, nil, nil), rate: rate, start: time.Now()}
}

func (c *clockedCounter) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *clockedCounter) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	ch <- prometheus.NewMetricWithTimestamp(now,
		prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, c.rate*now.Sub(c.start).Seconds()))
}

// serve serves h and returns its address; each request is sent on
// scraped (if not nil) when the channel has room.
func serve(t *testing.T, h http.Handler, scraped chan<- struct{}) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		select {
		case scraped <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// scrapeJob is one target of the test's Prometheus.
type scrapeJob struct{ job, component, addr string }

// startPrometheus runs Debian's prometheus scraping the jobs every second
// (skipped without it, except under CI=true).
func startPrometheus(t *testing.T, jobs ...scrapeJob) string {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus is not installed; under CI=true .ci/run must install it (apt-get install prometheus)")
		}
		t.Skip("prometheus is not installed (apt-get install prometheus)")
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	conf := "global:\n  scrape_interval: 1s\nscrape_configs:\n"
	for _, j := range jobs {
		conf += fmt.Sprintf("  - job_name: %s\n    static_configs:\n      - targets: ['%s']\n        labels:\n          component: %s\n", j.job, j.addr, j.component)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus.log:\n%s", b)
		}
	})
	url := "http://" + addr
	testwait.Eventually(t, time.Minute, func() error {
		select {
		case err := <-exited:
			t.Fatalf("prometheus exited: %v", err)
		default:
		}
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	})
	return url
}

func TestWindowReadsTheStepFromPrometheus(t *testing.T) {
	url := startPrometheus(t, scrapeJob{"shop", "api", target(t)}, scrapeJob{"postgres", "exporter", processTarget(t, 0.125, nil)})
	ctx := context.Background()
	var w *promwatch.Watcher
	testwait.Eventually(t, time.Minute, func() error {
		var err error
		w, err = promwatch.New(ctx, url)
		return err
	})
	from := time.Now()
	// A window of 6 s with scrapes every second: wait until Prometheus
	// has scraped past its end.
	to := from.Add(6 * time.Second)
	client, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	api := promv1.NewAPI(client)
	testwait.Eventually(t, time.Minute, func() error {
		v, _, _, err := api.Query(ctx, "timestamp(up)", time.Now())
		if err != nil {
			return err
		}
		vec := v.(model.Vector)
		if len(vec) != 2 {
			return fmt.Errorf("not both scraped yet: %v", vec)
		}
		for _, s := range vec {
			if last := time.Unix(0, int64(float64(s.Value)*1e9)); last.Before(to) {
				return fmt.Errorf("last scrape of %s at %v, before the window's end %v", s.Metric["job"], last, to)
			}
		}
		return nil
	})
	win, err := w.Window(ctx, from, to)
	if err != nil {
		t.Fatal(err)
	}
	// The exporter's own CPU is the monitoring's, as Prometheus' is.
	if len(win.Processes) != 2 || win.Processes[0].Name != "postgres exporter" || !win.Processes[0].Suspect ||
		win.Processes[1].Name != "shop api" || win.Processes[1].Members != 1 || win.Processes[1].Suspect {
		t.Fatalf("processes %+v, want the postgres exporter (the monitoring) and the one shop api", win.Processes)
	}
	near := func(what string, got, want float64) {
		t.Helper()
		if math.IsNaN(got) || math.Abs(got-want) > 0.05*want {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}
	near("the exporter's CPU cores", win.Processes[0].CPUCores, 0.125)
	near("CPU cores", win.Processes[1].CPUCores, 0.25)
	near("calls waiting for a connection", win.DBPoolWaiting, 0.5)
	near("in flight without the event stream", win.InFlight, 3)
	near("jobs waiting", win.JobsWaiting, 5)
	if !math.IsNaN(win.Processes[1].WaitCores) || !math.IsNaN(win.Processes[1].QuotaCores) {
		t.Errorf("figures Prometheus cannot see are not NaN: %+v", win.Processes[1])
	}
	// No node exporter is scraped: the machine is not known.
	if !math.IsNaN(win.MachineBusy) || !math.IsNaN(win.MachineWaitCores) {
		t.Errorf("the machine's CPU without a node exporter: busy %v, wait %v; want NaN", win.MachineBusy, win.MachineWaitCores)
	}
	if src := w.Source(); src != "prometheus "+url {
		t.Errorf("source %q", src)
	}
}

// A URL where no Prometheus answers is refused at once, saying so.
func TestNewRefusesWhatIsNotAPrometheus(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err := promwatch.New(context.Background(), srv.URL)
	if err == nil || !strings.Contains(err.Error(), "does not answer as a Prometheus server") {
		t.Fatalf("New on a server that is not Prometheus: %v", err)
	}
}
