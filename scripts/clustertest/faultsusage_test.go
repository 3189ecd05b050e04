package clustertest

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// scripts/faults.sh: bad usage is one line and exit 2 before anything
// runs; --help prints the script's head and exits 0 (it said "unknown
// argument --help", exit 2).
func TestFaultsScriptUsage(t *testing.T) {
	root := repoRoot(t)
	script := filepath.Join(root, "scripts/faults.sh")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "faults: unknown argument --bogus; usage: scripts/faults.sh [--shards S]"},
		{[]string{"--shards", "two"}, "faults: --shards wants a number of shards, 1 or more"},
		{[]string{"--shards"}, "faults: --shards wants a number of shards, 1 or more"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd := exec.Command(script, tt.args...)
			cmd.Dir = root
			b, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("exit %v, want 2:\n%s", err, b)
			}
			if got := strings.TrimSpace(string(b)); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	b, err := exec.Command(script, "--help").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(b), "The fault matrix of docs/reliability.md") || !strings.Contains(string(b), "--shards S runs it") {
		t.Fatalf("--help: %v\n%s", err, b)
	}
}
