package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFitPrintsJSONWithTheIssueShape(t *testing.T) {
	out, _, err := loadlab("fit", "--json", "-", "../../loadlab/usl/testdata/specsdm91.csv")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]float64
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	for _, k := range []string{"sigma", "kappa", "lambda", "peak_concurrency", "r2"} {
		if _, ok := got[k]; !ok {
			t.Fatalf("JSON lacks %q: %s", k, out)
		}
	}
	if got["sigma"] < 0.027 || got["sigma"] > 0.0285 || got["peak_concurrency"] < 94 || got["peak_concurrency"] > 100 {
		t.Fatalf("fit %v does not match the published SPEC SDM91 fit", got)
	}
	text, _, err := loadlab("fit", "../../loadlab/usl/testdata/specsdm91.csv")
	if err != nil || !strings.Contains(text, "peak concurrency     96.") || !strings.Contains(text, "efficiency") {
		t.Fatalf("text output:\n%s\n%v", text, err)
	}
}

func TestFitRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"fit"}, "give one CSV file"},
		{[]string{"fit", filepath.Join(dir, "missing.csv")}, "no such file"},
		{[]string{"fit", write("few.csv", "N,X\n1,1\n2,2\n")}, "few.csv: only 2 points; the fit needs at least 3"},
		{[]string{"fit", write("one.csv", "N,X\n1,1\n")}, "one.csv: only 1 point; the fit needs at least 3"},
		{[]string{"fit", write("nan.csv", "N,X\n1,1\n2,two\n3,3\n")}, "line 3: X \"two\" is not a number"},
		{[]string{"fit", write("zero.csv", "N,X\n0,1\n2,2\n3,3\n")}, "line 2: N must be at least 1"},
		{[]string{"fit", write("dup.csv", "N,X\n1,1\n2,2\n2,3\n4,4\n")}, "line 4: N 2 already given on line 3"},
		{[]string{"fit", write("frac.csv", "N,X\n1,100\n2.5,180\n4,300\n8,380\n")}, `line 3: N must be a whole number (users or replicas), got "2.5"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := loadlab(tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") || exitCode(err) != exitBadInput {
				t.Fatalf("err = %v (exit %d), want a one-line error containing %q, exit %d", err, exitCode(err), tt.want, exitBadInput)
			}
		})
	}
}
