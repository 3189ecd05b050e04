package diagnose

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
)

// ProcessCPU samples a local process's CPU time from /proc.
type ProcessCPU struct{ PID int }

// Source implements CPUSampler.
func (p ProcessCPU) Source() string { return "pid" }

// CPUSeconds implements CPUSampler: user plus system time of the process.
func (p ProcessCPU) CPUSeconds(context.Context) (float64, error) {
	proc, err := procfs.NewProc(p.PID)
	if err != nil {
		return 0, fmt.Errorf("read CPU of process %d: %w", p.PID, err)
	}
	st, err := proc.Stat()
	if err != nil {
		return 0, fmt.Errorf("read CPU of process %d: %w", p.PID, err)
	}
	return st.CPUTime(), nil
}

// CPUWaitSeconds implements CPUWaitSampler: the time the process's threads
// spent runnable but waiting for a CPU, summed from each thread's
// /proc/PID/task/TID/schedstat. Threads that exit take their share with
// them; Go's threads rarely exit.
func (p ProcessCPU) CPUWaitSeconds(context.Context) (float64, error) {
	threads, err := procfs.AllThreads(p.PID)
	if err != nil || len(threads) == 0 {
		return 0, fmt.Errorf("read CPU wait of process %d: no threads (is it running?)", p.PID)
	}
	var waitNS uint64
	for _, t := range threads {
		st, err := t.Schedstat()
		if err != nil {
			continue // the thread exited between listing and reading
		}
		waitNS += st.WaitingNanoseconds
	}
	return float64(waitNS) / 1e9, nil
}

// PIDListeningOn finds the local process that listens on a TCP port, by
// matching the listening socket's inode in /proc/net/tcp{,6} with the
// sockets among each process's file descriptors. It needs permission to
// read the other process's /proc/PID/fd (same user, or root).
func PIDListeningOn(port int) (int, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, fmt.Errorf("find the process on port %d: %w", port, err)
	}
	inodes := map[string]bool{}
	//lint:ignore SA1019 the socket tables in /proc are what ties a port to a process's fds here; sock_diag over netlink would add a dependency for the same answer
	for _, table := range []func() (procfs.NetTCP, error){fs.NetTCP, fs.NetTCP6} {
		lines, err := table()
		if err != nil {
			continue
		}
		for _, l := range lines {
			if l.St == tcpListen && int(l.LocalPort) == port {
				inodes[fmt.Sprintf("socket:[%d]", l.Inode)] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no local process listens on port %d", port)
	}
	procs, err := fs.AllProcs()
	if err != nil {
		return 0, fmt.Errorf("find the process on port %d: %w", port, err)
	}
	for _, proc := range procs {
		targets, err := proc.FileDescriptorTargets()
		if err != nil {
			continue
		}
		for _, t := range targets {
			if inodes[t] {
				return proc.PID, nil
			}
		}
	}
	return 0, fmt.Errorf("port %d is listening, but its process cannot be seen (another user's?); pass --pid", port)
}

// tcpListen is the LISTEN state in /proc/net/tcp.
const tcpListen = 0x0A

// MetricsCPU reads process_cpu_seconds_total from a Prometheus endpoint.
type MetricsCPU struct {
	URL    string
	Client *http.Client
}

// Source implements CPUSampler.
func (m MetricsCPU) Source() string { return "metrics" }

// CPUSeconds implements CPUSampler.
func (m MetricsCPU) CPUSeconds(ctx context.Context) (float64, error) {
	sc, err := m.scrape(ctx)
	if err != nil {
		return 0, err
	}
	if !sc.hasCPU {
		return 0, fmt.Errorf("metrics: no process_cpu_seconds_total sample at %s", m.URL)
	}
	return sc.cpu, nil
}

// InFlight implements InFlightSampler: the sum of the gauges whose name
// says in flight (shop_http_requests_in_flight, http_requests_in_flight...).
func (m MetricsCPU) InFlight(ctx context.Context) (float64, error) {
	sc, err := m.scrape(ctx)
	if err != nil {
		return 0, err
	}
	if !sc.hasInFlight {
		return 0, fmt.Errorf("metrics: no in-flight gauge at %s", m.URL)
	}
	return sc.inFlight, nil
}

func (m MetricsCPU) scrape(ctx context.Context) (scraped, error) {
	c := m.Client
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, "GET", m.URL, nil)
	if err != nil {
		return scraped{}, fmt.Errorf("metrics: %w", err)
	}
	// The text format, which every Prometheus client library serves.
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := c.Do(req)
	if err != nil {
		return scraped{}, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return scraped{}, fmt.Errorf("metrics: %s answered %s", m.URL, resp.Status)
	}
	return parseMetrics(resp.Body)
}

type scraped struct {
	cpu, inFlight       float64
	hasCPU, hasInFlight bool
}

// parseMetrics reads the samples diagnose needs from the Prometheus text
// format: process_cpu_seconds_total and every *in_flight* gauge, summed
// over their series.
func parseMetrics(r io.Reader) (scraped, error) {
	var out scraped
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return out, fmt.Errorf("metrics: %w", err)
	}
	for name, mf := range families {
		switch {
		case name == "process_cpu_seconds_total":
			for _, m := range mf.GetMetric() {
				out.cpu += sampleValue(m)
				out.hasCPU = true
			}
		case strings.Contains(name, "in_flight"):
			for _, m := range mf.GetMetric() {
				out.inFlight += sampleValue(m)
				out.hasInFlight = true
			}
		}
	}
	return out, nil
}

// sampleValue is the value of a counter, gauge or untyped sample.
func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}
