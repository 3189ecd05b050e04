// Package testsystem is a small system whose capacity is known, for the
// tests of loadlab scaleout: replicas that each serve at a fixed rate (or
// burn a fixed CPU time per request under a cgroup CPU quota) behind a
// round-robin proxy, optionally calling a shared stand-in database. A test
// binary calls Main from its TestMain; the scale command runs that binary
// with TESTSYSTEM_ROLE=up, the down command with TESTSYSTEM_ROLE=down.
package testsystem

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/perfscale/perfscale/internal/supervise"
	"github.com/prometheus/procfs"
)

// RoleEnv selects a role; Main does nothing when it is unset.
const RoleEnv = "TESTSYSTEM_ROLE"

// OwnerEnv is the test process that brought the system up: the system's
// processes end when it has gone. They run detached, in sessions of their
// own, so that the down command stops them; a test binary killed by its
// timeout runs no down command, and its replicas served on for good.
const OwnerEnv = "TESTSYSTEM_OWNER"

// exitWithOwner ends this process once the owner is gone.
func exitWithOwner() {
	pid, err := strconv.Atoi(os.Getenv(OwnerEnv))
	if err != nil || pid <= 0 {
		return
	}
	owner, _ := supervise.Lookup(pid)
	for owner.Alive() {
		time.Sleep(time.Second)
	}
	os.Exit(0)
}

// Main runs the role named by RoleEnv and exits; it returns false when
// RoleEnv is unset (a normal test run).
func Main() bool {
	role := os.Getenv(RoleEnv)
	if role == "" {
		return false
	}
	var err error
	switch role {
	case "up":
		err = up(os.Args[1:])
	case "down":
		err = down(os.Args[1:])
	case "replica", "db":
		go exitWithOwner()
		err = serveWorker()
	case "lb":
		go exitWithOwner()
		err = serveProxy()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "testsystem %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

// Options shape the system; the scale command passes them as flags.
type Options struct {
	State        string        // directory for pids, links and markers
	ReplicaEvery time.Duration // a replica serves one request per this (0: no limit)
	ReplicaCPU   time.Duration // CPU each replica request burns
	ReplicaQuota float64       // cgroup CPU quota per replica, cores (0: none)
	DBEvery      time.Duration // the database serves one request per this (0: no database)
	DBCPU        time.Duration
	DBQuota      float64
	FailAt       int // the up command fails for this replica count
}

// UpCommand is a scale command for loadlab scaleout: this test binary
// brings up {n} replicas.
func UpCommand(o Options) string {
	return fmt.Sprintf("%s=up %s=%d %s -state %s -replica-every %s -replica-cpu %s -replica-quota %g -db-every %s -db-cpu %s -db-quota %g -fail-at %d {n}",
		RoleEnv, OwnerEnv, os.Getpid(), os.Args[0], o.State, o.ReplicaEvery, o.ReplicaCPU, o.ReplicaQuota, o.DBEvery, o.DBCPU, o.DBQuota, o.FailAt)
}

// DownCommand stops everything UpCommand started and leaves a mark.
func DownCommand(o Options) string {
	return fmt.Sprintf("%s=down %s -state %s", RoleEnv, os.Args[0], o.State)
}

// DownRan counts how often the down command ran.
func DownRan(state string) int {
	b, _ := os.ReadFile(filepath.Join(state, "down-ran"))
	return strings.Count(string(b), "\n")
}

// Running lists the system's processes still alive: every process run
// from a link in the state directory (each role runs from one), whether
// or not a record of it was kept.
func Running(state string) []int {
	procs, err := procfs.AllProcs()
	if err != nil {
		return nil
	}
	var out []int
	for _, p := range procs {
		args, err := p.CmdLine()
		if err != nil || len(args) == 0 || !strings.HasPrefix(args[0], state+string(filepath.Separator)) {
			continue
		}
		if st, err := p.Stat(); err == nil && st.State != "Z" && st.State != "X" {
			out = append(out, p.PID)
		}
	}
	return out
}

// Cgroups lists the system's CPU cgroups still present.
func Cgroups(state string) []string {
	h, err := supervise.CPUHierarchy()
	if err != nil {
		return nil
	}
	out, _ := filepath.Glob(filepath.Join(h.Root, cgroupPrefix(state)+"*"))
	return out
}

// cgroupPrefix begins the names of the cgroups of the system of a state
// directory, made side by side below the hierarchy's root rather than
// below a parent of their own: a cgroup's weight counts against its
// siblings only, and a parent at the default weight would hand the whole
// system one default share of a busy machine.
func cgroupPrefix(state string) string {
	return fmt.Sprintf("testsystem-%x-", fnv32(state))
}

func parseOptions(args []string) (Options, []string, error) {
	var o Options
	fs := flag.NewFlagSet("testsystem", flag.ContinueOnError)
	fs.StringVar(&o.State, "state", "", "")
	fs.DurationVar(&o.ReplicaEvery, "replica-every", 0, "")
	fs.DurationVar(&o.ReplicaCPU, "replica-cpu", 0, "")
	fs.Float64Var(&o.ReplicaQuota, "replica-quota", 0, "")
	fs.DurationVar(&o.DBEvery, "db-every", 0, "")
	fs.DurationVar(&o.DBCPU, "db-cpu", 0, "")
	fs.Float64Var(&o.DBQuota, "db-quota", 0, "")
	fs.IntVar(&o.FailAt, "fail-at", 0, "")
	if err := fs.Parse(args); err != nil {
		return o, nil, err
	}
	if o.State == "" {
		return o, nil, errors.New("no -state directory")
	}
	return o, fs.Args(), nil
}

// waitStop bounds how long stopping the system's processes and removing
// their cgroups may take: a killed process leaves its cgroup only once
// whoever adopted it has reaped it.
const waitStop = 10 * time.Second

func up(args []string) error {
	o, rest, err := parseOptions(args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return errors.New("give the replica count")
	}
	n, err := strconv.Atoi(rest[0])
	if err != nil || n < 1 {
		return fmt.Errorf("bad replica count %q", rest[0])
	}
	if n == o.FailAt {
		return fmt.Errorf("asked to fail at %d replicas", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := supervise.Dir(o.State)
	records, err := d.List()
	if err != nil {
		return err
	}
	// Scale: the old replicas and proxy go, the database stays.
	var old []supervise.Record
	db := ""
	for _, r := range records {
		if r.Name == "db" && r.Alive() {
			db = r.URL("http")
			continue
		}
		old = append(old, r)
	}
	if err := forget(ctx, d, old); err != nil {
		return err
	}
	if (o.DBEvery > 0 || o.DBCPU > 0) && db == "" {
		r, err := start(ctx, o, "db", "db", o.DBQuota, o.DBQuota > 0, workerEnv(o.DBEvery, o.DBCPU, ""))
		if err != nil {
			return err
		}
		db = r.URL("http")
	}
	var urls []string
	for i := range n {
		r, err := start(ctx, o, fmt.Sprintf("replica%d", i), "replica", o.ReplicaQuota, o.ReplicaQuota > 0, workerEnv(o.ReplicaEvery, o.ReplicaCPU, db))
		if err != nil {
			return err
		}
		urls = append(urls, r.URL("http"))
	}
	// The proxy is the system's too: with the replicas in cgroups of their
	// own weight, it gets one as well, without a quota.
	lb, err := start(ctx, o, "lb", "lb", 0, o.ReplicaQuota > 0, []string{"TESTSYSTEM_UPSTREAMS=" + strings.Join(urls, ",")})
	if err != nil {
		return err
	}
	fmt.Printf("%d replicas up\n%s/\n", n, lb.URL("http"))
	return nil
}

// forget stops the recorded processes and drops their records.
func forget(ctx context.Context, d supervise.Dir, records []supervise.Record) error {
	if err := supervise.KillAll(ctx, records...); err != nil {
		return err
	}
	for _, r := range records {
		if err := d.Forget(r.Name); err != nil {
			return err
		}
	}
	return nil
}

func down(args []string) error {
	o, _, err := parseOptions(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitStop)
	defer cancel()
	d := supervise.Dir(o.State)
	records, err := d.List()
	if err != nil {
		return err
	}
	if err := forget(ctx, d, records); err != nil {
		return err
	}
	for _, cg := range Cgroups(o.State) {
		supervise.Open(cg).Remove(ctx) //nolint:errcheck // Cgroups shows a leftover to the tests
	}
	f, err := os.OpenFile(filepath.Join(o.State, "down-ran"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, time.Now().Format(time.RFC3339Nano))
	return err
}

func workerEnv(every, cpu time.Duration, db string) []string {
	return []string{"TESTSYSTEM_EVERY=" + every.String(), "TESTSYSTEM_CPU=" + cpu.String(), "TESTSYSTEM_DB=" + db}
}

// start runs this binary in a role through the supervisor, from a link
// named after the role (so its process name says what it is), serving on
// the listener it is handed; with weighed, in a cgroup of its own held to
// quota cores (none when 0) at the system's weight, and a GOMAXPROCS to
// match a quota under one core.
func start(ctx context.Context, o Options, name, role string, quota float64, weighed bool, env []string) (supervise.Record, error) {
	// Replicas run as "app", so a verdict reads "the 2 app replicas".
	link := filepath.Join(o.State, role)
	if role == "replica" {
		link = filepath.Join(o.State, "app")
	}
	if _, err := os.Lstat(link); err != nil {
		self, err := os.Executable()
		if err != nil {
			return supervise.Record{}, err
		}
		if err := os.Symlink(self, link); err != nil && !errors.Is(err, os.ErrExist) {
			return supervise.Record{}, err
		}
	}
	spec := supervise.Spec{
		Name: name, Path: link, Listeners: []string{"http"}, Go: true,
		Env: append(append(os.Environ(), RoleEnv+"="+role), env...),
	}
	if weighed {
		cg, err := cgroup(o.State, name, quota)
		if err != nil {
			return supervise.Record{}, err
		}
		spec.Cgroup = cg.Dir
	}
	r, err := supervise.Dir(o.State).Start(ctx, spec)
	if err != nil {
		return r, err
	}
	Prioritize(r.PID)
	return r, nil
}

// cgroup makes the cgroup name of the system of state, held to quota
// cores (no quota when 0).
func cgroup(state, name string, quota float64) (supervise.Cgroup, error) {
	h, err := supervise.CPUHierarchy()
	if err != nil {
		return supervise.Cgroup{}, errors.New("no CPU cgroup controller to hold a quota")
	}
	// The kernel's usual 100 ms period (lengthened where the quota would
	// be under the kernel's 1 ms): a quota per period of several
	// requests' CPU, so that being throttled means being at the quota,
	// not one request outgrowing a short period.
	//
	// A cgroup competes for the CPU as one entity, with its own weight:
	// the nice value of the processes inside (Prioritize) does not count
	// against the machine's other work, so the group gets the weight of
	// nice -10 (1000, of 100 by default; shares 10240 in v1), or a busy
	// machine holds the replica under its quota.
	return h.Create(cgroupPrefix(state)+name, supervise.Limit{Cores: quota, Weight: 1000})
}

// Prioritize raises the CPU priority (nice -10) of one of the system's
// processes where allowed (root), so that on a shared machine whose run
// queue is long the system still runs when due: its capacity is what the
// test knows, not what the machine's other work leaves. Each process runs
// in a session of its own (Setsid), so raising its session's autogroup
// touches nothing else. Where it is not allowed, nothing changes.
func Prioritize(pid int) {
	// With autogroup scheduling, sessions compete first and nice counts
	// within a session only: raise the session's weight too.
	os.WriteFile(fmt.Sprintf("/proc/%d/autogroup", pid), []byte("-10"), 0o644) //nolint:errcheck // best effort
	syscall.Setpriority(syscall.PRIO_PROCESS, pid, -10)                        //nolint:errcheck // best effort
	// Threads have their own nice value on Linux: raise each.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			syscall.Setpriority(syscall.PRIO_PROCESS, tid, -10) //nolint:errcheck // best effort
		}
	}
}

func fnv32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// CanLimitCPU reports whether this process may create CPU cgroups.
func CanLimitCPU() bool {
	h, err := supervise.CPUHierarchy()
	if err != nil {
		return false
	}
	cg, err := h.Create(fmt.Sprintf("testsystem-probe-%d", os.Getpid()), supervise.Limit{})
	if err != nil {
		return false
	}
	return cg.Remove(context.Background()) == nil
}

// inherited is the listener the supervisor handed this process.
func inherited() (net.Listener, error) {
	return net.FileListener(os.NewFile(3, "listener"))
}

// serveWorker is a replica or the database: one request per EVERY at most
// (a single worker on a virtual clock, so its capacity is exactly
// 1/EVERY however late its sleeps wake), CPU burnt per request, and for a
// replica a call to the database first.
func serveWorker() error {
	every, _ := time.ParseDuration(os.Getenv("TESTSYSTEM_EVERY"))
	cpu, _ := time.ParseDuration(os.Getenv("TESTSYSTEM_CPU"))
	db := os.Getenv("TESTSYSTEM_DB")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 10 * time.Second}
	var mu sync.Mutex
	var next time.Time
	ln, err := inherited()
	if err != nil {
		return err
	}
	var served atomic.Int64
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if db != "" {
			resp, err := client.Get(db)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				http.Error(w, "database: "+resp.Status, http.StatusBadGateway)
				return
			}
		}
		if every > 0 {
			mu.Lock()
			begin := time.Now()
			if next.After(begin) {
				begin = next
			}
			next = begin.Add(every)
			done := next
			mu.Unlock()
			time.Sleep(time.Until(done))
		}
		if cpu > 0 {
			burn(cpu)
		}
		served.Add(1)
		// What the built-in shop scenario captures (a session token, a
		// cart total, an order id), so that it runs against the system.
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"token": "t", "total_cents": 100, "id": 1}`)
	}))
}

// burn spends d of this thread's CPU time.
func burn(d time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	now := func() time.Duration {
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
		return time.Duration(ts.Nano())
	}
	for start := now(); now()-start < d; {
	}
}

// serveProxy sends requests round-robin to the upstreams.
func serveProxy() error {
	var targets []*url.URL
	for _, u := range strings.Split(os.Getenv("TESTSYSTEM_UPSTREAMS"), ",") {
		t, err := url.Parse(u)
		if err != nil {
			return err
		}
		targets = append(targets, t)
	}
	var next atomic.Uint64
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(targets[next.Add(1)%uint64(len(targets))])
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 256},
	}
	ln, err := inherited()
	if err != nil {
		return err
	}
	return http.Serve(ln, proxy)
}

// WeighSelf puts this process (the test binary: the load generator) in a
// CPU cgroup of the system's weight, without a quota, until undo. The
// system's processes run at a raised weight so that a busy machine does
// not take their quota; a generator left at the default weight beside two
// CPU hogs sends and reads late, and its lateness would count against the
// system. Processes it starts afterwards start in that cgroup too (the
// virtual-clock system's replicas and proxy, which have none of their
// own); they must have ended before undo, which removes the cgroup.
func WeighSelf(state string) (undo func(), err error) {
	back, err := ownCPUCgroup()
	if err != nil {
		return nil, err
	}
	cg, err := cgroup(state, "generator", 0)
	if err != nil {
		return nil, err
	}
	if err := cg.Add(os.Getpid()); err != nil {
		return nil, err
	}
	return func() {
		back.Add(os.Getpid()) //nolint:errcheck // best effort: the test ends
		ctx, cancel := context.WithTimeout(context.Background(), waitStop)
		defer cancel()
		cg.Remove(ctx) //nolint:errcheck // best effort: the test ends
	}, nil
}

// ownCPUCgroup is the CPU cgroup this process is in.
func ownCPUCgroup() (supervise.Cgroup, error) {
	h, err := supervise.CPUHierarchy()
	if err != nil {
		return supervise.Cgroup{}, err
	}
	self, err := procfs.Self()
	if err != nil {
		return supervise.Cgroup{}, err
	}
	groups, err := self.Cgroups()
	if err != nil {
		return supervise.Cgroup{}, err
	}
	for _, g := range groups {
		if (h.V2 && g.HierarchyID == 0) || (!h.V2 && slices.Contains(g.Controllers, "cpu")) {
			return supervise.Open(filepath.Join(h.Root, g.Path)), nil
		}
	}
	return supervise.Cgroup{}, errors.New("this process's CPU cgroup is not in /proc/self/cgroup")
}

// WeighTest runs the rest of test t, and the processes it starts from now
// on, at the system's CPU weight (WeighSelf): the lab (generator, ground-
// truth servers) gets the CPU it needs beside CPU hogs, as the system does.
// Where cgroups cannot be made (not root), t runs at the default weight
// and says so in its log.
func WeighTest(t testing.TB) {
	t.Helper()
	undo, err := WeighSelf(t.TempDir())
	if err != nil {
		t.Logf("the lab runs at the default CPU weight: %v", err)
		return
	}
	t.Cleanup(undo)
}

// RealTimeTest runs the rest of test t at a real-time CPU priority
// (SCHED_RR, the lowest real-time level): every thread of this process,
// and the threads the Go runtime starts from them, run as soon as they
// wake instead of after the machine's run queue. A weight (WeighTest)
// gives the lab its share of the CPU but not prompt wake-ups: beside two
// CPU hogs at a load average of 30, a 20 ms sleep in a weighted process
// still overslept by 5 to 15 ms. For tests that compare timings to the
// millisecond and use little CPU (the kernel keeps 5% of each second for
// other work whatever real-time threads do). Where it is not allowed, t
// runs as it was and says so in its log.
func RealTimeTest(t testing.TB) {
	t.Helper()
	set := func(policy, prio uint32) error {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: policy, Priority: prio}, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
		}
		return nil
	}
	if err := set(unix.SCHED_RR, 1); err != nil {
		set(unix.SCHED_NORMAL, 0) //nolint:errcheck // back as it was, as far as it goes
		t.Logf("the test runs at the normal CPU priority: %v", err)
		return
	}
	t.Cleanup(func() { set(unix.SCHED_NORMAL, 0) }) //nolint:errcheck // the test ends
}
