package diagnose

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times; it is 100
// on every Linux architecture Go supports.
const clockTicks = 100

// ProcessCPU samples a local process's CPU time from /proc.
type ProcessCPU struct{ PID int }

// Source implements CPUSampler.
func (p ProcessCPU) Source() string { return "pid" }

// CPUSeconds implements CPUSampler: user plus system time of the process.
func (p ProcessCPU) CPUSeconds(context.Context) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return 0, fmt.Errorf("read CPU of process %d: %w", p.PID, err)
	}
	// The command name is in parentheses and may hold spaces; fields
	// count from after it. utime and stime are fields 14 and 15.
	s := string(b)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, fmt.Errorf("read CPU of process %d: unexpected /proc format", p.PID)
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("read CPU of process %d: unexpected /proc format", p.PID)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read CPU of process %d: unexpected /proc format", p.PID)
	}
	return (utime + stime) / clockTicks, nil
}

// CPUWaitSeconds implements CPUWaitSampler: the time the process's threads
// spent runnable but waiting for a CPU, summed from each thread's
// /proc/PID/task/TID/schedstat (its second field, in nanoseconds). Threads
// that exit take their share with them; Go's threads rarely exit.
func (p ProcessCPU) CPUWaitSeconds(context.Context) (float64, error) {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", p.PID))
	if err != nil || len(stats) == 0 {
		return 0, fmt.Errorf("read CPU wait of process %d: no schedstat (is it running?)", p.PID)
	}
	var waitNS float64
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread exited between Glob and ReadFile
		}
		ns, err := schedWaitNS(b)
		if err != nil {
			return 0, fmt.Errorf("read CPU wait of process %d: %w", p.PID, err)
		}
		waitNS += ns
	}
	return waitNS / 1e9, nil
}

// schedWaitNS reads the run-queue wait from a schedstat line: "run_ns
// wait_ns timeslices".
func schedWaitNS(b []byte) (float64, error) {
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("unexpected schedstat %q", b)
	}
	ns, err := strconv.ParseFloat(f[1], 64)
	if err != nil || ns < 0 {
		return 0, fmt.Errorf("unexpected schedstat %q", b)
	}
	return ns, nil
}

// PIDListeningOn finds the local process that listens on a TCP port, by
// matching the listening socket's inode in /proc/net/tcp{,6} with the
// sockets among each process's file descriptors. It needs permission to
// read the other process's /proc/PID/fd (same user, or root).
func PIDListeningOn(port int) (int, error) {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			p, err := strconv.ParseInt(hexPort, 16, 32)
			if ok && err == nil && int(p) == port {
				inodes["socket:["+fields[9]+"]"] = true
			}
		}
		f.Close()
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no local process listens on port %d", port)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		link, err := os.Readlink(fd)
		if err != nil || !inodes[link] {
			continue
		}
		pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
		if err == nil {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("port %d is listening, but its process cannot be seen (another user's?); pass --pid", port)
}

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
// format: process_cpu_seconds_total and every *in_flight* gauge.
func parseMetrics(r io.Reader) (scraped, error) {
	var out scraped
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, " {"); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if i := strings.IndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		switch {
		case name == "process_cpu_seconds_total":
			v, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return out, fmt.Errorf("metrics: process_cpu_seconds_total %q is not a number", f[0])
			}
			out.cpu, out.hasCPU = v, true
		case strings.Contains(name, "in_flight"):
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				out.inFlight += v
				out.hasInFlight = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("metrics: %w", err)
	}
	return out, nil
}
