package procwatch

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"

	"github.com/perfscale/perfscale/internal/testwait"
)

// Real processes for the tests: this test binary, re-executed in a role,
// under a name of its own (a symlink) so that its comm tells it apart.
const roleEnv = "PROCWATCH_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(m.Run())
	case "prefork": // listens, then forks two workers that share the socket
		ln := listen()
		f, _ := ln.(*net.TCPListener).File()
		var workers []*exec.Cmd
		for range 2 {
			c := exec.Command(os.Args[0])
			c.Env = append(os.Environ(), roleEnv+"=worker")
			c.ExtraFiles = []*os.File{f}
			if err := c.Start(); err != nil {
				panic(err)
			}
			workers = append(workers, c)
		}
		ln.Close() // only the workers accept, as in a pre-forked server
		announce(ln)
		for _, w := range workers {
			w.Wait()
		}
	case "worker":
		ln, err := net.FileListener(os.NewFile(3, "listener"))
		if err != nil {
			panic(err)
		}
		http.Serve(ln, burner(time.Millisecond))
	case "backend":
		ln := listen()
		announce(ln)
		http.Serve(ln, burner(2*time.Millisecond))
	case "proxy":
		u, _ := url.Parse(os.Getenv("PROCWATCH_BACKEND"))
		ln := listen()
		announce(ln)
		http.Serve(ln, httputil.NewSingleHostReverseProxy(u))
	case "router": // a proxy whose path /second goes to a second backend
		first, _ := url.Parse(os.Getenv("PROCWATCH_BACKEND"))
		second, _ := url.Parse(os.Getenv("PROCWATCH_BACKEND2"))
		a, b := httputil.NewSingleHostReverseProxy(first), httputil.NewSingleHostReverseProxy(second)
		ln := listen()
		announce(ln)
		http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/second" {
				r.URL.Path = "/"
				b.ServeHTTP(w, r)
				return
			}
			a.ServeHTTP(w, r)
		}))
	case "spin":
		for {
			spin(time.Second)
		}
	}
}

func listen() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	return ln
}

func announce(ln net.Listener) { fmt.Println(ln.Addr().(*net.TCPAddr).Port) }

// spin keeps a CPU busy for d of wall time.
func spin(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
	}
}

func burner(d time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { burnThreadCPU(d) }
}

// start runs this binary as name in a role and returns its process and the
// port it announced (0 for roles that announce none).
func start(t *testing.T, name, role string, env ...string) (*exec.Cmd, int) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	c := exec.Command(bin)
	c.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The prefork parent's workers die with it: kill the whole tree.
		if sc, err := newScan(false); err == nil {
			for _, pid := range sc.tree(c.Process.Pid)[1:] {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
		}
		c.Process.Kill()
		c.Wait()
	})
	if role == "spin" {
		return c, 0
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("%s did not start: %v", role, err)
	}
	port, _ := strconv.Atoi(strings.TrimSpace(line))
	return c, port
}

// get sends n requests to port from a few goroutines.
// proxy starts a proxy named name in front of the server on port.
func proxy(t *testing.T, name string, port int) (*exec.Cmd, int) {
	t.Helper()
	return start(t, name, "proxy", fmt.Sprintf("PROCWATCH_BACKEND=http://127.0.0.1:%d", port))
}

// discoverAfterRequests sends a few requests to target and to the other
// ports (a proxy keeps its upstream connection open after one), then
// discovers what serves target and looks once more.
func discoverAfterRequests(t *testing.T, target int, others ...int) *Set {
	t.Helper()
	for _, port := range append([]int{target}, others...) {
		get(t, port, 4)
	}
	set, err := Discover(target, true)
	if err != nil {
		t.Fatal(err)
	}
	set.Refresh()
	return set
}

func get(t *testing.T, port, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n / 4 {
				resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

func ownCPU(t *testing.T, pid int) float64 {
	p, err := procfs.NewProc(pid)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return st.CPUTime()
}

// A pre-forked server: the parent that opened the socket is idle, its two
// children serve. Discovery finds the parent as the one root and counts
// the children's CPU with it.
func TestDiscoverCountsThePreforkedWorkers(t *testing.T) {
	parent, port := start(t, "prefork", "prefork")
	set, err := Discover(port, true)
	if err != nil {
		t.Fatal(err)
	}
	g := set.Groups()[0]
	if g.Name != "prefork" || !slices.Equal(g.Roots, []int{parent.Process.Pid}) {
		t.Fatalf("first group %+v, want the prefork parent %d", g, parent.Process.Pid)
	}
	before, err := set.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	parent0 := ownCPU(t, parent.Process.Pid)
	get(t, port, 200) // 200 ms of the workers' CPU
	after, _ := set.Sample(context.Background())
	if after[0].Processes != 3 {
		t.Fatalf("counted %d processes, want the parent and two workers", after[0].Processes)
	}
	served := after[0].CPU - before[0].CPU
	idle := ownCPU(t, parent.Process.Pid) - parent0
	if served < 0.15 || idle > 0.02 {
		t.Fatalf("group CPU %.2fs (want ≥ 0.15), the socket's owner alone %.2fs", served, idle)
	}
	t.Logf("the group used %.2fs of CPU; the process that opened the socket %.2fs", served, idle)
}

// A proxy in front of a CPU-burning backend: the proxy owns the port, the
// backend does the work; following the proxy's connections while it
// forwards finds the backend.
func TestFollowFindsTheBackendBehindAProxy(t *testing.T) {
	backend, bport := start(t, "backend", "backend")
	_, pport := proxy(t, "proxy", bport)
	set, err := Discover(pport, true)
	if err != nil {
		t.Fatal(err)
	}
	stop := set.Follow(context.Background(), 10*time.Millisecond)
	get(t, pport, 100)
	stop()
	var names []string
	for _, g := range set.Groups() {
		names = append(names, g.Name)
	}
	i := slices.Index(names, "backend")
	if i < 0 || !slices.Equal(set.Groups()[i].Roots, []int{backend.Process.Pid}) {
		t.Fatalf("watching %v, want the backend %d too", set.Describe(), backend.Process.Pid)
	}
	before, _ := set.Sample(context.Background())
	get(t, pport, 100) // 200 ms of the backend's CPU
	after, err := set.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cpu := after[i].CPU - before[i].CPU; cpu < 0.15 {
		t.Fatalf("the backend used %.2fs of CPU for 100 requests of 2 ms", cpu)
	}
	t.Logf("watching %s", strings.Join(set.Describe(), "; "))
}

// Two systems on one machine, each a proxy in front of an "app": the
// target's proxy ("front") and an unrelated nginx in front of another
// app. Discovery watches the unrelated nginx as a suspect (it runs here)
// but adopts only the app the target's own connections reach, never the
// same-named app behind the other proxy.
func TestDiscoverAdoptsOnlyWhatTheTargetReaches(t *testing.T) {
	ours, oport := start(t, "app", "backend")
	_, fport := proxy(t, "front", oport)
	other, xport := start(t, "app", "backend")
	_, nport := proxy(t, "nginx", xport)
	// Both proxies keep their upstream connections open after a request.
	set := discoverAfterRequests(t, fport, nport)
	set.Refresh()
	var app, nginx *Group
	for _, g := range set.Groups() {
		switch g.Name {
		case "app":
			app = &g
		case "nginx":
			if !g.Suspect {
				t.Errorf("the unrelated nginx is watched as connected: %+v", g)
			}
			nginx = &g
		}
	}
	if app == nil || !slices.Equal(app.Roots, []int{ours.Process.Pid}) || app.Suspect {
		t.Fatalf("watching %v; want the app %d behind the target only, not %d behind the other proxy",
			set.Describe(), ours.Process.Pid, other.Process.Pid)
	}
	if nginx == nil {
		t.Fatalf("watching %v; want the unrelated nginx as a suspect", set.Describe())
	}
}

// A suspect found connected is adopted alone: the target's proxy is an
// "nginx", and another nginx running here stays a suspect.
func TestDiscoverAdoptsAConnectedSuspectAlone(t *testing.T) {
	_, bport := start(t, "app", "backend")
	mid, mport := proxy(t, "nginx", bport)
	_, fport := proxy(t, "front", mport)
	_, xport := start(t, "app", "backend")
	unrelated, _ := proxy(t, "nginx", xport)
	set := discoverAfterRequests(t, fport)
	var connected, suspect []int
	for _, g := range set.Groups() {
		if g.Name != "nginx" {
			continue
		}
		if g.Suspect {
			suspect = append(suspect, g.Roots...)
		} else {
			connected = append(connected, g.Roots...)
		}
	}
	if !slices.Equal(connected, []int{mid.Process.Pid}) || !slices.Contains(suspect, unrelated.Process.Pid) {
		t.Fatalf("watching %v; want nginx %d connected and %d a suspect", set.Describe(), mid.Process.Pid, unrelated.Process.Pid)
	}
}

// A service's worker: the same program as the replicas behind the
// target ("app", the same executable), connected to their database
// ("db"), but nothing watched connects to it, so no hop reaches it. It is
// watched as the app's sibling; another run of the program, connected to
// another database, is not.
func TestDiscoverWatchesTheWorkerBesideTheReplicas(t *testing.T) {
	_, dport := start(t, "db", "backend")
	app, aport := proxy(t, "app", dport)
	_, fport := proxy(t, "front", aport)
	worker, wport := proxy(t, "app", dport)
	_, xport := start(t, "db", "backend")
	other, oport := proxy(t, "app", xport)
	// Each proxy keeps its upstream connection open after a request.
	set := discoverAfterRequests(t, fport, wport, oport)
	byName := map[string][]int{}
	for _, g := range set.Groups() {
		if !g.Suspect { // the machine's PostgreSQL, say, runs here too
			byName[g.Name] = append(byName[g.Name], g.Roots...)
		}
	}
	if !slices.Equal(byName["app"], []int{app.Process.Pid}) || !slices.Equal(byName["app (not serving the port)"], []int{worker.Process.Pid}) {
		t.Fatalf("watching %v; want app %d behind the target and %d beside it, not %d", set.Describe(), app.Process.Pid, worker.Process.Pid, other.Process.Pid)
	}
	for _, d := range set.Describe() {
		if strings.Contains(d, fmt.Sprint(other.Process.Pid)) {
			t.Fatalf("watching %v; the app %d on another database is not this system's", set.Describe(), other.Process.Pid)
		}
	}
	t.Logf("watching %s", strings.Join(set.Describe(), "; "))
}

// A replica the proxy first forwards to after discovery was watched as a
// sibling (the same program, connected to the database, reached by no
// hop yet) and stayed there: nginx in front of four replicas had used one
// when loadlab looked, and three replicas were counted as the worker.
// Once a hop reaches it, it is one of the replicas.
func TestFollowMovesASiblingTheProxyReachesLaterToTheReplicas(t *testing.T) {
	_, dport := start(t, "db", "backend")
	first, fport := proxy(t, "app", dport)
	second, sport := proxy(t, "app", dport)
	_, rport := start(t, "front", "router",
		fmt.Sprintf("PROCWATCH_BACKEND=http://127.0.0.1:%d", fport), fmt.Sprintf("PROCWATCH_BACKEND2=http://127.0.0.1:%d", sport))
	// The second replica holds its connection to the database, the router
	// only one to the first.
	set := discoverAfterRequests(t, rport, sport)
	byName := groupsByName(set)
	if !slices.Equal(byName["app"], []int{first.Process.Pid}) || !slices.Equal(byName["app (not serving the port)"], []int{second.Process.Pid}) {
		t.Fatalf("before the router used the second replica: watching %v", set.Describe())
	}
	getPath(t, rport, "/second")
	set.Refresh()
	byName = groupsByName(set)
	got := slices.Sorted(slices.Values(byName["app"]))
	want := slices.Sorted(slices.Values([]int{first.Process.Pid, second.Process.Pid}))
	if !slices.Equal(got, want) || len(byName["app (not serving the port)"]) != 0 {
		t.Fatalf("after the router used the second replica: watching %v; want both replicas %v as app and no sibling", set.Describe(), want)
	}
	// The report names both replicas' ports, not the first one's alone.
	ports := fmt.Sprintf("connected to on port %d, %d", min(fport, sport), max(fport, sport))
	if !slices.ContainsFunc(set.Describe(), func(d string) bool { return strings.HasPrefix(d, "app: ") && strings.HasSuffix(d, ports) }) {
		t.Fatalf("watching %v; want the app group %q", set.Describe(), ports)
	}
}

// groupsByName is the roots of the connected groups by name.
func groupsByName(set *Set) map[string][]int {
	byName := map[string][]int{}
	for _, g := range set.Groups() {
		if !g.Suspect {
			byName[g.Name] = append(byName[g.Name], g.Roots...)
		}
	}
	return byName
}

// getPath sends one request for path to port.
func getPath(t *testing.T, port int, path string) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// A process in a cgroup held to a tenth of a core: its quota and how
// often the quota ran out are read from the cgroup (v1 here; v2 where
// the machine has it).
func TestQuotaAndThrottling(t *testing.T) {
	v1, v2 := cpuMounts()
	var dir string
	switch {
	case v2 != nil && readString(filepath.Join(v2.point, "cgroup.controllers")) != "" && strings.Contains(readString(filepath.Join(v2.point, "cgroup.subtree_control")), "cpu"):
		dir = filepath.Join(v2.point, fmt.Sprintf("procwatch-test-%d", os.Getpid()))
	case v1 != nil:
		dir = filepath.Join(v1.point, fmt.Sprintf("procwatch-test-%d", os.Getpid()))
	}
	if dir == "" || os.Mkdir(dir, 0o755) != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("cannot create a CPU cgroup; CI runs as root on a machine with cgroups")
		}
		t.Skip("cannot create a CPU cgroup here (not root?): quota reading not tested")
	}
	spinner, _ := start(t, "spin", "spin")
	t.Cleanup(func() {
		spinner.Process.Kill()
		spinner.Wait()
		os.Remove(dir)
	})
	pid := strconv.Itoa(spinner.Process.Pid)
	var err error
	if strings.HasPrefix(dir, v1OrEmpty(v1)) && v1 != nil {
		err = os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), []byte("100000"), 0o644)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte("10000"), 0o644)
		}
	} else {
		err = os.WriteFile(filepath.Join(dir, "cpu.max"), []byte("10000 100000"), 0o644)
	}
	// A tenth of a core, and a high priority so that a busy machine still
	// gives the spinner that much: it must reach its quota to be throttled.
	os.WriteFile(fmt.Sprintf("/proc/%s/autogroup", pid), []byte("-10"), 0o644) //nolint:errcheck // best effort
	syscall.Setpriority(syscall.PRIO_PROCESS, spinner.Process.Pid, -10)        //nolint:errcheck // best effort
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(pid), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	g, err := ByPID("spinner", spinner.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	set := NewSet(g)
	before, err := set.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the kernel has throttled the spinner a few times and
	// counted the time it held it, as read through procwatch. How many of the periods that takes depends on how
	// much CPU a busy machine leaves the spinner, so no share is asserted:
	// a misread count never gets there.
	var after []Usage
	testwait.Eventually(t, 60*time.Second, func() error {
		u, err := set.Sample(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		after = u
		periods, throttled := u[0].Periods-before[0].Periods, u[0].Throttled-before[0].Throttled
		held := u[0].ThrottledSeconds - before[0].ThrottledSeconds
		if throttled < 3 || held <= 0 {
			return fmt.Errorf("throttled in %.0f of %.0f enforcement periods since the quota was set, %.6fs held; want 3 and time held", throttled, periods, held)
		}
		return nil
	})
	if after[0].QuotaCores != 0.1 || after[0].Quotas != 1 {
		t.Fatalf("quota %.2f cores in %d cgroups, want 0.1 in 1", after[0].QuotaCores, after[0].Quotas)
	}
	periods, throttled := after[0].Periods-before[0].Periods, after[0].Throttled-before[0].Throttled
	if throttled > periods {
		t.Fatalf("throttled in %.0f of %.0f periods: more than every period", throttled, periods)
	}
	t.Logf("throttled in %.0f of %.0f periods", throttled, periods)
}

func v1OrEmpty(m *cgroupMount) string {
	if m == nil {
		return "\x00"
	}
	return m.point
}

func TestParseMetrics(t *testing.T) {
	text := "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n" +
		"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total_other 9\nprocess_cpu_seconds_total 12.5\n"
	// The shop's own in-flight gauges: a route label holding braces must
	// count like any other (a hand-written parser once dropped it: 3, not 7).
	text += "# TYPE shop_http_requests_in_flight gauge\n" +
		"shop_http_requests_in_flight{route=\"GET /v1/menu\"} 3\nshop_http_requests_in_flight{route=\"GET /v1/items/{id}\"} 4\n"
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil || m.cpu != 12.5 || !m.hasCPU || m.inFlight != 7 || !m.hasInFlight {
		t.Fatalf("got %+v, %v; want CPU 12.5 and 7 in flight", m, err)
	}
	if m, err := parseMetrics(strings.NewReader("go_goroutines 5\n")); err != nil || m.hasCPU || m.hasInFlight {
		t.Fatalf("found metrics that are not there: %+v", m)
	}
	if _, err := parseMetrics(strings.NewReader("process_cpu_seconds_total twelve\n")); err == nil {
		t.Fatal("a malformed sample was accepted")
	}
}

func TestWatchByMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/broken":
			http.Error(w, "no", http.StatusInternalServerError)
		case "/nocpu":
			fmt.Fprintln(w, "go_goroutines 3")
		default:
			fmt.Fprintln(w, "process_cpu_seconds_total 3.25\nhttp_requests_in_flight 4")
		}
	}))
	defer srv.Close()
	set := NewSet(ByMetrics("api", srv.URL+"/metrics"))
	u, err := set.Sample(context.Background())
	if err != nil || u[0].CPU != 3.25 || u[0].Local || set.Source() != "metrics" {
		t.Fatalf("got %+v, %v", u, err)
	}
	if n, err := set.InFlight(context.Background()); err != nil || n != 4 {
		t.Fatalf("in flight %v, %v", n, err)
	}
	for _, path := range []string{"/broken", "/nocpu"} {
		if _, err := NewSet(ByMetrics("api", srv.URL+path)).Sample(context.Background()); err == nil {
			t.Fatalf("%s was accepted", path)
		}
	}
}

// This process's own CPU and run-queue wait.
func TestSampleThisProcess(t *testing.T) {
	set := NewSet(Self())
	a, err := set.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// More spinning threads than cores must queue for a CPU; GOMAXPROCS is
	// raised so that the kernel, not Go's scheduler, makes them queue.
	threads := 3 * runtime.NumCPU()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
	var wg sync.WaitGroup
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			spin(300 * time.Millisecond)
		}()
	}
	wg.Wait()
	b, err := set.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Each thread gets about a third of the 300ms: some 0.2s of waiting
	// per thread if the kernel is fair; require a quarter of that in all.
	if b[0].Wait-a[0].Wait < 0.05*float64(threads) {
		t.Fatalf("%d spinning threads on %d cores for 300ms waited %.3fs", threads, runtime.NumCPU(), b[0].Wait-a[0].Wait)
	}
	// 200 ms of one thread's CPU, however long other work makes that take;
	// /proc counts in clock ticks, so allow one of them.
	burnThreadCPU(200 * time.Millisecond)
	c, _ := set.Sample(context.Background())
	if c[0].CPU-b[0].CPU < 0.19 {
		t.Fatalf("spending 200ms of CPU added %.2fs to the process's CPU", c[0].CPU-b[0].CPU)
	}
	if _, err := ByPID("gone", 1<<30); err == nil {
		t.Fatal("a missing process was accepted")
	}
}

// burnThreadCPU spends d of this thread's CPU time (not wall time, which a
// busy machine stretches).
func burnThreadCPU(d time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := func() time.Duration {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
			panic(err)
		}
		return time.Duration(ts.Nano())
	}
	for start := cpu(); cpu()-start < d; {
	}
}

// A PostgreSQL backend that ends between two samples takes its wait with
// it; the difference is taken thread by thread, so it does not go
// negative, and a thread that began in between counts whole.
func TestWaitSinceSurvivesThreadsThatEnd(t *testing.T) {
	before := Usage{Wait: 5.5, waits: map[int]float64{10: 0.5, 11: 5}}
	after := Usage{Wait: 0.9, waits: map[int]float64{10: 0.7, 12: 0.2}}
	if got := after.WaitSince(before); math.Abs(got-0.4) > 1e-9 {
		t.Fatalf("wait since = %v, want 0.2 + 0.2", got)
	}
	metrics := Usage{Wait: math.NaN()}
	if got := metrics.WaitSince(metrics); !math.IsNaN(got) {
		t.Fatalf("unknown wait gave %v", got)
	}
}

// Of a thread's run-queue wait, the share after its involuntary context
// switches is CPU it wanted; the share after voluntary ones (it blocked
// and was woken) is the machine's wake-up latency. The shop's threads
// behind a global lock at a load average of 30 switched both ways; a
// CPU-burning thread only involuntarily.
func TestPreemptedWaitSinceSharesEachThreadsWaitByItsSwitches(t *testing.T) {
	before := Usage{waits: map[int]float64{1: 1, 2: 3, 3: 0.5, 9: 4},
		switches: map[int]switches{1: {voluntary: 100, involuntary: 10}, 2: {voluntary: 5, involuntary: 500}, 3: {}, 9: {voluntary: 50}}}
	after := Usage{waits: map[int]float64{1: 2, 2: 4, 3: 0.7, 4: 0.3, 9: 1},
		switches: map[int]switches{1: {voluntary: 190, involuntary: 20}, 2: {voluntary: 5, involuntary: 1500}, 3: {},
			4: {voluntary: 1, involuntary: 2}, 9: {voluntary: 3, involuntary: 1}}}
	// 1: 1 s of wait, 10 of 100 switches involuntary: 0.1. 2: 1 s, all
	// involuntary. 3: 0.2 s runnable without running at all: all. 4: new,
	// 0.3 s, 2 of 3. 9: an ended thread's id reused (its counts fell):
	// new, 1 s, 1 of 4.
	want := 0.1 + 1 + 0.2 + 0.2 + 0.25
	if got := after.PreemptedWaitSince(before); math.Abs(got-want) > 1e-9 {
		t.Fatalf("preempted wait since = %v, want %v", got, want)
	}
	metrics := Usage{Wait: math.NaN()}
	if got := metrics.PreemptedWaitSince(metrics); !math.IsNaN(got) {
		t.Fatalf("unknown switches gave %v", got)
	}
}
