// Package procwatch finds the local processes that serve a URL and samples
// what each spends: CPU time, time its threads waited in the run queue for
// a CPU, and, for a process held to a cgroup CPU quota, the quota and how
// often it ran out. A server is often several processes (nginx's master
// and workers, pre-forked servers, a proxy in front of replicas that talk
// to a database), and the one that owns the listening socket is often not
// the one doing the work; procwatch follows the socket to every process
// holding it, their children, and the local services they connect to.
package procwatch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"
)

// userHZ is the unit of /proc/PID/stat's CPU times; it is 100 on every
// Linux architecture Go supports (procfs assumes the same).
const userHZ = 100

// Group is one watched part of the server side: a process with its
// children, several replicas of one program, or a process seen only
// through its Prometheus metrics.
type Group struct {
	Name string
	// Roots are the members' root processes (one per replica); each
	// sample counts them and all their descendants at that moment.
	Roots []int
	// Metrics, for a group that is not local: its Prometheus endpoint.
	Metrics string
	// Why says how the group was found, for the report.
	Why string
	// Suspect: found only by its name running on this machine, not by a
	// connection from the server side; it is watched and reported, but
	// cannot be the server's bottleneck unless a connection links it.
	Suspect bool
}

// Usage is a group's cumulative use at one moment. Fields that cannot be
// seen are NaN.
type Usage struct {
	Name string
	// OK is false when the group could not be read this time (its
	// processes ended, its endpoint failed); its figures are then NaN.
	OK        bool
	Members   int     // replicas (roots); 1 for a metrics endpoint
	Processes int     // processes counted, children included
	Local     bool    // read from /proc (not from metrics)
	Suspect   bool    // see Group.Suspect
	CPU       float64 // seconds of CPU, user and system
	Wait      float64 // seconds its threads waited runnable for a CPU
	// QuotaCores is the CPU quota of the cgroups holding the members, in
	// cores, summed over distinct cgroups (Quotas of them); NaN without.
	QuotaCores float64
	Quotas     int
	// Periods and Throttled count the quota's enforcement periods and
	// those in which it ran out; ThrottledSeconds is the time held.
	Periods, Throttled, ThrottledSeconds float64
	// waits is each thread's run-queue wait: a thread that ends takes its
	// wait with it, so differences are taken thread by thread.
	waits map[int]float64
	// switches is each thread's count of context switches, voluntary
	// (it blocked) and involuntary (it was preempted), for
	// PreemptedWaitSince.
	switches map[int]switches
}

// switches are a thread's context switches so far.
type switches struct{ voluntary, involuntary uint64 }

// WaitSince is the run-queue wait between an earlier sample and this one,
// thread by thread: threads that ended in between drop out of both sides
// instead of making the difference negative (PostgreSQL's backends come
// and go), and threads that began count whole.
func (u Usage) WaitSince(before Usage) float64 {
	if u.waits == nil || before.waits == nil {
		return u.Wait - before.Wait
	}
	var sum float64
	for tid, w := range u.waits {
		sum += w - before.waits[tid]
	}
	return sum
}

// PreemptedWaitSince is the part of WaitSince that the threads spent
// runnable after being preempted, wanting to go on running: CPU they
// asked for and did not get. The rest is wake-up latency: a thread that
// blocked (on a lock, a socket, a timer) and was woken waits its turn in
// the run queue before its next short burst, the longer the busier the
// machine, and wanted only that burst. A Go server's threads wake for
// every hand-off (netpoller, idle processors looking for work, the
// runtime's monitor): at a load average of 30 on 2 cores an idle shop's
// threads waited 0.3 cores' worth, and one behind a global lock 2 cores'
// worth, which taken as demand made it look CPU-bound. Schedstat has one
// wait per time slice run; each thread's wait is shared between the two
// causes in proportion to its involuntary and voluntary context switches
// (/proc/PID/task/TID/status) over the same interval. NaN when unknown.
func (u Usage) PreemptedWaitSince(before Usage) float64 {
	if u.switches == nil || before.switches == nil {
		return math.NaN()
	}
	var sum float64
	for tid, w := range u.waits {
		now, ok := u.switches[tid]
		if !ok {
			continue
		}
		was, wait := before.switches[tid], w-before.waits[tid]
		if now.voluntary < was.voluntary || now.involuntary < was.involuntary || wait < 0 {
			// A new thread under an ended one's id: count it whole.
			was, wait = switches{}, w
		}
		sum += preemptedShare(wait, now.voluntary-was.voluntary, now.involuntary-was.involuntary)
	}
	return sum
}

// preemptedShare is the part of a thread's run-queue wait that followed
// its involuntary switches. A thread that waited without switching at
// all was runnable throughout and never ran: all of it.
func preemptedShare(wait float64, voluntary, involuntary uint64) float64 {
	if voluntary+involuntary == 0 {
		return wait
	}
	return wait * float64(involuntary) / float64(voluntary+involuntary)
}

// Set is the groups a diagnosis watches. It is safe for concurrent use;
// Follow adds to it while load runs.
type Set struct {
	mu     sync.Mutex
	groups []Group
	self   int // loadlab's own pid, never watched as the server
	client *http.Client
}

// NewSet watches the given groups.
func NewSet(groups ...Group) *Set {
	return &Set{groups: groups, client: &http.Client{Timeout: 5 * time.Second}}
}

// Groups returns the watched groups.
func (s *Set) Groups() []Group {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.groups)
}

// Len is the number of watched groups.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.groups)
}

// Source says where the figures come from: "pid" when any group is local,
// "metrics" when all come from endpoints, "none" when nothing is watched.
func (s *Set) Source() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	src := "none"
	for _, g := range s.groups {
		if g.Metrics == "" {
			return "pid"
		}
		src = "metrics"
	}
	return src
}

// Describe is one line per group: its name, processes and why.
func (s *Set) Describe() []string {
	var out []string
	for _, g := range s.Groups() {
		if g.Metrics != "" {
			out = append(out, fmt.Sprintf("%s: CPU from %s", g.Name, g.Metrics))
			continue
		}
		pids := make([]string, len(g.Roots))
		for i, p := range g.Roots {
			pids[i] = fmt.Sprint(p)
		}
		line := fmt.Sprintf("%s: process %s with its children", g.Name, strings.Join(pids, ", "))
		if len(g.Roots) > 1 {
			line = fmt.Sprintf("%s: %d processes (%s) with their children", g.Name, len(g.Roots), strings.Join(pids, ", "))
		}
		if g.Why != "" {
			line += ", " + g.Why
		}
		out = append(out, line)
	}
	return out
}

// add adds a group of local roots unless a root is already watched; it
// reports whether it added anything.
func (s *Set) add(g Group) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, have := range s.groups {
		for _, r := range g.Roots {
			if slices.Contains(have.Roots, r) {
				return false
			}
		}
	}
	s.groups = append(s.groups, g)
	return true
}

// Sample reads every group's cumulative use, in the order of Groups. A
// group that cannot be read is returned with OK false, and its error
// joined into the returned one; the others are still read.
func (s *Set) Sample(ctx context.Context) ([]Usage, error) {
	groups := s.Groups()
	var sc *scan
	var errs []error
	out := make([]Usage, 0, len(groups))
	for _, g := range groups {
		failed := Usage{Name: g.Name, Suspect: g.Suspect, Members: max(len(g.Roots), 1), CPU: math.NaN(), Wait: math.NaN(),
			QuotaCores: math.NaN(), Periods: math.NaN(), Throttled: math.NaN(), ThrottledSeconds: math.NaN()}
		if g.Metrics != "" {
			cpu, err := s.scrape(ctx, g.Metrics)
			if err != nil {
				errs = append(errs, fmt.Errorf("watch %s: %w", g.Name, err))
				out = append(out, failed)
				continue
			}
			out = append(out, Usage{Name: g.Name, OK: true, Members: 1, Processes: 1, CPU: cpu.cpu, Wait: math.NaN(),
				QuotaCores: math.NaN(), Periods: math.NaN(), Throttled: math.NaN(), ThrottledSeconds: math.NaN()})
			continue
		}
		if sc == nil {
			var err error
			if sc, err = newScan(false); err != nil {
				return nil, err
			}
		}
		u, err := localUsage(sc, g)
		if err != nil {
			errs = append(errs, err)
			out = append(out, failed)
			continue
		}
		out = append(out, u)
	}
	return out, errors.Join(errs...)
}

// InFlight sums the in-flight gauges of the groups watched through
// metrics; it fails when there are none.
func (s *Set) InFlight(ctx context.Context) (float64, error) {
	var sum float64
	found := false
	for _, g := range s.Groups() {
		if g.Metrics == "" {
			continue
		}
		m, err := s.scrape(ctx, g.Metrics)
		if err != nil {
			return 0, err
		}
		if m.hasInFlight {
			sum += m.inFlight
			found = true
		}
	}
	if !found {
		return 0, errors.New("no in-flight gauge among the watched metrics")
	}
	return sum, nil
}

// localUsage adds up a local group's processes.
func localUsage(sc *scan, g Group) (Usage, error) {
	u := Usage{Name: g.Name, OK: true, Suspect: g.Suspect, Members: len(g.Roots), Local: true, QuotaCores: math.NaN(),
		Periods: math.NaN(), Throttled: math.NaN(), ThrottledSeconds: math.NaN(), waits: map[int]float64{},
		switches: map[int]switches{}}
	alive := 0
	for _, root := range g.Roots {
		if sc.procs[root] == nil {
			continue
		}
		alive++
		for _, pid := range sc.tree(root) {
			p, err := procfs.NewProc(pid)
			if err != nil {
				continue
			}
			st, err := p.Stat()
			if err != nil {
				continue // it exited
			}
			u.Processes++
			// Children that exited count in their parent's cutime and
			// cstime, so a process that forks per request (or a
			// PostgreSQL backend that ends) keeps its CPU in the sum.
			u.CPU += float64(int(st.UTime)+int(st.STime)+st.CUTime+st.CSTime) / userHZ
			threads, err := procfs.AllThreads(pid)
			if err != nil {
				continue
			}
			for _, t := range threads {
				if ss, err := t.Schedstat(); err == nil {
					w := float64(ss.WaitingNanoseconds) / 1e9
					u.Wait += w
					u.waits[t.PID] = w
				}
				if st, err := t.NewStatus(); err == nil {
					u.switches[t.PID] = switches{voluntary: st.VoluntaryCtxtSwitches, involuntary: st.NonVoluntaryCtxtSwitches}
				}
			}
		}
	}
	if alive == 0 {
		return u, fmt.Errorf("watch %s: none of its processes (%v) is running", g.Name, g.Roots)
	}
	seen := map[string]bool{}
	quota, periods, throttled, held := 0.0, 0.0, 0.0, 0.0
	for _, root := range g.Roots {
		l, ok := limitOf(root)
		if !ok {
			return u, nil // a member without a quota: the group has none
		}
		if seen[l.dir] {
			continue
		}
		seen[l.dir] = true
		quota += l.cores
		periods += l.periods
		throttled += l.throttled
		held += l.throttledSeconds
	}
	u.QuotaCores, u.Quotas, u.Periods, u.Throttled, u.ThrottledSeconds = quota, len(seen), periods, throttled, held
	return u, nil
}

// Self is loadlab's own process, to sample the generator's wait.
func Self() Group {
	p, _ := procfs.Self()
	return Group{Name: "loadlab", Roots: []int{p.PID}}
}

// ByPID is a group for --watch NAME=PID: the processes and their children.
func ByPID(name string, pids ...int) (Group, error) {
	for _, pid := range pids {
		if _, err := procfs.NewProc(pid); err != nil {
			return Group{}, fmt.Errorf("watch %s: no process %d", name, pid)
		}
	}
	return Group{Name: name, Roots: pids, Why: "as given"}, nil
}

// ByMetrics is a group for --watch NAME=URL, read from its
// process_cpu_seconds_total.
func ByMetrics(name, url string) Group { return Group{Name: name, Metrics: url, Why: "as given"} }

// names gives the usual suspects the names people know them by.
var names = map[string]string{"postgres": "PostgreSQL", "nginx": "nginx", "redis-server": "Redis", "nats-server": "NATS"}

// displayName is a process's name in a verdict.
func displayName(comm string) string {
	if n, ok := names[comm]; ok {
		return n
	}
	return comm
}

// Discover finds the local processes serving port: every process holding
// its listening socket, with their children (nginx's master and workers, a
// pre-forked server); the local services those connect to (a proxy's
// replicas, their database), followed up to three hops; and the usual
// suspects (PostgreSQL, nginx, Redis, NATS) running here, unless
// suspects is false. A proxy's upstream connections may exist only while
// it forwards a request: call Follow while load runs to catch them.
func Discover(port int, suspects bool) (*Set, error) {
	sc, err := newScan(true)
	if err != nil {
		return nil, err
	}
	pids := sc.listenerPIDs(port)
	if len(pids) == 0 {
		if len(sc.listeners[port]) > 0 {
			return nil, fmt.Errorf("port %d is listening, but its process cannot be seen (another user's?); pass --watch NAME=PID", port)
		}
		return nil, fmt.Errorf("no local process listens on port %d", port)
	}
	s := NewSet()
	s.self = sc.self()
	rs := roots(pids, sc)
	s.add(Group{Name: displayName(sc.procs[rs[0]].comm), Roots: rs, Why: fmt.Sprintf("listening on port %d", port)})
	s.follow(sc)
	if suspects {
		s.addSuspects(sc)
	}
	return s, nil
}

// self is loadlab's pid.
func (sc *scan) self() int {
	p, err := procfs.Self()
	if err != nil {
		return 0
	}
	return p.PID
}

// Refresh looks once, now, for the local services the watched processes
// talk to (see Follow).
func (s *Set) Refresh() {
	if sc, err := newScan(true); err == nil {
		s.follow(sc)
	}
}

// Follow rescans the watched processes' connections every interval until
// the returned stop is called, adding the local services they talk to.
func (s *Set) Follow(ctx context.Context, every time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if sc, err := newScan(true); err == nil {
				s.follow(sc)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// follow adds, hop by hop, the local listeners the watched local processes
// connected to the target hold connections to, one group per program
// (replicas of one program are one group of several members). Suspects
// are not followed: an nginx that only runs here leads to another
// system's replicas, which are not this target's, however they are named.
func (s *Set) follow(sc *scan) {
	own := ownAddresses()
	s.hops(sc, own)
	s.siblings(sc, own)
}

// hops is follow's hop by hop search.
func (s *Set) hops(sc *scan, own map[string]bool) {
	for range 3 {
		// pids are followed; reached are those a hop already reached (a
		// sibling reached by a hop is not: adopt moves it).
		var pids, reached []int
		for _, g := range s.Groups() {
			if g.Suspect {
				continue
			}
			for _, r := range g.Roots {
				pids = append(pids, sc.tree(r)...)
				if !strings.HasSuffix(g.Name, siblingSuffix) {
					reached = append(reached, sc.tree(r)...)
				}
			}
		}
		byName := map[string][]int{}
		ports := map[string][]int{}
		for _, port := range sc.upstreamPorts(pids, own) {
			for _, r := range roots(sc.listenerPIDs(port), sc) {
				if r == s.self || slices.Contains(reached, r) {
					continue
				}
				name := displayName(sc.procs[r].comm)
				if !slices.Contains(byName[name], r) {
					byName[name] = append(byName[name], r)
					ports[name] = append(ports[name], port)
				}
			}
		}
		added := false
		for _, name := range sortedKeys(byName) {
			sort.Ints(ports[name])
			why := connectedOn + joinInts(ports[name])
			if s.adopt(name, byName[name], why) {
				added = true
			}
		}
		if !added {
			return
		}
	}
}

// siblingSuffix ends the name of a group found by siblings.
const siblingSuffix = " (not serving the port)"

// siblings watches the processes that run the same program as a watched
// group (the same name and executable file) and hold connections to a
// watched server, though nothing watched connects to them: a service's
// background worker beside its replicas, which talks to their database
// but serves none of the target's traffic, so no hop from the target
// reaches it. They are one group per program, "NAME (not serving the
// port)". The executable file keeps out another system's copies of the
// program (each cluster runs its own copy of the binary) and the
// connection keeps out its other runs.
func (s *Set) siblings(sc *scan, own map[string]bool) {
	watched := map[int]bool{}
	exes := map[string]map[string]string{} // name -> executable -> group
	for _, g := range s.Groups() {
		if g.Suspect || g.Metrics != "" || strings.HasSuffix(g.Name, siblingSuffix) {
			continue
		}
		for _, r := range g.Roots {
			for _, pid := range sc.tree(r) {
				watched[pid] = true
			}
			if p := sc.procs[r]; p != nil {
				if exes[p.comm] == nil {
					exes[p.comm] = map[string]string{}
				}
				exes[p.comm][exeOf(r)] = g.Name
			}
		}
	}
	served := map[int]bool{} // the ports the watched processes listen on
	for port, inodes := range sc.listeners {
		for _, in := range inodes {
			for _, pid := range sc.owners[in] {
				served[port] = served[port] || watched[pid]
			}
		}
	}
	byName := map[string][]int{}
	for pid, p := range sc.procs {
		if watched[pid] || pid == s.self || exes[p.comm] == nil {
			continue
		}
		if parent := sc.procs[p.ppid]; parent != nil && parent.comm == p.comm {
			continue // a child: counted with its root
		}
		if !slices.ContainsFunc(sc.upstreamPorts([]int{pid}, own), func(port int) bool { return served[port] }) {
			continue
		}
		if name, ok := exes[p.comm][exeOf(pid)]; ok && exeOf(pid) != "" {
			byName[name] = append(byName[name], pid)
		}
	}
	for _, name := range sortedKeys(byName) {
		rs := byName[name]
		sort.Ints(rs)
		s.adopt(name+siblingSuffix, rs, "the same program as "+name+", connected to what it uses")
	}
}

// exeOf is the executable file a process runs ("" when not visible).
func exeOf(pid int) string {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	return exe
}

// adopt adds roots found connected to the group of that name that is
// connected too (a new one if there is none), reporting whether anything
// was added. A root watched as a suspect moves out of its suspect group:
// this one PostgreSQL is connected, the others running here are still
// only suspects. A root watched as a sibling moves out of its sibling
// group when a hop reaches it: a proxy opens its connection to a replica
// only when it first forwards a request there, so a replica the proxy had
// not used yet when siblings looked was taken for a worker beside the
// replicas (a cluster of four was watched as one replica and "the worker"
// of four processes, three of them replicas under their quota).
func (s *Set) adopt(name string, roots []int, why string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	hop := !strings.HasSuffix(name, siblingSuffix)
	movable := func(g Group) bool { return g.Suspect || (hop && strings.HasSuffix(g.Name, siblingSuffix)) }
	var fresh []int
	for _, r := range roots {
		taken := false
		for _, g := range s.groups {
			taken = taken || (!movable(g) && slices.Contains(g.Roots, r))
		}
		if !taken {
			fresh = append(fresh, r)
		}
	}
	if len(fresh) == 0 {
		return false
	}
	kept := s.groups[:0]
	for _, g := range s.groups {
		if movable(g) {
			g.Roots = slices.DeleteFunc(slices.Clone(g.Roots), func(r int) bool { return slices.Contains(fresh, r) })
			if len(g.Roots) == 0 {
				continue
			}
		}
		kept = append(kept, g)
	}
	s.groups = kept
	for i, g := range s.groups {
		if g.Name == name && !g.Suspect && g.Metrics == "" {
			s.groups[i].Roots = append(slices.Clone(g.Roots), fresh...)
			s.groups[i].Why = mergePorts(g.Why, why)
			return true
		}
	}
	s.groups = append(s.groups, Group{Name: name, Roots: fresh, Why: why})
	return true
}

// connectedOn begins the why of a group a hop found (hops).
const connectedOn = "connected to on port "

// mergePorts is the why of a group a hop found again, on more ports: the
// ports of both, so a group of four replicas does not name only the port
// of the first one found.
func mergePorts(old, found string) string {
	a, okA := strings.CutPrefix(old, connectedOn)
	b, okB := strings.CutPrefix(found, connectedOn)
	if !okA || !okB {
		return old
	}
	var ports []int
	for _, p := range strings.Split(a+", "+b, ", ") {
		if n, err := strconv.Atoi(p); err == nil && !slices.Contains(ports, n) {
			ports = append(ports, n)
		}
	}
	sort.Ints(ports)
	return connectedOn + joinInts(ports)
}

// addSuspects watches the usual suspects found running here.
func (s *Set) addSuspects(sc *scan) {
	byName := map[string][]int{}
	for pid, p := range sc.procs {
		if _, ok := names[p.comm]; !ok || pid == s.self {
			continue
		}
		if parent := sc.procs[p.ppid]; parent != nil && parent.comm == p.comm {
			continue // a worker or backend: counted with its parent
		}
		byName[displayName(p.comm)] = append(byName[displayName(p.comm)], pid)
	}
	watched := map[int]bool{}
	for _, g := range s.Groups() {
		for _, r := range g.Roots {
			watched[r] = true
		}
	}
	for _, name := range sortedKeys(byName) {
		// The ones found connected are watched already; the others of
		// the name are still suspects.
		rs := slices.DeleteFunc(byName[name], func(r int) bool { return watched[r] })
		if len(rs) == 0 {
			continue
		}
		sort.Ints(rs)
		s.add(Group{Name: name, Roots: rs, Why: "running on this machine", Suspect: true})
	}
}

func sortedKeys(m map[string][]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
