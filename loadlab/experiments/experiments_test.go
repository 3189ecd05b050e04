package experiments

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestTheBuiltinListParses(t *testing.T) {
	l := Builtin()
	for _, want := range []string{"missing-index", "n-plus-one", "global-lock", "local-sessions", "sync-mail", "extra-hops", "vertical-vs-horizontal", "sharding", "wrong-component"} {
		if _, err := l.Select(want); err != nil {
			t.Errorf("the built-in list lacks %s: %v", want, err)
		}
	}
	for _, e := range l.Experiments {
		if e.Waits == "" && (e.With == nil || e.Expected == "") {
			t.Errorf("%s: no with setting or expected verdict", e.Name)
		}
	}
	// The sharded cluster has landed: the sharding rows run on it.
	for _, name := range []string{"sharding", "wrong-component"} {
		e, _ := l.Select(name)
		if e[0].Waits != "" || !strings.Contains(e[0].With.Up+e[0].Without.Up, "--shards") {
			t.Errorf("%s does not run on the sharded cluster: %+v", name, e[0])
		}
	}
}

const good = `
experiments:
  - name: slow
    claim: it is slow
    expected: performance
    measure: baseline
    path: /
    endpoint: GET /
    without: {serve: "a", url: "http://127.0.0.1:{port}"}
    with: {serve: "b", url: "http://127.0.0.1:{port}"}
`

func TestParseRefusesWhatCannotRun(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"not YAML", "experiments: [", "experiments file:"},
		{"empty", "experiments: []", "no experiments"},
		{"unknown field", strings.Replace(good, "path: /", "path: /\n    colour: red", 1), `unknown field "colour" in an experiment`},
		// yaml.v3's errors were a line each, in Go's words ("field colour not
		// found in type experiments.Experiment"); an empty file was "EOF".
		{"two wrong fields", strings.Replace(good, "path: /", "path: /\n    colour: red\n    replicas: many", 1),
			`unknown field "colour" in an experiment; line 9: want a list of whole numbers, got text "many"`},
		{"empty file", "", "experiments file: the file is empty"},
		{"not a map", "- a\n", "experiments file: line 1: want the list (a map with experiments:), got a list"},
		{"no claim", strings.Replace(good, "claim: it is slow", "", 1), "experiment slow: no claim"},
		{"unknown measure", strings.Replace(good, "measure: baseline", "measure: vibes", 1), `measure "vibes"`},
		{"verdict the measure cannot give", strings.Replace(good, "expected: performance", "expected: contention", 1), "a baseline measure gives one of performance, no-change, faster"},
		{"path and scenario", strings.Replace(good, "path: /", "path: /\n    scenario: shop", 1), "a scenario or a path"},
		{"no without", strings.Replace(good, `without: {serve: "a", url: "http://127.0.0.1:{port}"}`, "", 1), "no `without` setting"},
		{"serve without url", strings.Replace(good, `with: {serve: "b", url: "http://127.0.0.1:{port}"}`, `with: {serve: "b"}`, 1), "with: serve needs the url"},
		{"bad duration", strings.Replace(good, "path: /", "path: /\n    slo: soon", 1), `"soon" is not a duration`},
		{"negative warm-up", strings.Replace(good, "path: /", "path: /\n    warmup: -1s", 1), "warmup must not be negative"},
		{"factor not above 1", strings.Replace(good, "path: /", "path: /\n    factor: 0.5", 1), "factor 0.5"},
		{"name with a comma", strings.Replace(good, "name: slow", "name: a,b", 1), "has a comma"},
		{"twice", good + strings.TrimPrefix(good, "\nexperiments:\n"), "used twice"},
		{"replicas need up with {n}", `
experiments:
  - name: out
    claim: c
    expected: scales
    measure: replicas
    scenario: shop
    replicas: [1, 2]
    without: {up: "up", down: "down"}
    with: {up: "up {n}", down: "down"}
`, "without: up must contain {n}"},
		{"vertical needs cpus", `
experiments:
  - name: up
    claim: c
    expected: equal
    measure: vertical
    scenario: shop
    replicas: [1, 2]
    with: {up: "up {n} {cpu}", down: "down"}
`, "needs cpus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err %q, want one line with %q", err, tt.want)
			}
		})
	}
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatalf("the good list: %v", err)
	}
}

func TestSelectKeepsTheListsOrder(t *testing.T) {
	l := Builtin()
	got, err := l.Select("sync-mail, missing-index")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "missing-index" || got[1].Name != "sync-mail" {
		t.Fatalf("got %v", names(got))
	}
	if _, err := l.Select("missing-index,nope"); err == nil || !strings.Contains(err.Error(), `no experiment "nope"; the list has missing-index, n-plus-one`) {
		t.Fatalf("err %v", err)
	}
	if _, err := l.Select(" , "); err == nil {
		t.Fatal("an empty --only was taken")
	}
	all, _ := l.Select("")
	if len(all) != len(l.Experiments) {
		t.Fatalf("no --only kept %d of %d", len(all), len(l.Experiments))
	}
}

func names(es []Experiment) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

// A capacity search's users are the pool its open-loop requests spread
// over (scaleout --users), not the closed loop's 8: an experiment that
// gives none runs scaleout's default (a user a request in flight), one
// that gives them has them at every count.
func TestAScaleoutExperimentSpreadsItsLoadOverItsUsers(t *testing.T) {
	scaleoutList := func(users string) string {
		return `
experiments:
  - name: out
    claim: c
    expected: scales
    measure: scaleout
    scenario: shop
    replicas: [1, 2]` + users + `
    without: {up: "up {n}", down: "down"}
    with: {up: "up {n} --shards {n}", down: "down"}
`
	}
	tests := []struct {
		name, src string
		want      int
	}{
		{"given", scaleoutList("\n    users: 512"), 512},
		{"not given", scaleoutList(""), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Parse([]byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			e := l.Experiments[0]
			r := &Runner{}
			for _, s := range []*Setting{e.Without, e.With} {
				if got := r.scaleoutConfig(e, s, expander{}).Users; got != tt.want {
					t.Errorf("%s: the search spreads its load over %d users, want %d", s.Up, got, tt.want)
				}
			}
		})
	}
	replicas, err := Parse([]byte(strings.Replace(scaleoutList(""), "measure: scaleout", "measure: replicas", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if u := replicas.Experiments[0].Users; u != 8 {
		t.Errorf("a replicas experiment without users runs %d closed-loop users, want the default 8", u)
	}
}

// Sessions on shards are placed by a hash of the session: a capacity
// search on the sharded cluster with a user a request in flight has a
// few dozen sessions a probe, and the shard that drew the most carries
// well over its share (docs/scaleout.md); and each probe makes its
// users' sessions anew, writes on the database the search is sizing,
// more of them the slower the system answers. The built-in rows on the
// sharded cluster spread their load over as many users as
// scripts/bench-shards.sh, whose sizes they take.
func TestTheBuiltinShardedSearchesSpreadTheirLoadOverUsers(t *testing.T) {
	script, err := os.ReadFile("../../scripts/bench-shards.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`users=\$\{USERS:-([0-9]+)\}`).FindSubmatch(script)
	if m == nil {
		t.Fatal("scripts/bench-shards.sh no longer sets its users as users=${USERS:-N}")
	}
	want, _ := strconv.Atoi(string(m[1]))
	seen := 0
	for _, e := range Builtin().Experiments {
		if e.Measure != MeasureScaleout || !strings.Contains(e.With.Up+e.Without.Up, "--shards") {
			continue
		}
		seen++
		if e.Users != want {
			t.Errorf("%s: a capacity search on the sharded cluster over %d users, want bench-shards.sh's %d", e.Name, e.Users, want)
		}
	}
	if seen == 0 {
		t.Fatal("no built-in capacity search on the sharded cluster")
	}
}
