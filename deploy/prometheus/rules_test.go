package prometheus_test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/perfscale/perfscale/deploy/internal/shopbin"
)

// promtool runs the rule unit tests: the burn-rate alerts fire on a series
// breaking the checkout objective and stay silent on one keeping it.
func TestPromtoolRuleTests(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not installed; .ci/run installs it (apt-get install prometheus)")
		}
		t.Skip("promtool is not installed (apt-get install prometheus)")
	}
	for _, args := range [][]string{{"check", "rules", "rules.yml"}, {"test", "rules", "rules_test.yml"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string
		Rules []struct {
			Record, Alert, Expr, For string
			Labels, Annotations      map[string]string
		}
	}
}

// expressions returns every PromQL expression of the rules and the
// dashboard, by where it is, and the names the rules record.
func expressions(t *testing.T) (exprs map[string]string, recorded map[string]bool) {
	exprs, recorded = map[string]string{}, map[string]bool{}
	raw, err := os.ReadFile("rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(raw, &rf); err != nil {
		t.Fatalf("rules.yml: %v", err)
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			exprs["rules.yml "+g.Name+" "+r.Record+r.Alert] = r.Expr
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	raw, err = os.ReadFile(filepath.Join("..", "grafana", "shop.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ RefID, Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana/shop.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs["grafana/shop.json "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	if len(dash.Panels) == 0 || len(recorded) == 0 {
		t.Fatalf("found %d panels and %d recording rules", len(dash.Panels), len(recorded))
	}
	return exprs, recorded
}

// metricNames parses expr and returns the metric names it selects.
func metricNames(expr string) ([]string, error) {
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names, nil
}

// Every expression parses, and every metric it names is recorded by the
// rules or exported by a running shop (scraped here, on the embedded
// default, after a request has touched the store).
func TestEveryMetricExists(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the shop; skipped with -short")
	}
	exprs, recorded := expressions(t)
	api, admin := shopbin.Start(t, shopbin.Build(t))
	resp, err := http.Get(api + "/v1/menu")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var text expfmt.TextParser
	families, err := text.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	exported := map[string]bool{}
	for name, f := range families {
		exported[name] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_count", "_sum"} {
				exported[name+s] = true
			}
		}
	}
	var missing []string
	for where, expr := range exprs {
		names, err := metricNames(expr)
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", where, expr, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", where, expr)
		}
		for _, n := range names {
			if !recorded[n] && !exported[n] {
				missing = append(missing, where+": "+n)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metrics neither exported by the shop nor recorded by the rules:\n%s", strings.Join(missing, "\n"))
	}
}

// The parser refuses what Prometheus would, so the test above can fail.
func TestMetricNamesRefusesBadPromQL(t *testing.T) {
	if _, err := metricNames(`sum by (route (rate(x[5m]))`); err == nil {
		t.Fatal("unbalanced expression parsed")
	}
	names, err := metricNames(`a / on() b + rate(c_bucket[5m])`)
	if err != nil || strings.Join(names, ",") != "a,b,c_bucket" {
		t.Fatalf("names %v, %v", names, err)
	}
}
