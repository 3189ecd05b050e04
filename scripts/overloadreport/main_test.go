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
