// Command benchprobe is scripts/bench.sh's helper for what loadlab does not
// measure:
//
//	benchprobe proc PID
//	    prints the process's CPU seconds so far, resident memory and peak
//	    resident memory (bytes), read from /proc through prometheus/procfs:
//	    {"cpu_seconds":1.5,"rss_bytes":123,"peak_rss_bytes":456}
//	benchprobe cpu PID...
//	    prints the CPU seconds so far of the processes and all their
//	    descendants (a postmaster's backends, nginx's workers), summed
//	benchprobe checkout --base URL [--n 300]
//	    one user checks out n times (each time: an item into the cart, not
//	    timed, then POST /v1/orders, timed) and prints the checkout's p50
//	    and p99 in ms. loadlab keeps one histogram per run, and a checkout
//	    needs a fresh cart each time, so the two requests would be mixed.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prometheus/procfs"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "benchprobe: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: benchprobe proc PID | benchprobe checkout --base URL [--n N]")
	}
	switch args[0] {
	case "proc":
		if len(args) != 2 {
			return errors.New("usage: benchprobe proc PID")
		}
		pid, err := strconv.Atoi(args[1])
		if err != nil {
			return fmt.Errorf("PID %q is not a number", args[1])
		}
		return proc(pid, out)
	case "cpu":
		var pids []int
		for _, a := range args[1:] {
			pid, err := strconv.Atoi(a)
			if err != nil {
				return fmt.Errorf("PID %q is not a number", a)
			}
			pids = append(pids, pid)
		}
		return treeCPU(pids, out)
	case "checkout":
		fs := flag.NewFlagSet("checkout", flag.ContinueOnError)
		base := fs.String("base", "http://127.0.0.1:8080", "service base URL")
		n := fs.Int("n", 300, "checkouts")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return checkout(*base, *n, out)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func proc(pid int, out io.Writer) error {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return err
	}
	p, err := fs.Proc(pid)
	if err != nil {
		return err
	}
	st, err := p.Stat()
	if err != nil {
		return err
	}
	status, err := p.NewStatus()
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(map[string]any{
		"cpu_seconds": st.CPUTime(), "rss_bytes": st.ResidentMemory(), "peak_rss_bytes": status.VmHWM,
	})
}

func treeCPU(roots []int, out io.Writer) error {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return err
	}
	procs, err := fs.AllProcs()
	if err != nil {
		return err
	}
	parent := map[int]int{}
	cpu := map[int]float64{}
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil {
			continue // gone meanwhile
		}
		parent[p.PID] = st.PPID
		cpu[p.PID] = st.CPUTime()
	}
	in := map[int]bool{}
	for _, r := range roots {
		in[r] = true
	}
	var total float64
	for pid := range cpu {
		for p := pid; p > 1; p = parent[p] {
			if in[p] {
				total += cpu[pid]
				break
			}
		}
	}
	_, err = fmt.Fprintf(out, "%.3f\n", total)
	return err
}

// newSession creates the probe's one session (untimed). The service limits
// new sessions per client address (8 a second, 64 at once), and bench.sh's
// journey just before, from the same address, can leave that bucket
// empty: a refusal (429) is waited out, a second at a time, at most 30
// times, rather than ending the whole run.
func newSession(call func(method, path, token string, header map[string]string, body string, want int) ([]byte, error)) ([]byte, error) {
	var err error
	for range 30 {
		var b []byte
		if b, err = call("POST", "/v1/sessions", "", nil, "", http.StatusCreated); err == nil || !strings.Contains(err.Error(), ": 429 ") {
			return b, err
		}
		time.Sleep(time.Second)
	}
	return nil, err
}

func checkout(base string, n int, out io.Writer) error {
	client := &http.Client{Timeout: 30 * time.Second}
	call := func(method, path, token string, header map[string]string, body string, want int) ([]byte, error) {
		req, err := http.NewRequest(method, base+path, bytes.NewReader([]byte(body)))
		if err != nil {
			return nil, err
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		res, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			return nil, err
		}
		if res.StatusCode != want {
			return nil, fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, b)
		}
		return b, nil
	}
	b, err := newSession(call)
	if err != nil {
		return err
	}
	var sess struct{ Token string }
	if err := json.Unmarshal(b, &sess); err != nil {
		return err
	}
	hist := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	for i := range n {
		item := 1 + i%150
		if _, err := call("PUT", fmt.Sprintf("/v1/cart/items/%d", item), sess.Token, nil, `{"quantity": 1}`, http.StatusOK); err != nil {
			return err
		}
		start := time.Now()
		_, err := call("POST", "/v1/orders", sess.Token,
			map[string]string{"Idempotency-Key": fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)},
			`{"customer_name": "Bench", "email": "bench@example.com"}`, http.StatusCreated)
		if err != nil {
			return err
		}
		hist.RecordValue(time.Since(start).Microseconds())
	}
	ms := func(q float64) float64 { return float64(hist.ValueAtQuantile(q)) / 1000 }
	return json.NewEncoder(out).Encode(map[string]any{"count": hist.TotalCount(), "p50_ms": ms(50), "p99_ms": ms(99)})
}
