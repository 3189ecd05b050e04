package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/loadlab/report"
)

func writeList(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "list.yaml")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExperimentsRefusesBadInput(t *testing.T) {
	bad := writeList(t, "experiments:\n  - name: x\n    claim: c\n    measure: vibes\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown experiment", []string{"--only", "missing-index,nope"}, `--only: no experiment "nope"; the list has missing-index`},
		{"argument", []string{"http://127.0.0.1:8080"}, `unexpected argument "http://127.0.0.1:8080"`},
		{"missing file", []string{"--file", "/no/such/list.yaml"}, "--file: open /no/such/list.yaml"},
		{"bad file", []string{"--file", bad}, `experiment x: measure "vibes"`},
		{"both outputs on stdout", []string{"--json", "-", "--html", "-"}, "cannot both be -"},
		{"unknown flag", []string{"--colour"}, "flag provided but not defined: -colour"},
		{"bad client", []string{"--client", "curl"}, `unknown --client "curl"`},
		{"missing shop", []string{"--only", "sync-mail", "--shop", "/no/such/shop"}, "--shop: stat /no/such/shop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := loadlab(append([]string{"experiments"}, tt.args...)...)
			if err == nil || exitCode(err) != exitBadInput || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err %v (exit %d), want exit %d, one line with %q", err, exitCode(err), exitBadInput, tt.want)
			}
		})
	}
}

func TestExperimentsListsTheBuiltins(t *testing.T) {
	out, _, err := loadlab("experiments", "--list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"missing-index", "global-lock", "(diagnose, expected contention, about 30s)", "sharding", "wrong-component", "(scaleout, expected efficiency-falls, about 7m16s)", "on a quiet machine, from the settings"} {
		if !strings.Contains(out, want) {
			t.Errorf("--list lacks %q:\n%s", want, out)
		}
	}
}

// A list whose experiments all wait runs nothing and still writes the
// documented JSON; one whose system cannot start exits 3 with the table.
func TestExperimentsWritesJSONAndExitsThreeWhenNotMeasured(t *testing.T) {
	waits := writeList(t, "experiments:\n  - name: shards\n    claim: sharding scales\n    waits: sharding\n")
	out, errOut, err := loadlab("experiments", "--file", waits, "--json", "-")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Experiments []map[string]any `json:"experiments"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	e := doc.Experiments[0]
	if e["name"] != "shards" || e["verdict"] != "waits" || e["holds"] != nil || e["claim"] != "sharding scales" {
		t.Fatalf("%v", e)
	}
	for _, k := range []string{"expected", "without", "with"} {
		if _, ok := e[k]; !ok {
			t.Errorf("JSON lacks %q: %v", k, e)
		}
	}
	if !strings.Contains(errOut, "| shards | sharding scales | – | waits for sharding |") {
		t.Errorf("the table (on stderr with --json -) lacks the row:\n%s", errOut)
	}

	broken := writeList(t, `experiments:
  - name: broken
    claim: c
    expected: performance
    measure: baseline
    path: /
    endpoint: GET /
    without: {serve: "exit 1", url: "http://127.0.0.1:{port}"}
    with: {serve: "exit 1", url: "http://127.0.0.1:{port}"}
`)
	out, _, err = loadlab("experiments", "--file", broken)
	if exitCode(err) != exitNotRun || !strings.Contains(err.Error(), "not measured: broken") {
		t.Fatalf("err %v (exit %d), want exit %d", err, exitCode(err), exitNotRun)
	}
	if !strings.Contains(out, "not measured: without: the system stopped before it answered") {
		t.Errorf("the table does not say why:\n%s", out)
	}
}

// --doc writes the run between the document's markers with where it came
// from, and refuses, before anything runs, a document without them.
// docs/experiments.md keeps them.
func TestExperimentsWritesTheRunIntoTheDoc(t *testing.T) {
	if err := checkDoc(filepath.Join("..", "..", "docs", "experiments.md")); err != nil {
		t.Fatalf("docs/experiments.md cannot take a run: %v", err)
	}
	waits := writeList(t, "experiments:\n  - name: shards\n    claim: sharding scales\n    waits: sharding\n")
	doc := filepath.Join(t.TempDir(), "doc.md")
	const before, after = "# Doc\n\nhand text\n\n", "\n\nmore hand text\n"
	if err := os.WriteFile(doc, []byte(before+report.DocBegin+"\n\nold run\n\n"+report.DocEnd+after), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadlab("experiments", "--file", waits, "--doc", doc); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	out := string(got)
	for _, want := range []string{
		before + report.DocBegin + "\n\nOne run of `loadlab experiments --file " + waits + " --doc " + doc + "` on ",
		"at loadlab commit ", "CPUs", "at a load average of ", "| shards | sharding scales | – | waits for sharding |",
		report.DocEnd + after,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the doc lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "old run") || strings.Contains(out, "(the shop:") {
		t.Errorf("the old run stayed, or a shop that did not run is named:\n%s", out)
	}

	bare := filepath.Join(t.TempDir(), "bare.md")
	if err := os.WriteFile(bare, []byte("# no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = loadlab("experiments", "--file", waits, "--doc", bare)
	if exitCode(err) != exitBadInput || !strings.Contains(err.Error(), "--doc "+bare+": has no line") {
		t.Fatalf("err %v (exit %d), want exit %d naming the missing marker", err, exitCode(err), exitBadInput)
	}
}
