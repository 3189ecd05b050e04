package clustertest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// usageCase is a wrong call of a script: its arguments, an environment
// setting ("" for none) and what its refusal must say.
type usageCase struct {
	args []string
	env  string
	want string
}

// checkScriptUsage runs the script (a path below the repository's root)
// once per case and wants each refused before anything runs: exit 2, at
// most two lines, the first naming the mistake and, when usage is set, a
// line holding it. --help must exit 0 and print help.
func checkScriptUsage(t *testing.T, script, usage, help string, cases []usageCase) {
	t.Helper()
	root := repoRoot(t)
	path := filepath.Join(root, script)
	for _, tt := range cases {
		t.Run(strings.Join(append(tt.args, tt.env), " "), func(t *testing.T) {
			cmd := exec.Command(path, tt.args...)
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
			if len(lines) > 2 || !strings.Contains(lines[0], tt.want) || !strings.Contains(string(b), usage) {
				t.Fatalf("want a line saying %q and %q, got:\n%s", tt.want, usage, b)
			}
		})
	}
	cmd := exec.Command(path, "--help")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), help) {
		t.Fatalf("--help: %v, want it to say %q:\n%s", err, help, b)
	}
}
