package supervise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// Record is what a state directory holds of one process.
type Record struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// Start is the process's start time in clock ticks since boot (field
	// 22 of /proc/PID/stat): with the pid it tells the recorded process
	// from a later one that got the same pid.
	Start uint64 `json:"start"`
	// Ports are the ports handed to the process, by purpose ("http",
	// "admin", "postgres"); a process started again keeps them.
	Ports  map[string]int `json:"ports,omitempty"`
	Cgroup string         `json:"cgroup,omitempty"` // the cgroup directory it runs in
	Log    string         `json:"log,omitempty"`    // standard output and error
	// Meta is what its owner wants kept with it (a role, a database
	// name); the supervisor does not read it.
	Meta map[string]string `json:"meta,omitempty"`
}

// Port is the port recorded for purpose, 0 if none.
func (r Record) Port(purpose string) int { return r.Ports[purpose] }

// URL is http://127.0.0.1:PORT for the port recorded for purpose.
func (r Record) URL(purpose string) string {
	if p := r.Ports[purpose]; p != 0 {
		return fmt.Sprintf("http://127.0.0.1:%d", p)
	}
	return ""
}

// Dir is a state directory: one NAME.proc.json per process.
type Dir string

const recordSuffix = ".proc.json"

func (d Dir) path(name string) string { return filepath.Join(string(d), name+recordSuffix) }

// Save writes a record (atomically: a reader sees the old or the new one).
func (d Dir) Save(r Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := d.path(r.Name) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("record %s: %w", r.Name, err)
	}
	return os.Rename(tmp, d.path(r.Name))
}

// Load reads the record of name; ok is false when there is none.
func (d Dir) Load(name string) (r Record, ok bool, err error) {
	b, err := os.ReadFile(d.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, false, fmt.Errorf("record %s: %w", name, err)
	}
	return r, true, nil
}

// Forget removes the record of name.
func (d Dir) Forget(name string) error {
	err := os.Remove(d.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// List returns every record, by name.
func (d Dir) List() ([]Record, error) {
	paths, err := filepath.Glob(filepath.Join(string(d), "*"+recordSuffix))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var out []Record
	for _, p := range paths {
		r, ok, err := d.Load(strings.TrimSuffix(filepath.Base(p), recordSuffix))
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// startTime is a live process's start time; ok is false when no such
// process runs (a zombie counts as dead, reaped or not).
func startTime(pid int) (uint64, bool) {
	if pid <= 0 {
		return 0, false
	}
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, false
	}
	st, err := p.Stat()
	if err != nil || st.State == "X" || (st.State == "Z" && !threadsRun(pid)) {
		return 0, false
	}
	return st.Starttime, true
}

// threadsRun reports whether a thread of pid other than a zombie one
// still runs. A killed Go process's main thread can be a zombie while its
// other threads are still exiting and still hold its files: its listening
// socket was then still bound, and a process started again on the port
// found it in use (3 of 18 restarts in TestAProcessHandedAListenerServesOnIt).
func threadsRun(pid int) bool {
	threads, err := procfs.AllThreads(pid)
	if err != nil {
		return false
	}
	for _, th := range threads {
		if st, err := th.Stat(); err == nil && st.State != "Z" && st.State != "X" {
			return true
		}
	}
	return false
}

// Lookup is a record of the process that runs now with pid (no name):
// Alive then tells whether that process, not a later one given the same
// pid, still runs. ok is false when none runs.
func Lookup(pid int) (r Record, ok bool) {
	r.PID = pid
	r.Start, ok = startTime(pid)
	return r, ok
}

// Alive reports whether the recorded process still runs.
func (r Record) Alive() bool {
	t, ok := startTime(r.PID)
	return ok && t == r.Start
}

// poll is how often waits look again: a process's exit and a port's
// opening are not events this package can wait on.
const poll = 50 * time.Millisecond

// WaitGone waits until the recorded process no longer runs. It looks
// again after a millisecond, then at doubling intervals up to poll: a
// killed process is gone within milliseconds, and a scale-out run stops
// and starts its processes many times.
func (r Record) WaitGone(ctx context.Context) error {
	for wait := time.Millisecond; r.Alive(); wait = min(2*wait, poll) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s (pid %d) still runs: %w", r.Name, r.PID, ctx.Err())
		case <-time.After(wait):
		}
	}
	return nil
}

// Kill sends SIGKILL to the recorded process (if it runs) and waits
// until it is gone.
func (r Record) Kill(ctx context.Context) error { return KillAll(ctx, r) }

// KillAll sends SIGKILL to every recorded process that runs, all at
// once, and waits until all are gone: stopping n processes costs one
// wait, not n.
func KillAll(ctx context.Context, records ...Record) error {
	for _, r := range records {
		if r.Alive() {
			if err := syscall.Kill(r.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("kill %s (pid %d): %w", r.Name, r.PID, err)
			}
		}
	}
	for _, r := range records {
		if err := r.WaitGone(ctx); err != nil {
			return err
		}
	}
	return nil
}

// KillTree sends SIGKILL to the recorded process and every process it
// forked, at once, as a machine that lost power would stop them, and
// waits until all are gone. It is not a process group kill: PostgreSQL's
// children each call setsid, so they are in groups of their own, and
// outlive a killed postmaster until they notice. The process is stopped
// (SIGSTOP) first, so it forks nothing while its children are listed.
func (r Record) KillTree(ctx context.Context) error {
	if !r.Alive() {
		return nil
	}
	if err := syscall.Kill(r.PID, syscall.SIGSTOP); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s (pid %d): %w", r.Name, r.PID, err)
	}
	if err := r.waitStopped(ctx); err != nil {
		return err
	}
	kids, err := descendants(r.PID)
	if err != nil {
		return err
	}
	for _, pid := range append([]int{r.PID}, kids...) {
		syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck // it may have exited meanwhile
	}
	for _, pid := range kids {
		kid := Record{Name: fmt.Sprintf("%s's child", r.Name), PID: pid}
		kid.Start, _ = startTime(pid)
		if err := kid.WaitGone(ctx); err != nil {
			return err
		}
	}
	return r.WaitGone(ctx)
}

// waitStopped waits until the process has taken its SIGSTOP (or is
// gone). kill returns before the signal is taken: a postmaster listed
// right after it forked one more backend, which outlived the kill and
// held its shared memory ("pre-existing shared memory block is still in
// use" when it was started again, in a fresh-clone CI run).
func (r Record) waitStopped(ctx context.Context) error {
	for wait := time.Millisecond; ; wait = min(2*wait, poll) {
		p, err := procfs.NewProc(r.PID)
		if err != nil {
			return nil // gone
		}
		st, err := p.Stat()
		if err != nil || st.Starttime != r.Start || st.State == "T" || st.State == "Z" || st.State == "X" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop %s (pid %d): %w", r.Name, r.PID, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// descendants lists the processes below pid (children, theirs, ...).
func descendants(pid int) ([]int, error) {
	procs, err := procfs.AllProcs()
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, p := range procs {
		if st, err := p.Stat(); err == nil {
			children[st.PPID] = append(children[st.PPID], p.PID)
		}
	}
	var out []int
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, children[queue[0]]...)
	}
	return out, nil
}

// Stop asks the recorded process to stop with sig, sent again every half
// second (a second SIGTERM cuts the service's drain delay short), and
// kills it if it still runs after grace. It returns once the process is
// gone; killed says whether SIGKILL was needed.
func (r Record) Stop(ctx context.Context, sig syscall.Signal, grace time.Duration) (killed bool, err error) {
	deadline := time.Now().Add(grace)
	for next := time.Now(); r.Alive(); {
		if time.Now().After(deadline) {
			return true, r.Kill(ctx)
		}
		if !time.Now().Before(next) {
			syscall.Kill(r.PID, sig) //nolint:errcheck // it may have exited meanwhile
			next = time.Now().Add(500 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("stop %s (pid %d): %w", r.Name, r.PID, ctx.Err())
		case <-time.After(poll):
		}
	}
	return false, nil
}
