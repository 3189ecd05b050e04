package promwatch_test

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/perfscale/perfscale/internal/testwait"
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/promwatch"
)

// recording is two scrapes of Debian's node exporter (1.5.0) on this
// machine, its CPU and CPU pressure collectors, 10 s apart at a load
// average of 25 to 26 (eight sessions' builds and tests and two CPU hogs
// on 2 cores): the CPUs never idle, and some thread waited for a CPU
// 99.6% of the time.
const (
	recordedFirst  = "testdata/node-busy-0.prom"
	recordedSecond = "testdata/node-busy-1.prom"
)

// replayNode serves the recorded node exporter as if the machine went on
// as recorded: each counter at its second value plus its recorded rate
// times the time since the start. The recording's length comes from its
// CPU seconds: all the modes of one CPU advance a second a second.
func replayNode(t *testing.T, scraped chan<- struct{}) (addr string, busy, waiting float64) {
	parse := func(path string) map[string]*dto.MetricFamily {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return mfs
	}
	first, second := parse(recordedFirst), parse(recordedSecond)
	delta := func(name string, i int) float64 {
		return second[name].Metric[i].GetCounter().GetValue() - first[name].Metric[i].GetCounter().GetValue()
	}
	var cpus []string
	var cpuSeconds, idle float64
	for i, m := range second["node_cpu_seconds_total"].Metric {
		var cpu, mode string
		for _, l := range m.Label {
			switch l.GetName() {
			case "cpu":
				cpu = l.GetValue()
			case "mode":
				mode = l.GetValue()
			}
		}
		if !slices.Contains(cpus, cpu) {
			cpus = append(cpus, cpu)
		}
		cpuSeconds += delta("node_cpu_seconds_total", i)
		if mode == "idle" || mode == "iowait" {
			idle += delta("node_cpu_seconds_total", i)
		}
	}
	seconds := cpuSeconds / float64(len(cpus))
	busy = 1 - idle/cpuSeconds
	waiting = delta("node_pressure_cpu_waiting_seconds_total", 0) / seconds

	names := make([]string, 0, len(second))
	rates := map[*dto.Metric]float64{}
	base := map[*dto.Metric]float64{}
	for name, mf := range second {
		names = append(names, name)
		for i, m := range mf.Metric {
			rates[m], base[m] = delta(name, i)/seconds, m.GetCounter().GetValue()
		}
	}
	slices.Sort(names)
	start := time.Now()
	var mu sync.Mutex
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		// Each sample carries the instant its value was taken: Prometheus
		// would stamp it with the scrape's start, which a busy machine can
		// put hundreds of milliseconds away from it.
		now := time.Now()
		elapsed, at := now.Sub(start).Seconds(), now.UnixMilli()
		w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
		for _, name := range names {
			for _, m := range second[name].Metric {
				v := base[m] + rates[m]*elapsed
				m.Counter.Value = &v
				m.TimestampMs = &at
			}
			if _, err := expfmt.MetricFamilyToText(w, second[name]); err != nil {
				return
			}
		}
	})
	return serve(t, h, scraped), busy, waiting
}

// scrapesRunner is a step that lasts until each target has been scraped
// n times since it began: long enough for Prometheus' rates over it,
// whatever the machine's load.
type scrapesRunner struct {
	scraped []chan struct{}
	n       int
}

func (r scrapesRunner) Run(ctx context.Context, _ measure.Spec) (measure.Step, error) {
	for _, c := range r.scraped {
		for len(c) > 0 {
			<-c // scrapes before the step
		}
	}
	for _, c := range r.scraped {
		for range r.n {
			select {
			case <-c:
			case <-ctx.Done():
				return measure.Step{}, ctx.Err()
			}
		}
	}
	return measure.Step{ThroughputRPS: 100}, nil
}

// With a node exporter scraped, a step on a machine whose CPUs were all
// busy while its threads waited for one is machine-bound (measure.Starved,
// the rule loadlab applies when it reads the machine itself) when the
// server ran less than they waited, and not when it ran more: the
// machine's wait, which holds the server's, no longer explains the step.
func TestAStarvedMachineScrapedByPrometheusIsMachineBound(t *testing.T) {
	for _, tt := range []struct {
		name     string
		cores    float64
		starved  bool
		mentions string
	}{
		{"a server of 0.05 cores", 0.05, true, "the machine's threads (of every process; their own wait is not known) waited for a CPU"},
		{"a server of 1.5 cores, more than the wait", 1.5, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nodeScraped, shopScraped := make(chan struct{}, 64), make(chan struct{}, 64)
			node, busy, waiting := replayNode(t, nodeScraped)
			if busy < measure.MachineSaturated || waiting <= measure.StarvedWait {
				t.Fatalf("the recording is not of a starved machine: busy %.2f, some thread waiting %.2f of the time", busy, waiting)
			}
			url := startPrometheus(t, scrapeJob{"shop", "api", processTarget(t, tt.cores, shopScraped)}, scrapeJob{"node", "exporter", node})
			var w *promwatch.Watcher
			testwait.Eventually(t, time.Minute, func() error {
				var err error
				w, err = promwatch.New(t.Context(), url)
				return err
			})
			step, err := measure.NewMeter(w).Measure(t.Context(), scrapesRunner{[]chan struct{}{nodeScraped, shopScraped}, 4}, measure.Spec{Concurrency: 1})
			if err != nil {
				t.Fatal(err)
			}
			near := func(what string, got, want float64) {
				t.Helper()
				if math.IsNaN(got) || math.Abs(got-want) > 0.05*want {
					t.Errorf("%s: %v, want %v", what, got, want)
				}
			}
			near("the machine's busy share", step.MachineBusy, busy)
			near("the machine's wait for a CPU (cores, at least)", step.MachineWaitCores, waiting)
			near("the server's CPU", step.ServerCPUCores, tt.cores)
			if wait, machine := step.CPUWait(); !machine || wait != step.MachineWaitCores {
				t.Errorf("CPUWait() = %v, %v; want the machine's %v (the server's own is not known)", wait, machine, step.MachineWaitCores)
			}
			if got := measure.Starved(step, 2); got != tt.starved {
				t.Fatalf("Starved = %v, want %v: busy %.2f, server CPU %.2f, machine wait %.2f", got, tt.starved, step.MachineBusy, step.ServerCPUCores, step.MachineWaitCores)
			}
			if text := step.WaitedText("their"); tt.mentions != "" && !strings.Contains(text, tt.mentions) {
				t.Errorf("WaitedText = %q, want it to mention %q", text, tt.mentions)
			}
		})
	}
}
