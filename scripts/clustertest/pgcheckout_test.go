package clustertest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// scripts/bench-pgcheckout.sh (bench.sh's phase 8) measures one round of
// each side on the machine's PostgreSQL and writes its JSON: no failed
// request on the service's side, no failed transaction on pgbench's,
// orders counted on both. It once failed in its first round every time:
// pgbench's sessions were assumed to start at id 1 (the sequence starts
// past it since migration 00012), and the service, run without a worker on
// purpose, refused checkouts once its confirmations had waited 5 s (the
// checkout's backpressure). The round is longer than those 5 s.
func TestBenchPgcheckoutMeasuresBothSides(t *testing.T) {
	requireServices(t)
	requirePgbench(t)
	root := repoRoot(t)
	shop, _ := build(t, root)
	out := filepath.Join(t.TempDir(), "pgcheckout.json")
	cmd := exec.Command(filepath.Join(root, "scripts/bench-pgcheckout.sh"), out)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "SHOP="+shop, "USERS=4", "DUR=7", "ROUNDS=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bench-pgcheckout.sh: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Rounds []struct {
			Service, Pgbench struct{ Orders, Errors int }
		}
		Errors int
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if len(got.Rounds) != 1 || got.Errors != 0 {
		t.Fatalf("want 1 round and no errors: %s", b)
	}
	if r := got.Rounds[0]; r.Service.Orders == 0 || r.Pgbench.Orders == 0 {
		t.Fatalf("a side placed no order: %s", b)
	}
}

// Bad usage is one line naming the mistake (and one of usage), exit 2,
// before anything is built or started.
func TestBenchPgcheckoutRefusesBadUsage(t *testing.T) {
	checkScriptUsage(t, "scripts/bench-pgcheckout.sh", "usage: scripts/bench-pgcheckout.sh", "Usage: scripts/bench-pgcheckout.sh [JSON-OUT]", []usageCase{
		{[]string{"--bogus"}, "", "unknown option --bogus"},
		{[]string{"a.json", "b.json"}, "", "one argument at most"},
		{nil, "USERS=0", "USERS must be a whole number above 0, got '0'"},
		{nil, "DUR=10s", "DUR must be a whole number above 0, got '10s'"},
		{nil, "ROUNDS=-1", "ROUNDS must be a whole number above 0, got '-1'"},
		{[]string{"/nonexistent/x.json"}, "", "no directory /nonexistent"},
	})
}

func requirePgbench(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"pgbench", "psql"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed; under CI=true .ci/run must provide it", bin)
			}
			t.Skipf("%s is not installed (Debian package postgresql-client-15); skipping", bin)
		}
	}
}
