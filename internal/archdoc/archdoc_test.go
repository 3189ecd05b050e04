package archdoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The repository's diagram against `go list -json ./...`: the test that
// keeps docs/architecture.md true. A package added without its line, an
// import added without its arrow or an arrow left after its import went
// fails here, naming it.
func TestArchitectureDiagramMatchesTheImports(t *testing.T) {
	root := moduleRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(string(doc))
	if err != nil {
		t.Fatalf("docs/architecture.md: %v", err)
	}
	pkgs := modulePackages(t, root)
	if len(pkgs) < 2 {
		t.Fatalf("go list found %d packages in %s; expected the whole module", len(pkgs), root)
	}
	for _, p := range Check(d, pkgs) {
		t.Errorf("docs/architecture.md: %s", p)
	}
}

// moduleRoot is the directory of the module's go.mod, asked of the go
// command, so the test does not depend on where this package sits.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod)
}

// listedPackage is the part of `go list -json` the comparison reads.
type listedPackage struct {
	ImportPath string
	Module     *struct{ Path string }
	GoFiles    []string
	Imports    []string
}

// modulePackages lists the module's packages with the module's packages
// each imports directly (not in tests). A directory holding only _test.go
// files is no package anything can import, so it is not drawn.
func modulePackages(t *testing.T, root string) []Package {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -json ./...: %v\n%s", err, stderr.Bytes())
	}
	pkgs, err := fromGoList(out)
	if err != nil {
		t.Fatalf("go list -json ./...: %v", err)
	}
	return pkgs
}

// fromGoList turns go list's stream of JSON objects into packages named by
// their paths inside the module.
func fromGoList(out []byte) ([]Package, error) {
	var pkgs []Package
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var lp listedPackage
		if err := dec.Decode(&lp); errors.Is(err, io.EOF) {
			return pkgs, nil
		} else if err != nil {
			return nil, err
		}
		if lp.Module == nil || len(lp.GoFiles) == 0 {
			continue
		}
		p := Package{Path: inModule(lp.Module.Path, lp.ImportPath)}
		for _, imp := range lp.Imports {
			if imp == lp.Module.Path || strings.HasPrefix(imp, lp.Module.Path+"/") {
				p.Imports = append(p.Imports, inModule(lp.Module.Path, imp))
			}
		}
		pkgs = append(pkgs, p)
	}
}

func inModule(module, importPath string) string {
	if importPath == module {
		return "."
	}
	return strings.TrimPrefix(importPath, module+"/")
}

func TestFromGoListKeepsTheModulesPackagesAndImports(t *testing.T) {
	out := []byte(`{"ImportPath":"example.com/m/a","Module":{"Path":"example.com/m"},"GoFiles":["a.go"],"Imports":["example.com/m/b","fmt","example.com/mother/x"]}
{"ImportPath":"example.com/m/b","Module":{"Path":"example.com/m"},"GoFiles":["b.go"]}
{"ImportPath":"example.com/m/onlytests","Module":{"Path":"example.com/m"},"GoFiles":null}`)
	got, err := fromGoList(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []Package{{Path: "a", Imports: []string{"b"}}, {Path: "b"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// block wraps diagram lines the way docs/architecture.md holds them.
func block(lines ...string) string {
	return "# Architecture\n\nprose -> not a diagram\n\n" + BeginMarker + "\n```text\n" +
		strings.Join(lines, "\n") + "\n```\n" + EndMarker + "\n\nmore prose\n"
}

func TestParseReadsPackagesArrowsAndContinuations(t *testing.T) {
	doc := block(
		"# the domain and its adapters",
		"cmd/shop     -> shop/httpapi, shop   # wires",
		"             -> shop/cache",
		"",
		"shop/httpapi -> shop",
		"shop/cache->shop",
		"shop                                 # imports none of the module",
	)
	got, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := Diagram{
		"cmd/shop":     {"shop/httpapi", "shop", "shop/cache"},
		"shop/httpapi": {"shop"},
		"shop/cache":   {"shop"},
		"shop":         nil,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestParseRefusesWhatIsNoDiagram(t *testing.T) {
	tests := []struct {
		name, doc, wantErr string
	}{
		{"no block", "# Architecture\n\nno diagram here\n", "no diagram"},
		{"unclosed block", BeginMarker + "\nshop\n", "no closing line"},
		{"end before begin", EndMarker + "\n" + BeginMarker + "\nshop\n" + EndMarker + "\n", "line 1: " + EndMarker + " without"},
		{"two blocks", block("shop") + block("shop"), "exactly one diagram"},
		{"empty block", block("# nothing drawn"), "draws no package"},
		{"continuation first", block("-> shop"), "continues no package"},
		{"words for a package", block("the shop -> shop"), "expected a package path"},
		{"empty target", block("cmd/shop -> shop, , shop/cache"), "separated by commas"},
		{"chained arrows", block("cmd/shop -> shop/httpapi -> shop"), "separated by commas"},
		{"drawn twice", block("shop/cache -> shop", "shop", "shop/cache -> shop"), "shop/cache is drawn twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse(tt.doc)
			if err == nil {
				t.Fatalf("Parse accepted it: %v", d)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not say %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseNamesTheLineOfAnError(t *testing.T) {
	_, err := Parse(block("shop", "cmd/shop -> shop,"))
	// Line 1 is the title; the block's first diagram line is line 7, the
	// faulty one line 8.
	if err == nil || !strings.HasPrefix(err.Error(), "line 8: ") {
		t.Errorf("error %v, want it to start with line 8", err)
	}
}

func TestCheckNamesEveryDifference(t *testing.T) {
	module := []Package{
		{Path: "cmd/shop", Imports: []string{"shop", "shop/httpapi"}},
		{Path: "shop/httpapi", Imports: []string{"shop"}},
		{Path: "shop"},
	}
	tests := []struct {
		name    string
		diagram []string
		want    []string
	}{
		{
			name:    "true to the code",
			diagram: []string{"cmd/shop -> shop/httpapi, shop", "shop/httpapi -> shop", "shop"},
		},
		{
			name:    "a package added but not drawn",
			diagram: []string{"cmd/shop -> shop/httpapi, shop", "shop"},
			want:    []string{"package shop/httpapi is not drawn: add a line for it (with its arrows) to the diagram"},
		},
		{
			name:    "an arrow drawn that is no import",
			diagram: []string{"cmd/shop -> shop/httpapi, shop, shop/sqlite", "shop/httpapi -> shop", "shop -> shop/httpapi"},
			want: []string{
				"arrow cmd/shop -> shop/sqlite is drawn but cmd/shop does not import shop/sqlite",
				"arrow shop -> shop/httpapi is drawn but shop does not import shop/httpapi",
			},
		},
		{
			name:    "an import not drawn",
			diagram: []string{"cmd/shop -> shop/httpapi", "shop/httpapi -> shop", "shop"},
			want:    []string{"arrow cmd/shop -> shop is missing: cmd/shop imports shop"},
		},
		{
			name:    "a package drawn that is gone",
			diagram: []string{"cmd/shop -> shop/httpapi, shop", "shop/httpapi -> shop", "shop", "shop/orders -> shop"},
			want:    []string{"package shop/orders is drawn but is no package of the module (renamed or removed?)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse(block(tt.diagram...))
			if err != nil {
				t.Fatal(err)
			}
			got := Check(d, module)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Check:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
