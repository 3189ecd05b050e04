package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// countingServer answers 200 and counts the requests it got.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// `--json -` is for pipes: standard output holds the JSON document and
// nothing else; the summary a person reads goes to standard error.
func TestJSONDashWritesOnlyJSONToStdout(t *testing.T) {
	srv, _ := countingServer(t)
	csv := filepath.Join(t.TempDir(), "points.csv")
	os.WriteFile(csv, []byte("N,X\n1,100\n2,180\n4,300\n8,380\n"), 0o600)
	tests := []struct {
		name      string
		args      []string
		key       string // a key the document must hold
		summaryOf string // a line of the summary, on stderr
	}{
		{"run", []string{"run", "--concurrency", "1", "--requests", "20", "--json", "-", srv.URL}, "throughput_rps", "requests    20"},
		{"diagnose", []string{"diagnose", "--max-concurrency", "2", "--step-duration", "100ms", "--baseline-requests", "10",
			"--json", "-", srv.URL}, "scalability", "performance (one user)"},
		{"fit", []string{"fit", "--json", "-", csv}, "sigma", "USL fit of 4 points"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			out, errOut, err := loadlab(tt.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			var doc map[string]any
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
			}
			if _, ok := doc[tt.key]; !ok {
				t.Errorf("JSON lacks %q: %s", tt.key, out)
			}
			if !strings.Contains(errOut, tt.summaryOf) {
				t.Errorf("the summary is not on stderr:\n%s", errOut)
			}
			if _, err := os.Stat(filepath.Join(dir, "-")); err == nil {
				t.Error(`wrote a file named "-"`)
			}
		})
	}
}

func TestHTMLDashWritesThePageToStdout(t *testing.T) {
	csv := filepath.Join(t.TempDir(), "points.csv")
	os.WriteFile(csv, []byte("N,X\n1,100\n2,180\n4,300\n8,380\n"), 0o600)
	out, errOut, err := loadlab("fit", "--html", "-", csv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.Contains(errOut, "USL fit of 4 points") {
		t.Fatalf("stdout:\n%.200s\nstderr:\n%s", out, errOut)
	}
}

// A report that could not be written at the end is refused before any
// load is sent: the target sees no request.
func TestOutputPathsAreCheckedBeforeTheLoad(t *testing.T) {
	srv, requests := countingServer(t)
	dir := t.TempDir()
	readOnly := filepath.Join(dir, "ro")
	os.Mkdir(readOnly, 0o500)
	missing := filepath.Join(dir, "no", "such", "dir", "out.json")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--requests", "5", "--concurrency", "1", "--json", missing, srv.URL}, "directory " + filepath.Dir(missing) + " does not exist"},
		{[]string{"run", "--requests", "5", "--concurrency", "1", "--json", dir, srv.URL}, "is a directory"},
		{[]string{"run", "--requests", "5", "--concurrency", "1", "--json", "-", "--html", "-", srv.URL}, "cannot both be -"},
		{[]string{"run", "--requests", "5", "--concurrency", "1", "--json", filepath.Join(dir, "a"), "--html", filepath.Join(dir, "a"), srv.URL}, "both write"},
		{[]string{"diagnose", "--max-concurrency", "2", "--html", missing, srv.URL}, "does not exist"},
		{[]string{"scaleout", "--scale-cmd", "echo " + srv.URL + " # {n}", "--down-cmd", "true", "--json", missing}, "does not exist"},
		{[]string{"fit", "--json", missing, "-"}, "does not exist"},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		tests = append(tests, struct {
			args []string
			want string
		}{[]string{"run", "--requests", "5", "--concurrency", "1", "--json", filepath.Join(readOnly, "out.json"), srv.URL}, "is not writable"})
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:1], " ")+" "+tt.want, func(t *testing.T) {
			_, _, err := loadlab(tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") || exitCode(err) == 0 {
				t.Fatalf("err = %v, want a one-line error containing %q", err, tt.want)
			}
			if n := requests.Load(); n != 0 {
				t.Fatalf("the target got %d requests before the output was refused", n)
			}
		})
	}
}

// fit's --json takes a destination, like every command's; the old
// boolean form is pointed at the new one instead of failing obscurely.
func TestFitPointsTheOldJSONFormAtTheNewOne(t *testing.T) {
	_, _, err := loadlab("fit", "--json", "measurements.csv")
	if err == nil || !strings.Contains(err.Error(), "did you mean --json - measurements.csv") {
		t.Fatalf("err = %v", err)
	}
	csv := filepath.Join(t.TempDir(), "points.csv")
	os.WriteFile(csv, []byte("N,X\n1,100\n2,180\n4,300\n8,380\n"), 0o600)
	if _, _, err := loadlab("fit", "--json", csv, csv); err == nil || !strings.Contains(err.Error(), "is the input") {
		t.Fatalf("err = %v, want a refusal to overwrite the input", err)
	}
	if b, _ := os.ReadFile(csv); !strings.HasPrefix(string(b), "N,X") {
		t.Fatalf("the input was overwritten: %s", b)
	}
}
