package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// finding builds one govulncheck JSON finding; pkg "" is a module-level one.
func findingJSON(id, module, version, pkg string) string {
	trace := map[string]string{"module": module, "version": version}
	if pkg != "" {
		trace["package"] = pkg
	}
	b, _ := json.Marshal(map[string]any{"finding": map[string]any{"osv": id, "fixed_version": "v9", "trace": []any{trace}}})
	return string(b)
}

func TestJudge(t *testing.T) {
	stdlib := findingJSON("GO-1", "stdlib", "v1.26.8", "") + findingJSON("GO-1", "stdlib", "v1.26.8", "net/http")
	imported := findingJSON("GO-2", "example.com/m", "v1.0.0", "example.com/m/p")
	required := findingJSON("GO-3", "example.com/r", "v1.0.0", "")
	for _, tc := range []struct {
		name, input, stdlibMode string
		fails                   bool
		summary                 string
	}{
		{"nothing", `{"config": {}}`, "report", false, "0 in imported modules' packages, 0 in the standard library, 0 in modules"},
		{"standard library reported", stdlib, "report", false, "0 in imported modules' packages, 1 in the standard library"},
		{"standard library failing", stdlib, "fail", true, "1 in the standard library"},
		{"an imported module's package fails", imported + stdlib, "report", true, "1 in imported modules' packages, 1 in the standard library"},
		{"a module required, not imported", required, "report", false, "1 in modules required but not imported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			err := run([]string{"judge", "-stdlib", tc.stdlibMode}, strings.NewReader(tc.input), &out)
			if (err != nil) != tc.fails {
				t.Fatalf("error %v, want failing %v\n%s", err, tc.fails, out.String())
			}
			if !strings.Contains(out.String(), tc.summary) {
				t.Fatalf("output lacks %q:\n%s", tc.summary, out.String())
			}
		})
	}
	if err := run([]string{"judge"}, strings.NewReader(`{"finding": `), &strings.Builder{}); err == nil {
		t.Fatal("a cut stream was judged")
	}
	if err := run([]string{"judge", "-stdlib", "ignore"}, strings.NewReader(""), &strings.Builder{}); err == nil {
		t.Fatal("-stdlib ignore was taken")
	}
}

func TestIndex(t *testing.T) {
	osv := t.TempDir()
	entries := map[string]string{
		"GO-2026-0001": `{"id": "GO-2026-0001", "modified": "0001-01-01T00:00:00Z", "affected": [{"package": {"name": "stdlib"}}, {"package": {"name": "toolchain"}}]}`,
		"GO-2026-0002": `{"id": "GO-2026-0002", "modified": "0001-01-01T00:00:00Z", "affected": [{"package": {"name": "example.com/m"}}, {"package": {"name": "example.com/m"}}]}`,
	}
	for id, e := range entries {
		if err := os.WriteFile(filepath.Join(osv, id+".json"), []byte(e), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	var stdout strings.Builder
	if err := run([]string{"index", "-version", "v0.0.0-20261105234957-e22db6528018", osv, out}, nil, &stdout); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "2 entries, snapshot of 2026-11-05") {
		t.Fatalf("index said %q", stdout.String())
	}
	var db map[string]string
	readJSON(t, filepath.Join(out, "index", "db.json"), &db)
	if db["modified"] != "2026-11-05T23:49:57Z" {
		t.Fatalf("db.json %v", db)
	}
	var modules []moduleMeta
	readJSON(t, filepath.Join(out, "index", "modules.json"), &modules)
	got := map[string]int{}
	for _, m := range modules {
		got[m.Path] = len(m.Vulns)
	}
	if len(got) != 3 || got["stdlib"] != 1 || got["toolchain"] != 1 || got["example.com/m"] != 1 {
		t.Fatalf("modules index %v, want stdlib, toolchain and example.com/m with one entry each", got)
	}
	if _, err := os.Stat(filepath.Join(out, "ID", "GO-2026-0002.json")); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(filepath.Join(osv, "GO-2026-0003.json"), []byte(`{"id": "GO-2026-9999"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"index", "-version", "v0.0.0-20261105234957-e22db6528018", osv, t.TempDir()}, nil, &stdout); err == nil {
		t.Fatal("an entry under another id's name was indexed")
	}
	if err := run([]string{"index", "-version", "v1.2.3", osv, t.TempDir()}, nil, &stdout); err == nil {
		t.Fatal("a release version was taken for a pseudo-version")
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}
