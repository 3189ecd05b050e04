package pgserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// A killed server's lock file is removed when it names the recorded pid
// and that pid no longer runs; a lock naming a live process, or another
// pid, is left for PostgreSQL to judge.
func TestRemoveStaleLock(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.Process.Pid // reaped by Run: no process has it (until reused)
	live := os.Getpid()
	for _, tt := range []struct {
		name     string
		lockPID  int
		recorded int
		removed  bool
	}{
		{"the recorded pid, gone", deadPID, deadPID, true},
		{"the recorded pid, running", live, live, false},
		{"another pid", deadPID, deadPID + 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			lock := filepath.Join(dir, "postmaster.pid")
			if err := os.WriteFile(lock, []byte(strconv.Itoa(tt.lockPID)+"\n/data\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := RemoveStaleLock(dir, tt.recorded); err != nil {
				t.Fatal(err)
			}
			_, err := os.Stat(lock)
			if removed := os.IsNotExist(err); removed != tt.removed {
				t.Errorf("lock removed: %t, want %t", removed, tt.removed)
			}
		})
	}
	if err := RemoveStaleLock(t.TempDir(), deadPID); err != nil {
		t.Errorf("no lock file: %v, want nil", err)
	}
}
