package measure_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/measure"
	"github.com/perfscale/perfscale/loadlab/procwatch"
)

func TestLocalPort(t *testing.T) {
	tests := []struct {
		url  string
		port int
		ok   bool
	}{
		{"http://127.0.0.1:8080/v1/menu", 8080, true},
		{"http://localhost/", 80, true},
		{"https://127.0.0.2/", 443, true},
		{"http://[::1]:9000/", 9000, true},
		{"http://10.0.0.5:8080/", 0, false},
		{"http://shop.example/", 0, false},
		{"ftp://localhost/", 0, false},
		{"http://127.0.0.1:0/", 0, false},
		{"://bad", 0, false},
	}
	for _, tt := range tests {
		port, ok := measure.LocalPort(tt.url)
		if port != tt.port || ok != tt.ok {
			t.Errorf("LocalPort(%q) = %d, %v; want %d, %v", tt.url, port, ok, tt.port, tt.ok)
		}
	}
}

func TestDiscoverSaysWhyNothingIsWatched(t *testing.T) {
	tests := []struct{ url, want string }{
		{"http://10.0.0.5:8080/", "remote target"},
		// Port 1 is privileged and unused on a test machine.
		{"http://127.0.0.1:1/", "no local process listens on port 1"},
	}
	for _, tt := range tests {
		set, note := measure.Discover(tt.url, false)
		if set == nil || set.Len() != 0 || !strings.Contains(note, tt.want) {
			t.Errorf("Discover(%q): %d groups, note %q; want none and %q", tt.url, set.Len(), note, tt.want)
		}
	}
}

// The server's CPU is what is connected to the target: a PostgreSQL that
// only runs on the same machine (another system's) is reported beside it,
// not added to it.
func TestServerCPUCountsOnlyWhatIsConnected(t *testing.T) {
	nan := math.NaN()
	ps := []measure.ProcessStep{
		{Name: "shop", Members: 1, CPUCores: 0.4, WaitCores: 0.1, PreemptedCores: 0.04, QuotaCores: nan, ThrottledShare: nan},
		{Name: "PostgreSQL", Members: 1, CPUCores: 0.9, WaitCores: 0.5, PreemptedCores: 0.5, QuotaCores: nan, ThrottledShare: nan, Suspect: true},
		{Name: "redis", Members: 1, CPUCores: 0.1, WaitCores: nan, PreemptedCores: nan, QuotaCores: nan, ThrottledShare: nan},
	}
	cpu, wait, preempted := measure.ServerCPU(ps)
	if math.Abs(cpu-0.5) > 1e-9 || math.Abs(wait-0.1) > 1e-9 || math.Abs(preempted-0.04) > 1e-9 {
		t.Fatalf("server CPU %.2f, wait %.2f, preempted %.2f; want 0.50, 0.10 and 0.04 (the suspect left out)", cpu, wait, preempted)
	}
	if cpu, wait, preempted := measure.ServerCPU(ps[1:2]); !math.IsNaN(cpu) || !math.IsNaN(wait) || !math.IsNaN(preempted) {
		t.Fatalf("only a suspect: server CPU %v, wait %v, preempted %v; want unknown", cpu, wait, preempted)
	}
}

// The cluster's own PostgreSQL, connected to the replicas and at its
// quota, beside the other PostgreSQL servers running on the machine (the
// machine's, other clusters'), which procwatch watches as suspects under
// the same name: the connected one is the bottleneck, whichever group
// came first. Keyed by name alone, the two were one group whose member
// count matched neither, and PostgreSQL vanished from the column.
func TestProcessLoadsKeepsTheConnectedGroupBesideSuspectsOfItsName(t *testing.T) {
	nan := math.NaN()
	connected := measure.ProcessStep{Name: "PostgreSQL", Members: 1, CPUCores: 0.145, WaitCores: 0.02, PreemptedCores: 0.01, QuotaCores: 0.15, ThrottledShare: 0.7, Local: true}
	suspects := measure.ProcessStep{Name: "PostgreSQL", Members: 3, CPUCores: 0.05, WaitCores: 0.01, PreemptedCores: 0.01, QuotaCores: nan, ThrottledShare: nan, Local: true, Suspect: true}
	shop := measure.ProcessStep{Name: "shop", Members: 1, CPUCores: 0.05, WaitCores: 0.01, PreemptedCores: 0, QuotaCores: 0.1, ThrottledShare: 0.1, Local: true}
	tests := []struct {
		name  string
		procs []measure.ProcessStep
	}{
		{"connected first", []measure.ProcessStep{shop, connected, suspects}},
		{"suspects first", []measure.ProcessStep{suspects, shop, connected}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, loads := measure.BottleneckOf(measure.Step{Processes: tt.procs, MachineBusy: 0.5}, 2)
			if len(loads) != 3 {
				t.Fatalf("%d groups, want 3 (shop, PostgreSQL connected, PostgreSQL suspects): %+v", len(loads), loads)
			}
			if b == nil || b.Name != "PostgreSQL" || b.Suspect || b.Members != 1 || b.Quota != 0.15 {
				t.Fatalf("bottleneck %+v, want the connected PostgreSQL at its 0.15-core quota", b)
			}
			for _, l := range loads {
				if l.Suspect && (l.Name != "PostgreSQL" || l.Members != 3 || l.Bound) {
					t.Fatalf("suspects %+v, want the 3 other PostgreSQL servers, not bound", l)
				}
			}
		})
	}
}

// A step measured with LoadRunner against a local server carries the
// generator's result, the processes discovered behind the port and the
// server's CPU.
func TestMeasureWatchesTheLocalServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	set, note := measure.Discover(srv.URL, false)
	if note != "" {
		t.Fatal(note)
	}
	runner := measure.LoadRunner{Target: &load.Request{Method: "GET", URL: srv.URL}, Timeout: 5 * time.Second}
	s, err := measure.Measure(context.Background(), set, runner, measure.Spec{Rate: 50, Duration: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s.Load == nil || s.Load.Model != "open" || s.Requests == 0 || s.Errors != 0 {
		t.Fatalf("step %+v, load %+v", s, s.Load)
	}
	// The test binary is the server: discovery found it, and its CPU is
	// the server's.
	if len(s.Processes) != 1 || s.Processes[0].Suspect || math.IsNaN(s.ServerCPUCores) {
		t.Fatalf("processes %+v, server CPU %v", s.Processes, s.ServerCPUCores)
	}
	var _ measure.Watcher = (*procwatch.Set)(nil)
}

// windowWatcher answers every window with the same figures and records
// the windows it was asked.
type windowWatcher struct{ asked [][2]time.Time }

func (w *windowWatcher) Sample(context.Context) ([]procwatch.Usage, error) {
	return nil, errors.New("sampled: a window watcher must be asked for windows")
}
func (w *windowWatcher) Source() string { return "prometheus test" }
func (w *windowWatcher) Window(_ context.Context, from, to time.Time) (measure.Window, error) {
	w.asked = append(w.asked, [2]time.Time{from, to})
	return measure.Window{Processes: []measure.ProcessStep{
		{Name: "shop api", Members: 2, CPUCores: 0.8, WaitCores: math.NaN(), PreemptedCores: math.NaN()},
		{Name: "prometheus", Members: 1, CPUCores: 0.1, WaitCores: math.NaN(), PreemptedCores: math.NaN(), Suspect: true},
	}, InFlight: 4, JobsWaiting: 3, DBPoolWaiting: 0.5, MachineBusy: 0.95, MachineWaitCores: 1.2}, nil
}

type constRunner struct{}

func (constRunner) Run(context.Context, measure.Spec) (measure.Step, error) {
	return measure.Step{ThroughputRPS: 100, Requests: 100}, nil
}

// A WindowWatcher is asked, after the step, for the step's own window;
// its processes make the server's CPU (not its suspects), its gauges the
// step's in-flight, jobs waiting and pool waits, its machine the step's
// (a node exporter's: the machine's wait, not the processes').
func TestMeterAsksAWindowWatcherForTheStep(t *testing.T) {
	w := &windowWatcher{}
	before := time.Now()
	s, err := measure.NewMeter(w).Measure(t.Context(), constRunner{}, measure.Spec{Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(w.asked) != 1 || w.asked[0][0].Before(before) || w.asked[0][1].Before(w.asked[0][0]) {
		t.Fatalf("windows asked: %v", w.asked)
	}
	if s.Concurrency != 3 || s.ServerCPUCores != 0.8 || s.ServerInFlight != 4 || s.JobsWaiting != 3 || s.DBPoolWaiting != 0.5 || len(s.Processes) != 2 {
		t.Fatalf("step %+v", s)
	}
	if !math.IsNaN(s.ServerCPUWaitCores) {
		t.Fatalf("the processes' wait, which the window cannot give, is not NaN: %v", s.ServerCPUWaitCores)
	}
	if s.MachineBusy != 0.95 || s.MachineWaitCores != 1.2 {
		t.Fatalf("the machine: busy %v, wait %v; want the window's 0.95 and 1.2", s.MachineBusy, s.MachineWaitCores)
	}
	if wait, machine := s.CPUWait(); wait != 1.2 || !machine {
		t.Fatalf("CPUWait() = %v, %v; want the machine's 1.2", wait, machine)
	}
}

// Starved weighs the processes' own wait for a CPU when it is known, and
// the machine's (a node exporter's, through Prometheus) only when it is
// not.
func TestStarvedWeighsTheMachinesWaitOnlyWithoutTheProcesses(t *testing.T) {
	nan := math.NaN()
	for _, tt := range []struct {
		name                    string
		busy, cpu, own, machine float64
		starved                 bool
	}{
		{"the processes' own wait, longer than they ran", 1, 0.05, 0.9, nan, true},
		{"the processes' own wait, short, beside a machine's long one", 1, 0.05, 0.1, 3, false},
		{"the machine's wait only, longer than they ran", 1, 0.05, nan, 0.99, true},
		{"the machine's wait only, under half a core", 1, 0.05, nan, 0.4, false},
		{"the machine's wait only, shorter than they ran", 1, 1.5, nan, 0.99, false},
		{"the machine's wait only, the CPUs not all busy", 0.8, 0.05, nan, 0.99, false},
		{"no wait known", 1, 0.05, nan, nan, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := measure.Step{MachineBusy: tt.busy, MachineWaitCores: tt.machine,
				Processes: []measure.ProcessStep{{Name: "shop api", Members: 1, CPUCores: tt.cpu, WaitCores: tt.own, PreemptedCores: nan, QuotaCores: nan, ThrottledShare: nan}}}
			s.ServerCPUCores, s.ServerCPUWaitCores, s.ServerCPUPreemptedCores = measure.ServerCPU(s.Processes)
			if got := measure.Starved(s, 2); got != tt.starved {
				t.Errorf("Starved = %v, want %v", got, tt.starved)
			}
		})
	}
}
