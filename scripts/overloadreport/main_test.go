package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
)

// scrapeText is a scrape of one shop: its CPU so far and its answered
// requests (two routes, two statuses: every one counts).
func scrapeText(t *testing.T, cpu string, menu200, menu503, orders201 string) metrics {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m")
	text := "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total " + cpu + "\n" +
		"# TYPE shop_http_requests_total counter\n" +
		`shop_http_requests_total{code="200",route="GET /v1/menu"} ` + menu200 + "\n" +
		`shop_http_requests_total{code="503",route="GET /v1/menu"} ` + menu503 + "\n" +
		`shop_http_requests_total{code="201",route="POST /v1/orders"} ` + orders201 + "\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return scrape(path)
}

// The CPU a request cost is the CPU between the scrapes over the
// requests answered between them, refusals included, not since the
// shop started; the generator's, its CPU over its completed requests.
func TestCPUPerRequestIsTheCPUBetweenTheScrapesOverTheRequestsBetweenThem(t *testing.T) {
	m0 := scrapeText(t, "3", "1000", "0", "100")
	m1 := scrapeText(t, "5", "5000", "14000", "1000") // 2 s of CPU, 18,900 more answers
	res := load.Result{Requests: 40000, Elapsed: 20 * time.Second, GeneratorCPUCores: 0.5}
	shop, gen := cpuPerRequest(m0, m1, res)
	if want := 105820 * time.Nanosecond; shop != want {
		t.Errorf("shop CPU per answer %v, want %v", shop, want)
	}
	if want := 250 * time.Microsecond; gen != want {
		t.Errorf("generator CPU per request %v, want %v", gen, want)
	}
	if got := micros(shop); got != "106 µs" {
		t.Errorf("written %q, want 106 µs", got)
	}
}

// Without answers between the scrapes (a shop that did not answer
// /metrics) or without requests, a side says nothing rather than 0 or
// a division by zero.
func TestCPUPerRequestWithoutRequestsIsUnknown(t *testing.T) {
	m := scrapeText(t, "3", "1000", "0", "100")
	shop, gen := cpuPerRequest(m, m, load.Result{})
	if shop != 0 || gen != 0 {
		t.Fatalf("got %v and %v, want 0 and 0", shop, gen)
	}
	if micros(shop) != "-" {
		t.Errorf("an unknown cost is written %q, want -", micros(shop))
	}
	shop, _ = cpuPerRequest(nil, nil, load.Result{})
	if shop != 0 {
		t.Errorf("no scrapes: %v, want 0", shop)
	}
}

// The table has the CPU-per-request section, one row per run.
func TestTheTableShowsTheCPUPerRequest(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("capacity.json", `{"capacity_rps": 600}`)
	write("on-3.json", `{"requests": 40000, "elapsed_ns": 20000000000, "generator_cpu_cores": 0.5}`)
	for name, m := range map[string][3]string{"on-3.m0": {"3", "1000", "100"}, "on-3.m1": {"5", "19900", "100"}} {
		write(name, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total "+m[0]+"\n"+
			"# TYPE shop_http_requests_total counter\n"+
			`shop_http_requests_total{code="200",route="GET /v1/menu"} `+m[1]+"\n"+
			`shop_http_requests_total{code="201",route="POST /v1/orders"} `+m[2]+"\n")
	}
	var out bytes.Buffer
	if err := table(dir, &out); err != nil {
		t.Fatal(err)
	}
	if want := "| on | 3× | 106 µs | 250 µs |"; !bytes.Contains(out.Bytes(), []byte(want)) {
		t.Errorf("the table lacks %q:\n%s", want, out.String())
	}
}

// The kernel crossings are the procfs counts between the scrapes over the
// answers between them, summed over the replicas' files; a run without
// them (before overload.sh recorded them) has no row.
func TestCrossingsPerRequestAreTheProcCountsBetweenTheScrapes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.m0.proc.1", "utime_ticks 100\nstime_ticks 40\nclk_tck 100\nsyscr 1000\nsyscw 500\nvoluntary_ctxt_switches 10\nnonvoluntary_ctxt_switches 20\n")
	write("a.m1.proc.1", "utime_ticks 150\nstime_ticks 60\nclk_tck 100\nsyscr 11000\nsyscw 5500\nvoluntary_ctxt_switches 2010\nnonvoluntary_ctxt_switches 4020\n")
	write("a.m0.proc.2", "utime_ticks 0\nstime_ticks 0\nclk_tck 100\nsyscr 0\nsyscw 0\nvoluntary_ctxt_switches 0\nnonvoluntary_ctxt_switches 0\n")
	write("a.m1.proc.2", "utime_ticks 50\nstime_ticks 20\nclk_tck 100\nsyscr 10000\nsyscw 5000\nvoluntary_ctxt_switches 2000\nnonvoluntary_ctxt_switches 4000\n")
	for _, tc := range []struct {
		name     string
		p0, p1   procCounts
		answered float64
		want     crossings
		ok       bool
	}{
		{"two replicas", readProc(filepath.Join(dir, "a.m0.proc")), readProc(filepath.Join(dir, "a.m1.proc")), 10000,
			crossings{user: 100 * time.Microsecond, system: 40 * time.Microsecond, reads: 2, writes: 1, voluntary: 0.4, involuntary: 0.8}, true},
		{"no files", readProc(filepath.Join(dir, "b.m0.proc")), readProc(filepath.Join(dir, "b.m1.proc")), 10000, crossings{}, false},
		{"no answers", readProc(filepath.Join(dir, "a.m0.proc")), readProc(filepath.Join(dir, "a.m1.proc")), 0, crossings{}, false},
	} {
		got, ok := crossingsPerRequest(tc.p0, tc.p1, tc.answered)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
