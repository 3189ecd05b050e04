// Command vulncheck is the vulnerability step of .ci/run (scripts/security.sh),
// which cannot reach the public vulnerability service from these machines:
//
//	vulncheck index -version V OSVDIR OUTDIR
//
// writes, from a folder of OSV entries (the data/osv of a pinned snapshot
// of the golang.org/x/vulndb module, at pseudo-version V), the database
// govulncheck reads with -db file://OUTDIR (index/db.json,
// index/modules.json, ID/<id>.json). The entries in the module carry no
// dates (their "modified" is the zero time: the public service sets it
// when it publishes), so the database's date is the commit time in V.
//
//	vulncheck judge [-stdlib report|fail] < govulncheck.json
//
// reads govulncheck -format json, prints one line per vulnerability it
// found (the standard library's and modules' alike, at the package level
// where the code imports a vulnerable package, at the module level where it
// only requires the module), and exits 1 if a module's vulnerable package
// is imported. Findings in the standard library are reported and, with
// -stdlib report (the default), do not fail: they are fixed by a newer Go
// toolchain, not by this repository's code or go.mod.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "vulncheck:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: vulncheck index OSVDIR OUTDIR | vulncheck judge [-stdlib report|fail] < govulncheck.json")
	}
	switch args[0] {
	case "index":
		fs := flag.NewFlagSet("index", flag.ContinueOnError)
		version := fs.String("version", "", "the golang.org/x/vulndb pseudo-version the entries come from")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 2 {
			return errors.New("usage: vulncheck index -version V OSVDIR OUTDIR")
		}
		modified, err := pseudoVersionTime(*version)
		if err != nil {
			return err
		}
		n, err := writeIndex(fs.Arg(0), fs.Arg(1), modified)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "vulncheck: %d entries, snapshot of %s\n", n, modified.Format(time.DateOnly))
		return nil
	case "judge":
		fs := flag.NewFlagSet("judge", flag.ContinueOnError)
		stdlib := fs.String("stdlib", "report", "what a standard library finding does: report or fail")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *stdlib != "report" && *stdlib != "fail" {
			return fmt.Errorf("-stdlib %q: want report or fail", *stdlib)
		}
		return judge(stdin, stdout, *stdlib == "fail")
	}
	return fmt.Errorf("unknown command %q: want index or judge", args[0])
}

// osvEntry is what the index needs of an OSV entry.
type osvEntry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Summary  string    `json:"summary"`
	Affected []struct {
		Package struct {
			Name string `json:"name"` // a module path, or stdlib or toolchain
		} `json:"package"`
	} `json:"affected"`
}

// moduleVuln leaves out the index's optional "fixed" version: govulncheck
// then reads every entry of a module it uses and checks the version
// against the entry's ranges itself, which is exact, only a little slower.
type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
}

type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

// pseudoVersionTime is the commit time in a pseudo-version
// (vX.Y.Z-yyyymmddhhmmss-abcdefabcdef).
func pseudoVersionTime(v string) (time.Time, error) {
	parts := strings.Split(v, "-")
	if len(parts) < 3 {
		return time.Time{}, fmt.Errorf("-version %q is not a pseudo-version", v)
	}
	t, err := time.Parse("20060102150405", parts[len(parts)-2])
	if err != nil {
		return time.Time{}, fmt.Errorf("-version %q is not a pseudo-version: %w", v, err)
	}
	return t, nil
}

// writeIndex lays out the v1 database (go.dev/security/vuln/database#api)
// of the entries in osvDir under outDir, dated modified.
func writeIndex(osvDir, outDir string, modified time.Time) (n int, err error) {
	files, err := filepath.Glob(filepath.Join(osvDir, "*.json"))
	if err != nil || len(files) == 0 {
		return 0, fmt.Errorf("no OSV entries in %s (%v)", osvDir, err)
	}
	if err := os.MkdirAll(filepath.Join(outDir, "ID"), 0o755); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Join(outDir, "index"), 0o755); err != nil {
		return 0, err
	}
	modules := map[string]*moduleMeta{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		var e osvEntry
		if err := json.Unmarshal(b, &e); err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		if filepath.Base(f) != e.ID+".json" {
			return 0, fmt.Errorf("%s holds entry %q", f, e.ID)
		}
		for _, a := range e.Affected {
			m := modules[a.Package.Name]
			if m == nil {
				m = &moduleMeta{Path: a.Package.Name}
				modules[a.Package.Name] = m
			}
			if len(m.Vulns) == 0 || m.Vulns[len(m.Vulns)-1].ID != e.ID {
				m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified})
			}
		}
		if err := os.WriteFile(filepath.Join(outDir, "ID", e.ID+".json"), b, 0o644); err != nil {
			return 0, err
		}
	}
	list := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		list = append(list, m)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Path < list[j].Path })
	if err := writeJSON(filepath.Join(outDir, "index", "modules.json"), list); err != nil {
		return 0, err
	}
	err = writeJSON(filepath.Join(outDir, "index", "db.json"), map[string]time.Time{"modified": modified})
	return len(files), err
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// message is one object of govulncheck's JSON stream; only the entries
// and findings matter here.
type message struct {
	OSV     *osvEntry `json:"osv"`
	Finding *struct {
		OSV          string `json:"osv"`
		FixedVersion string `json:"fixed_version"`
		Trace        []struct {
			Module  string `json:"module"`
			Version string `json:"version"`
			Package string `json:"package"`
		} `json:"trace"`
	} `json:"finding"`
}

// finding is one vulnerability at the most precise level govulncheck
// reported it.
type finding struct {
	id, module, version, pkg, fixed, summary string
}

func judge(r io.Reader, w io.Writer, failOnStdlib bool) error {
	found, err := readFindings(r)
	if err != nil {
		return err
	}
	var imported, stdlib, required int
	for _, f := range found {
		where, verdict := "module "+f.module+"@"+f.version, "required, not imported: reported"
		switch {
		case f.module == "stdlib" && f.pkg != "":
			stdlib++
			where, verdict = f.pkg+" (Go "+f.version+")", "standard library: reported, fixed by a newer toolchain"
			if failOnStdlib {
				verdict = "standard library: FAILS"
			}
		case f.pkg != "":
			imported++
			where, verdict = f.pkg+" in "+f.module+"@"+f.version, "imported: FAILS"
		default:
			required++
		}
		fixed := f.fixed
		if fixed == "" {
			fixed = "no fix"
		}
		fmt.Fprintf(w, "%s  %s  fixed in %s  [%s]  %s\n", f.id, where, fixed, verdict, f.summary)
	}
	fmt.Fprintf(w, "vulncheck: %d in imported modules' packages, %d in the standard library, %d in modules required but not imported\n", imported, stdlib, required)
	failing := imported
	if failOnStdlib {
		failing += stdlib
	}
	if failing > 0 {
		return fmt.Errorf("%d vulnerabilities in imported packages fail the check", failing)
	}
	return nil
}

// readFindings keeps, per vulnerability, its package-level finding over its
// module-level one.
func readFindings(r io.Reader) ([]finding, error) {
	dec := json.NewDecoder(r)
	summaries := map[string]string{}
	byID := map[string]finding{}
	for {
		var m message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("govulncheck's output: %w", err)
		}
		if m.OSV != nil {
			summaries[m.OSV.ID] = m.OSV.Summary
		}
		if m.Finding == nil || len(m.Finding.Trace) == 0 {
			continue
		}
		t := m.Finding.Trace[0]
		f := finding{id: m.Finding.OSV, module: t.Module, version: t.Version, pkg: t.Package, fixed: m.Finding.FixedVersion}
		if old, ok := byID[f.id]; !ok || old.pkg == "" {
			byID[f.id] = f
		}
	}
	found := make([]finding, 0, len(byID))
	for _, f := range byID {
		f.summary = strings.TrimSpace(summaries[f.id])
		found = append(found, f)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].id < found[j].id })
	return found, nil
}
