package clustertest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// scripts/bench-profile.sh: bad usage is one line naming the mistake and
// one of usage, exit 2, before anything is built or started; --help prints
// the script's head. (Its profiled run needs a quiet machine to mean
// anything; the lead runs it, docs/performance.md has the command.)
func TestBenchProfileRefusesBadUsage(t *testing.T) {
	root := repoRoot(t)
	script := filepath.Join(root, "scripts/bench-profile.sh")
	tests := []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--bogus"}, "", "unknown option --bogus"},
		{[]string{"2", "3"}, "", "one argument at most"},
		{[]string{"two"}, "", "REPLICAS must be a whole number above 0, got 'two'"},
		{nil, "DUR=20s", "DUR must be a whole number above 0, got '20s'"},
		{nil, "USERS=0", "USERS must be a whole number above 0, got '0'"},
		{nil, "PERF=yes", "PERF must be 0 or 1, got 'yes'"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append(tt.args, tt.env), " "), func(t *testing.T) {
			cmd := exec.Command(script, tt.args...)
			cmd.Dir = root
			cmd.Env = os.Environ()
			if tt.env != "" {
				cmd.Env = append(cmd.Env, tt.env)
			}
			b, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("exit %v, want 2:\n%s", err, b)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 2 || !strings.Contains(lines[0], tt.want) || !strings.Contains(lines[1], "usage: scripts/bench-profile.sh") {
				t.Fatalf("want a line saying %q and the usage line, got:\n%s", tt.want, b)
			}
		})
	}
	b, err := exec.Command(script, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(b), "Usage: scripts/bench-profile.sh [REPLICAS]") {
		t.Fatalf("--help: %v\n%s", err, b)
	}
}
