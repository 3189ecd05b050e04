// Command overloadreport turns the raw results of scripts/overload.sh into
// the tables of docs/reliability.md: `overloadreport capacity FILE` prints
// the capacity a loadlab diagnosis found (req/s, whole), and
// `overloadreport table DIR` prints, per mode and multiple of it, the
// goodput (client side: successful answers; server side: successful
// answers within their route's objective), refusals by shed class, each
// endpoint's latency of its successful answers, the time back to normal
// after the load dropped (from the per-second series of the load that
// followed the drop), the peak resident memory, and the goals at
// 3× and 10× judged run by run (goals.go).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/perfscale/perfscale/loadlab/load"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "overloadreport:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) != 2 {
		return errors.New("usage: overloadreport capacity FILE | overloadreport table DIR")
	}
	switch args[0] {
	case "capacity":
		var d struct {
			CapacityRPS float64 `json:"capacity_rps"`
		}
		if err := readJSON(args[1], &d); err != nil {
			return err
		}
		if d.CapacityRPS <= 0 {
			return fmt.Errorf("%s: the diagnosis found no capacity", args[1])
		}
		fmt.Fprintf(out, "%d\n", int(d.CapacityRPS))
		return nil
	case "table":
		return table(args[1], out)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// objectives are routePlan's (shop/httpapi/routes.go) for the routes the
// shop journey uses, as the histogram's bucket bounds.
var objectives = map[string]float64{
	"GET /v1/menu": 0.05, "GET /v1/items": 0.05, "GET /v1/items/{id}": 0.05,
	"POST /v1/sessions": 0.05, "GET /v1/cart": 0.05, "PUT /v1/cart/items/{id}": 0.05,
	"POST /v1/orders": 0.1, "GET /v1/orders": 0.05,
}

// runFiles names one run: NAME.json is mode-mult, or mode-mult-rK for
// round K of a run with ROUNDS set.
type runFiles struct {
	mode, mult string
	round      int
}

func (r runFiles) name() string {
	if r.round == 0 {
		return r.mode + "-" + r.mult
	}
	return fmt.Sprintf("%s-%s-r%d", r.mode, r.mult, r.round)
}

// findRuns lists the runs in dir by multiple, then mode (off, on,
// adaptive, split, then any other, by name), then round.
func findRuns(dir string) []runFiles {
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	var runs []runFiles
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".json")
		if base == "capacity" || strings.HasSuffix(base, ".after") {
			continue
		}
		parts := strings.Split(base, "-")
		r := runFiles{}
		switch len(parts) {
		case 2:
		case 3:
			k, err := strconv.Atoi(strings.TrimPrefix(parts[2], "r"))
			if err != nil || !strings.HasPrefix(parts[2], "r") {
				continue
			}
			r.round = k
		default:
			continue
		}
		if _, err := strconv.ParseFloat(parts[1], 64); err != nil {
			continue
		}
		r.mode, r.mult = parts[0], parts[1]
		runs = append(runs, r)
	}
	rank := map[string]int{"off": 0, "on": 1, "adaptive": 2, "split": 3}
	sort.Slice(runs, func(i, j int) bool {
		a, b := runs[i], runs[j]
		ma, _ := strconv.ParseFloat(a.mult, 64)
		mb, _ := strconv.ParseFloat(b.mult, 64)
		if ma != mb {
			return ma < mb
		}
		ra, oka := rank[a.mode]
		rb, okb := rank[b.mode]
		if !oka {
			ra = len(rank)
		}
		if !okb {
			rb = len(rank)
		}
		if ra != rb || a.mode != b.mode {
			if ra != rb {
				return ra < rb
			}
			return a.mode < b.mode
		}
		return a.round < b.round
	})
	return runs
}

// row is what the summary of a run with rounds compares.
type row struct {
	ofCapacity, checkoutOK, checkoutP99 float64 // checkoutOK: a share; p99 in ms
}

func table(dir string, out io.Writer) error {
	meta, _ := os.ReadFile(filepath.Join(dir, "meta.txt"))
	capText, _ := os.ReadFile(filepath.Join(dir, "capacity.json"))
	var capacity struct {
		CapacityRPS float64 `json:"capacity_rps"`
		CapacityAt  int     `json:"capacity_concurrency"`
	}
	json.Unmarshal(capText, &capacity) //nolint:errcheck // shown as 0 when missing
	fmt.Fprintf(out, "%s\ncapacity (loadlab diagnose, shop journey, p99 50 ms, admission off): %.0f req/s at %d users\n\n",
		strings.TrimSpace(string(meta)), capacity.CapacityRPS, capacity.CapacityAt)

	runs := findRuns(dir)
	var judged []summary
	rows := map[[2]string][]row{} // by mode and multiple
	var keys [][2]string
	fmt.Fprintln(out, "| admission | load | offered req/s | answered req/s | successes/s | within objective/s (server) | of capacity | refused browsing / cart / checkout | checkout success | checkout p99 | server CPU | generator CPU | back to normal | peak RSS | alive | load avg | generator |")
	fmt.Fprintln(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
	var details, costs, crossings bytes.Buffer
	for _, r := range runs {
		name := r.name()
		var res load.Result
		if err := readJSON(filepath.Join(dir, name+".json"), &res); err != nil {
			return err
		}
		m0, m1 := scrape(filepath.Join(dir, name+".m0")), scrape(filepath.Join(dir, name+".m1"))
		within := m1.withinObjective() - m0.withinObjective()
		secs := res.Elapsed.Seconds()
		if t0, t1 := epoch(filepath.Join(dir, name+".m0.at")), epoch(filepath.Join(dir, name+".m1.at")); t0 > 0 && t1 > t0 {
			secs = t1 - t0 // scraped at the drop: the window the counts cover
		}
		refused := [3]float64{}
		for i, class := range []string{"browsing", "cart", "checkout"} {
			refused[i] = m1.refused(class) - m0.refused(class)
		}
		checkout := endpoint(res, "checkout/2")
		checkoutOK, checkoutP99 := "n/a", "-"
		var rw row
		rw.ofCapacity = within / secs / capacity.CapacityRPS
		if checkout != nil && checkout.Requests > 0 {
			rw.checkoutOK = float64(checkout.Requests-checkout.Errors.Total) / float64(checkout.Requests)
			rw.checkoutP99 = float64(checkout.SuccessLatency.P99.Microseconds()) / 1000
			checkoutOK = fmt.Sprintf("%.1f %%", 100*rw.checkoutOK)
			checkoutP99 = ms(checkout.SuccessLatency.P99)
		}
		k := [2]string{r.mode, r.mult}
		if _, seen := rows[k]; !seen {
			keys = append(keys, k)
		}
		rows[k] = append(rows[k], rw)
		var drop load.Result
		dropErr := readJSON(filepath.Join(dir, name+".after.json"), &drop)
		sm := summary{mode: r.mode, mult: r.mult, round: r.round, ofCapacity: rw.ofCapacity, checkoutOK: -1,
			overloadOK: !res.GeneratorSaturated, dropOK: dropErr == nil && !drop.GeneratorSaturated,
			busyMachine: len(res.Notes) > 0 || len(drop.Notes) > 0,
			alive:       firstLine(filepath.Join(dir, name+".alive")) == "alive"}
		if checkout != nil && checkout.Requests > 0 {
			sm.checkoutOK, sm.checkoutP99 = rw.checkoutOK, checkout.SuccessLatency.P99
		}
		// The load itself, after the warm-up; the drop is silent until
		// its end.
		ph := loadPhase(res)
		silent := silentFor(drop.Stages)
		rssText, _ := os.ReadFile(filepath.Join(dir, name+".rss"))
		from := float64(res.Start.Add(ph.begin).UnixNano()) / 1e9
		sm.mem = memoryOf(parseRSS(string(rssText)), from, from+ph.length.Seconds())
		back := "n/a"
		if dropErr == nil {
			sm.back, sm.recovered, sm.backKnown = recovery(drop.Series, silent)
			switch {
			case !sm.backKnown:
			case sm.recovered:
				back = seconds(sm.back)
			default:
				back = "> " + seconds(sm.back)
			}
		}
		judged = append(judged, sm)
		gen := "ok"
		if res.GeneratorSaturated {
			gen = "saturated"
		}
		if dropErr == nil && drop.GeneratorSaturated {
			gen += "; drop: saturated"
		}
		mode := modeName(r)
		fmt.Fprintf(out, "| %s | %s× | %.0f | %.0f | %.0f | %.0f | %.2f | %.0f / %.0f / %.0f | %s | %s | %.2f | %.2f | %s | %s | %s | %s | %s |\n",
			mode, r.mult, ph.offered, ph.answered, ph.succeeded, within/secs, rw.ofCapacity,
			refused[0], refused[1], refused[2], checkoutOK, checkoutP99,
			(m1.counter("process_cpu_seconds_total")-m0.counter("process_cpu_seconds_total"))/secs, res.GeneratorCPUCores,
			back, fmt.Sprintf("%d MiB", sm.mem.peak/1024), firstLine(filepath.Join(dir, name+".alive")),
			firstLine(filepath.Join(dir, name+".loadavg")), gen)
		shopCost, genCost := cpuPerRequest(m0, m1, res)
		fmt.Fprintf(&costs, "| %s | %s× | %s | %s |\n", mode, r.mult, micros(shopCost), micros(genCost))
		if c, ok := crossingsPerRequest(readProc(filepath.Join(dir, name+".m0.proc")), readProc(filepath.Join(dir, name+".m1.proc")),
			m1.counter("shop_http_requests_total")-m0.counter("shop_http_requests_total")); ok {
			fmt.Fprintf(&crossings, "| %s | %s× | %s | %s | %.1f | %.1f | %.2f | %.2f |\n", mode, r.mult, micros(c.user), micros(c.system),
				c.reads, c.writes, c.voluntary, c.involuntary)
		}
		fmt.Fprintf(&details, "\n%s×, admission %s: successful answers' latency per endpoint (p50 / p99), errors by status (the whole run, its %s warm-up included)\n\n", r.mult, mode, seconds(ph.begin))
		fmt.Fprintln(&details, "| endpoint | requests | p50 | p99 | errors |")
		fmt.Fprintln(&details, "| --- | ---: | ---: | ---: | --- |")
		for _, ep := range res.Endpoints {
			fmt.Fprintf(&details, "| %s | %d | %s | %s | %s |\n", ep.Name, ep.Requests,
				ms(ep.SuccessLatency.P50), ms(ep.SuccessLatency.P99), statuses(ep))
		}
		for _, why := range append(res.SaturationReasons, res.Notes...) {
			fmt.Fprintf(&details, "\nloadlab: %s\n", why)
		}
		if dropErr == nil {
			fmt.Fprintf(&details, "\nloadlab (the drop): its generator started %+.1f ms after the overload's, so the load fell to half the capacity that long after the overload's end, %s after its start (a negative figure: before it, the two overlapping)\n",
				float64(drop.Start.Sub(res.Start).Microseconds())/1000, seconds(silent))
		}
		for _, why := range append(drop.SaturationReasons, drop.Notes...) {
			fmt.Fprintf(&details, "\nloadlab (the drop): %s\n", why)
		}
	}
	if costs.Len() > 0 {
		fmt.Fprintln(out, "\nCPU per request: the shop's (its process CPU between the scrapes over the requests it answered meanwhile, refusals included) and loadlab's (the overload's generator: its CPU over the requests it completed, the warm-up's included). The arithmetic of the set-up (scripts/overload.sh, docs/reliability.md) rests on these.")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "| admission | load | shop CPU per answer | generator CPU per request |")
		fmt.Fprintln(out, "| --- | --- | ---: | ---: |")
		out.Write(costs.Bytes()) //nolint:errcheck // reported below
	}
	if crossings.Len() > 0 {
		fmt.Fprintln(out, "\nWhere the shop's CPU went, per answer (refusals included) between the scrapes, from procfs (overload.sh's NAME.m0.proc.K and NAME.m1.proc.K): user and system CPU, read and write system calls (socket receives and sends included), and its threads' voluntary (blocked: the poller, a lock) and involuntary (preempted: the quota's throttling) context switches. Callgrind counts only the user part.")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "| admission | load | user CPU | system CPU | reads | writes | voluntary switches | involuntary switches |")
		fmt.Fprintln(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
		out.Write(crossings.Bytes()) //nolint:errcheck // reported below
	}
	medians(out, keys, rows)
	goals(out, dir, judged)
	_, err := out.Write(details.Bytes())
	return err
}

// cpuPerRequest is the CPU a request cost the shop (its process CPU
// between the scrapes over the requests it answered meanwhile, every
// route and status) and the generator (its CPU over the requests it
// completed); 0 when a side cannot say.
func cpuPerRequest(m0, m1 metrics, res load.Result) (shop, generator time.Duration) {
	if answered := m1.counter("shop_http_requests_total") - m0.counter("shop_http_requests_total"); answered > 0 {
		cpu := m1.counter("process_cpu_seconds_total") - m0.counter("process_cpu_seconds_total")
		shop = time.Duration(max(cpu, 0) / answered * float64(time.Second))
	}
	if res.Requests > 0 {
		generator = time.Duration(res.GeneratorCPUCores * res.Elapsed.Seconds() / float64(res.Requests) * float64(time.Second))
	}
	return shop, generator
}

// procCounts are one moment's procfs counts of the shop's processes
// (overload.sh's proc_counts), summed over the replicas: "name value"
// lines.
type procCounts map[string]float64

// readProc reads path.1, path.2... (one file per replica); nil when there
// is none.
func readProc(path string) procCounts {
	files, _ := filepath.Glob(path + ".[0-9]*")
	if len(files) == 0 {
		return nil
	}
	c := procCounts{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
			v, err := strconv.ParseFloat(value, 64)
			if !ok || err != nil {
				continue
			}
			if name == "clk_tck" {
				c[name] = v // the same for every replica
				continue
			}
			c[name] += v
		}
	}
	return c
}

// crossings is where a request's CPU went in the shop, per answer.
type crossings struct {
	user, system                          time.Duration
	reads, writes, voluntary, involuntary float64
}

// crossingsPerRequest divides the counts between the scrapes by the
// answers between them; false when either scrape or the answers are
// missing, or the clock tick is unknown.
func crossingsPerRequest(p0, p1 procCounts, answered float64) (crossings, bool) {
	tck := p1["clk_tck"]
	if p0 == nil || p1 == nil || answered <= 0 || tck <= 0 {
		return crossings{}, false
	}
	per := func(name string) float64 { return max(p1[name]-p0[name], 0) / answered }
	ticks := func(name string) time.Duration { return time.Duration(per(name) / tck * float64(time.Second)) }
	return crossings{
		user: ticks("utime_ticks"), system: ticks("stime_ticks"),
		reads: per("syscr"), writes: per("syscw"),
		voluntary: per("voluntary_ctxt_switches"), involuntary: per("nonvoluntary_ctxt_switches"),
	}, true
}

// micros writes a CPU cost in microseconds ("-" when unknown).
func micros(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(d.Nanoseconds())/1000, 'f', 0, 64) + " µs"
}

// medians compares the modes run in rounds: per multiple and mode, the
// median over the rounds (and the range) of the share of the capacity
// served within objective, of the checkouts that succeeded, and of the
// admitted checkouts' p99.
func medians(out io.Writer, keys [][2]string, rows map[[2]string][]row) {
	rounds := false
	for _, k := range keys {
		rounds = rounds || len(rows[k]) > 1
	}
	if !rounds {
		return
	}
	fmt.Fprintln(out, "\nSide by side, median over the rounds (lowest-highest):")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| load | admission | rounds | of capacity | checkout success | checkout p99 |")
	fmt.Fprintln(out, "| --- | --- | ---: | ---: | ---: | ---: |")
	for _, k := range keys {
		rs := rows[k]
		pick := func(f func(row) float64) (lo, mid, hi float64) {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			sort.Float64s(v)
			n := len(v)
			mid = v[n/2]
			if n%2 == 0 {
				mid = (v[n/2-1] + v[n/2]) / 2
			}
			return v[0], mid, v[n-1]
		}
		cl, cm, ch := pick(func(r row) float64 { return r.ofCapacity })
		ol, om, oh := pick(func(r row) float64 { return 100 * r.checkoutOK })
		pl, pm, ph := pick(func(r row) float64 { return r.checkoutP99 })
		fmt.Fprintf(out, "| %s× | %s | %d | %.2f (%.2f-%.2f) | %.1f %% (%.1f-%.1f) | %.1f ms (%.1f-%.1f) |\n",
			k[1], k[0], len(rs), cm, cl, ch, om, ol, oh, pm, pl, ph)
	}
}

func endpoint(res load.Result, name string) *load.Endpoint {
	for i := range res.Endpoints {
		if res.Endpoints[i].Name == name {
			return &res.Endpoints[i]
		}
	}
	return nil
}

func statuses(ep load.Endpoint) string {
	if ep.Errors.Total == 0 {
		return "none"
	}
	var parts []string
	for code, n := range ep.Errors.ByStatus {
		parts = append(parts, fmt.Sprintf("%s: %d", code, n))
	}
	sort.Strings(parts)
	if other := ep.Errors.Timeout + ep.Errors.Connection + ep.Errors.Other; other > 0 {
		parts = append(parts, fmt.Sprintf("timeout %d, connection %d, other %d", ep.Errors.Timeout, ep.Errors.Connection, ep.Errors.Other))
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
}

func firstLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "n/a"
	}
	return strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
}

// metrics are the scrapes of one moment: one per replica.
type metrics []map[string]*dto.MetricFamily

// scrape reads path, or, for a cluster, path.1, path.2... (one file per
// replica; the counts are summed).
func scrape(path string) metrics {
	files, _ := filepath.Glob(path + ".[0-9]*")
	if len(files) == 0 {
		files = []string{path}
	}
	var ms metrics
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		mf, err := parser.TextToMetricFamilies(bytes.NewReader(b))
		if err != nil {
			continue
		}
		ms = append(ms, mf)
	}
	return ms
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// withinObjective counts the successful answers each route gave within
// its objective (a bucket bound of the latency histogram).
func (ms metrics) withinObjective() float64 {
	total := 0.0
	for _, m := range ms.series("shop_http_request_duration_seconds") {
		obj, ok := objectives[label(m, "route")]
		if !ok || label(m, "code") != "2xx" {
			continue
		}
		for _, b := range m.GetHistogram().GetBucket() {
			if math.Abs(b.GetUpperBound()-obj) < 1e-9 {
				total += float64(b.GetCumulativeCount())
			}
		}
	}
	return total
}

// series are the family's series of every replica.
func (ms metrics) series(family string) []*dto.Metric {
	var out []*dto.Metric
	for _, mf := range ms {
		if f := mf[family]; f != nil {
			out = append(out, f.GetMetric()...)
		}
	}
	return out
}

// counter sums a counter (or a gauge: process_cpu_seconds_total is one
// of those in some exporters) over the replicas.
func (ms metrics) counter(family string) float64 {
	total := 0.0
	for _, m := range ms.series(family) {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}

func (ms metrics) refused(class string) float64 {
	total := 0.0
	for _, m := range ms.series("shop_admission_refused_total") {
		if label(m, "class") == class {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

func modeName(r runFiles) string {
	if r.round > 0 {
		return fmt.Sprintf("%s (round %d)", r.mode, r.round)
	}
	return r.mode
}

// epoch reads a moment the script wrote (seconds since the epoch); 0
// when missing.
func epoch(path string) float64 {
	f, err := strconv.ParseFloat(firstLine(path), 64)
	if err != nil {
		return 0
	}
	return f
}

// unloadedP99 is the admitted checkouts' p99 of one user's run in the
// mode (and round), 0 when there is none.
func unloadedP99(dir string, r runFiles) time.Duration {
	name := r.mode + "-1user"
	if r.round > 0 {
		name = fmt.Sprintf("%s-1user-r%d", r.mode, r.round)
	}
	var res load.Result
	if err := readJSON(filepath.Join(dir, name+".json"), &res); err != nil {
		return 0
	}
	if ep := endpoint(res, "checkout/2"); ep != nil {
		return ep.SuccessLatency.P99
	}
	return 0
}

// goals prints the verdict of each run at 3× and 10× on the goals.
func goals(out io.Writer, dir string, judged []summary) {
	var lines []string
	for _, s := range judged {
		switch s.mult {
		case "3":
			lines = append(lines, judge3x(s, unloadedP99(dir, runFiles{mode: s.mode, mult: s.mult, round: s.round})))
		case "10":
			lines = append(lines, judge10x(s))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(out, "\nGoals (issue 19), run by run:")
	fmt.Fprintln(out)
	for _, l := range lines {
		fmt.Fprintln(out, "- "+l)
	}
}
