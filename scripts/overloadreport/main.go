// Command overloadreport turns the raw results of scripts/overload.sh into
// the tables of docs/reliability.md: `overloadreport capacity FILE` prints
// the capacity a loadlab diagnosis found (req/s, whole), and
// `overloadreport table DIR` prints, per mode and multiple of it, the
// goodput (client side: successful answers; server side: successful
// answers within their route's objective), refusals by shed class, each
// endpoint's latency of its successful answers, the time back to normal
// after the load dropped, and the peak resident memory.
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

// normal is the journey's latency objective: a second of the run after
// the drop is back to normal when its p99 is within it.
const normal = 50 * time.Millisecond

type runFiles struct {
	mode, mult string
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

	var runs []runFiles
	for _, mode := range []string{"off", "on"} {
		for _, mult := range []string{"0.5", "1", "2", "3", "10"} {
			if _, err := os.Stat(filepath.Join(dir, mode+"-"+mult+".json")); err == nil {
				runs = append(runs, runFiles{mode, mult})
			}
		}
	}
	fmt.Fprintln(out, "| admission | load | offered req/s | answered req/s | successes/s | within objective/s (server) | of capacity | refused browsing / cart / checkout | checkout success | back to normal | peak RSS | alive | load avg | generator |")
	fmt.Fprintln(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | --- | --- |")
	var details bytes.Buffer
	for _, r := range runs {
		name := r.mode + "-" + r.mult
		var res load.Result
		if err := readJSON(filepath.Join(dir, name+".json"), &res); err != nil {
			return err
		}
		m0, m1 := scrape(filepath.Join(dir, name+".m0")), scrape(filepath.Join(dir, name+".m1"))
		within := m1.withinObjective() - m0.withinObjective()
		secs := res.Elapsed.Seconds()
		refused := [3]float64{}
		for i, class := range []string{"browsing", "cart", "checkout"} {
			refused[i] = m1.refused(class) - m0.refused(class)
		}
		checkout := endpoint(res, "checkout/2")
		checkoutOK := "n/a"
		if checkout != nil && checkout.Requests > 0 {
			checkoutOK = fmt.Sprintf("%.1f %%", 100*float64(checkout.Requests-checkout.Errors.Total)/float64(checkout.Requests))
		}
		gen := "ok"
		if res.GeneratorSaturated {
			gen = "saturated"
		}
		fmt.Fprintf(out, "| %s | %s× | %.0f | %.0f | %.0f | %.0f | %.2f | %.0f / %.0f / %.0f | %s | %s | %s | %s | %s | %s |\n",
			r.mode, r.mult, res.Rate, res.ThroughputRPS, res.GoodputRPS, within/secs, within/secs/capacity.CapacityRPS,
			refused[0], refused[1], refused[2], checkoutOK, backToNormal(filepath.Join(dir, name+".after.json")),
			peakRSS(filepath.Join(dir, name+".rss")), firstLine(filepath.Join(dir, name+".alive")),
			firstLine(filepath.Join(dir, name+".loadavg")), gen)
		fmt.Fprintf(&details, "\n%s×, admission %s: successful answers' latency per endpoint (p50 / p99), errors by status\n\n", r.mult, r.mode)
		fmt.Fprintln(&details, "| endpoint | requests | p50 | p99 | errors |")
		fmt.Fprintln(&details, "| --- | ---: | ---: | ---: | --- |")
		for _, ep := range res.Endpoints {
			fmt.Fprintf(&details, "| %s | %d | %s | %s | %s |\n", ep.Name, ep.Requests,
				ms(ep.SuccessLatency.P50), ms(ep.SuccessLatency.P99), statuses(ep))
		}
		for _, why := range append(res.SaturationReasons, res.Notes...) {
			fmt.Fprintf(&details, "\nloadlab: %s\n", why)
		}
	}
	_, err := out.Write(details.Bytes())
	return err
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

// backToNormal is how long after the load dropped (the start of the run at
// half the capacity) its per-second p99 stayed within the objective for
// good.
func backToNormal(path string) string {
	var res load.Result
	if err := readJSON(path, &res); err != nil || len(res.Series) == 0 {
		return "n/a"
	}
	last := -1
	for i, s := range res.Series {
		if s.Requests > 0 && (s.P99 > normal || s.Errors > 0) {
			last = i
		}
	}
	if last == len(res.Series)-1 {
		return fmt.Sprintf("> %d s", len(res.Series))
	}
	return fmt.Sprintf("%d s", last+1)
}

func peakRSS(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "n/a"
	}
	peak := 0
	for _, f := range strings.Fields(string(b)) {
		if kb, err := strconv.Atoi(f); err == nil && kb > peak {
			peak = kb
		}
	}
	return fmt.Sprintf("%d MiB", peak/1024)
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

func (ms metrics) refused(class string) float64 {
	total := 0.0
	for _, m := range ms.series("shop_admission_refused_total") {
		if label(m, "class") == class {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}
