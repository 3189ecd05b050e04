package clustertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Every script answers --help with its head comment and exit 0, before
// it does anything. Seventeen did not: most took --help for an argument
// or ignored it and started their measurement (bench.sh, bench-shards.sh
// and security.sh among them), others failed on it ("$2: unbound
// variable").
func TestEveryScriptAnswersHelp(t *testing.T) {
	root := repoRoot(t)
	scripts, err := filepath.Glob(filepath.Join(root, "scripts", "*.sh"))
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no scripts found (%v)", err)
	}
	for _, path := range scripts {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// The help is the comment from line 2 on.
			lines := strings.SplitN(string(src), "\n", 3)
			if len(lines) < 3 || !strings.HasPrefix(lines[1], "# ") {
				t.Fatalf("line 2 is not a comment saying what the script does: %q", lines[1])
			}
			first := strings.TrimPrefix(lines[1], "# ")
			// A script that ignores --help starts its work: stop it (and
			// what it started in its process group) rather than wait.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, path, "--help")
			cmd.Dir = t.TempDir() // it must not need the repository as its directory
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			out, err := cmd.CombinedOutput()
			if filepath.Base(path) == "cluster.sh" {
				first = "cluster runs the ordering service" // its help is cmd/cluster's
			}
			if err != nil || !strings.HasPrefix(string(out), first) || strings.Count(string(out), "\n") < 3 {
				t.Fatalf("--help: %v, want exit 0 and the help, starting %q; got:\n%.400s", err, first, out)
			}
		})
	}
}
