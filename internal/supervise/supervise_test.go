package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
)

// The test binary doubles as the supervised program: with roleEnv set it
// serves GOMAXPROCS on the port given, or exits at once.
const roleEnv = "SUPERVISE_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "serve":
		ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
		if err != nil {
			fmt.Println(err) // "bind: address already in use"
			os.Exit(1)
		}
		http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, runtime.GOMAXPROCS(0))
		}))
		os.Exit(0)
	case "inherit":
		ln, err := net.FileListener(os.NewFile(3, "listener"))
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, runtime.GOMAXPROCS(0))
		}))
		os.Exit(0)
	case "fail":
		fmt.Println("cannot open the database: no such file")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func get(url string) (string, error) {
	res, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return string(b), err
}

func serveSpec(t *testing.T, name, role string) Spec {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Spec{
		Name: name, Path: self, Ports: []string{"http"},
		Args: func(p map[string]int) []string { return []string{strconv.Itoa(p["http"])} },
		Env:  append(os.Environ(), roleEnv+"="+role),
		Ready: func(ctx context.Context, r Record) error {
			_, err := get(r.URL("http"))
			return err
		},
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// Start records a process that a later command finds again, stops it by
// its record, and starts it again on its old port.
func TestStartRecordStop(t *testing.T) {
	d := Dir(t.TempDir())
	r, err := d.Start(ctx(t), serveSpec(t, "one", "serve"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Kill(context.Background()) })
	loaded, ok, err := d.Load("one")
	if err != nil || !ok || loaded.PID != r.PID || loaded.Start == 0 || !loaded.Alive() {
		t.Fatalf("record of one: %+v %v %v", loaded, ok, err)
	}
	if list, _ := d.List(); len(list) != 1 || list[0].Name != "one" {
		t.Fatalf("List: %+v", list)
	}
	if killed, err := loaded.Stop(ctx(t), syscall.SIGTERM, 30*time.Second); err != nil || killed {
		t.Fatalf("Stop: killed %v, %v", killed, err)
	}
	if loaded.Alive() {
		t.Fatal("alive after Stop")
	}
	again, err := d.Start(ctx(t), serveSpec(t, "one", "serve"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Kill(context.Background()) })
	if again.Port("http") != r.Port("http") || again.PID == r.PID {
		t.Fatalf("started again on port %d (pid %d), was %d (pid %d): want the old port, a new process",
			again.Port("http"), again.PID, r.Port("http"), r.PID)
	}
}

// A pid recycled by another process is not the recorded process: it is
// neither alive nor signalled.
func TestARecycledPidIsNotTheRecordedProcess(t *testing.T) {
	me := Record{Name: "me", PID: os.Getpid()}
	st, ok := startTime(me.PID)
	if !ok {
		t.Fatal("no start time of this test process")
	}
	me.Start = st + 1 // as if another process had had this pid
	if me.Alive() {
		t.Fatal("a record with another start time is alive")
	}
	if killed, err := me.Stop(ctx(t), syscall.SIGKILL, time.Second); err != nil || killed {
		t.Fatalf("Stop of a recycled pid: %v %v", killed, err) // and this test still runs
	}
}

// A process handed a port another took meanwhile is started again on a
// new one (the cluster's processes starting side by side).
func TestStartAgainOnAPortTakenMeanwhile(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	d := Dir(t.TempDir())
	if err := d.Save(Record{Name: "one", Ports: map[string]int{"http": taken}}); err != nil {
		t.Fatal(err)
	}
	spec := serveSpec(t, "one", "serve")
	var notes []string
	spec.Logf = func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }
	r, err := d.Start(ctx(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Kill(context.Background()) })
	if r.Port("http") == taken || !r.Alive() {
		t.Fatalf("one runs on %d (alive %v); %d was taken", r.Port("http"), r.Alive(), taken)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], PortTakenNotice) {
		t.Fatalf("notes %q", notes)
	}
}

// A process that exits while starting is a StartError quoting its log,
// and nothing of it runs. Whether Start sees it gone before it records
// the process ("exited at once") or while it waits for it to be ready
// ("exited while starting") is the scheduler's choice: a CI run at a load
// average of 36 saw the first.
func TestAProcessThatFailsToStartSaysWhy(t *testing.T) {
	d := Dir(t.TempDir())
	r, err := d.Start(ctx(t), serveSpec(t, "bad", "fail"))
	var se *StartError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), ": cannot open the database") ||
		(!strings.Contains(err.Error(), "bad exited while starting") && !strings.Contains(err.Error(), "bad exited at once")) {
		t.Fatalf("Start: %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("the error is not one line: %q", err)
	}
	if r.Alive() {
		t.Fatal("the failed process runs")
	}
}

func TestQuotaMicros(t *testing.T) {
	for _, tt := range []struct {
		l             Limit
		quota, period int64
	}{
		{Limit{Cores: 0.25}, 25000, 100000},
		{Limit{Cores: 1.5}, 150000, 100000},
		{Limit{}, -1, 100000},
		{Limit{Cores: 0.005}, 1000, 200000}, // the kernel's 1 ms minimum
		{Limit{Cores: 0.2, Period: 20 * time.Millisecond}, 4000, 20000},
	} {
		if q, p := tt.l.QuotaMicros(); q != tt.quota || p != tt.period {
			t.Errorf("%+v: %d/%d, want %d/%d", tt.l, q, p, tt.quota, tt.period)
		}
	}
	for cores, want := range map[float64]int{0.25: 1, 0.5: 1, 1: 1, 1.2: 2, 2: 2, 0.01: 1} {
		if got := GoMaxProcs(cores); got != want {
			t.Errorf("GoMaxProcs(%g) = %d, want %d", cores, got, want)
		}
	}
}

// A process starts inside its cgroup, held to its quota, a Go process
// with GOMAXPROCS to match; removing the cgroup leaves nothing.
func TestAProcessStartsInItsCgroup(t *testing.T) {
	h, err := CPUHierarchy()
	if err != nil {
		t.Skipf("no CPU cgroups here: %v", err)
	}
	rel := fmt.Sprintf("perfscale-supervise-test-%d", os.Getpid())
	parent, err := h.Create(rel, Limit{})
	if err != nil {
		if os.Getenv("CI") == "true" && os.Geteuid() == 0 {
			t.Fatal(err)
		}
		t.Skipf("cannot make cgroups here: %v", err)
	}
	t.Cleanup(func() { parent.Remove(context.Background()) })
	cg, err := h.Create(filepath.Join(rel, "one"), Limit{Cores: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	if cores, limited, err := cg.Quota(); err != nil || !limited || cores != 0.25 {
		t.Fatalf("quota %g %v %v, want 0.25", cores, limited, err)
	}
	spec := serveSpec(t, "one", "serve")
	spec.Cgroup, spec.Go = cg.Dir, true
	d := Dir(t.TempDir())
	r, err := d.Start(ctx(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	if procs, err := cg.Procs(); err != nil || !slices.Contains(procs, r.PID) {
		t.Fatalf("pid %d not in %s: %v %v", r.PID, cg.Dir, procs, err)
	}
	if got, err := get(r.URL("http")); err != nil || got != "1" {
		t.Fatalf("GOMAXPROCS of a 0.25-core Go process: %q %v, want 1", got, err)
	}
	// A listener handed down reaches the program through whatever joins
	// it to its cgroup (v1's shell).
	self, _ := os.Executable()
	two, err := d.Start(ctx(t), Spec{Name: "two", Path: self, Listeners: []string{"http"}, Cgroup: cg.Dir, Go: true,
		Env: append(os.Environ(), roleEnv+"=inherit")})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := get(two.URL("http")); err != nil || got != "1" {
		t.Fatalf("GOMAXPROCS of a 0.25-core Go process handed a listener: %q %v, want 1", got, err)
	}
	if err := KillAll(ctx(t), r, two); err != nil {
		t.Fatal(err)
	}
	if err := parent.Remove(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(parent.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cgroup %s after Remove: %v", parent.Dir, err)
	}
}

// KillTree kills the recorded process and what it forked, children in
// sessions of their own (as PostgreSQL's backends are) and grandchildren
// included.
func TestKillTreeKillsChildrenInSessionsOfTheirOwn(t *testing.T) {
	d := Dir(t.TempDir())
	ready := filepath.Join(string(d), "ready")
	r, err := d.Start(ctx(t), Spec{
		Name: "tree", Path: "/bin/sh",
		Args: func(map[string]int) []string {
			return []string{"-c", `setsid sh -c 'sleep 300 & sleep 300' & sleep 300 & echo > "$0"; wait`, ready}
		},
		Ready: func(context.Context, Record) error {
			if _, err := os.Stat(ready); err != nil {
				return err
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.KillTree(context.Background()) })
	var kids []int
	testwait.Eventually(t, 30*time.Second, func() error {
		kids, _ = descendants(r.PID) // setsid sh, its two sleeps, the sleep
		if len(kids) < 4 {
			return fmt.Errorf("the tree has %d processes below the recorded one, want 4", len(kids))
		}
		return nil
	})
	if err := r.KillTree(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, pid := range append(kids, r.PID) {
		if _, alive := startTime(pid); alive {
			t.Errorf("pid %d runs after KillTree", pid)
		}
	}
}

// A process handed a listener serves on it from its start, with no
// readiness check, the listener's port recorded; started again, it keeps
// its port. KillAll stops both processes at once.
func TestAProcessHandedAListenerServesOnIt(t *testing.T) {
	d := Dir(t.TempDir())
	spec := func(name string) Spec {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		return Spec{Name: name, Path: self, Listeners: []string{"http"}, Env: append(os.Environ(), roleEnv+"=inherit")}
	}
	one, err := d.Start(ctx(t), spec("one"))
	if err != nil {
		t.Fatal(err)
	}
	two, err := d.Start(ctx(t), spec("two"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { KillAll(context.Background(), one, two) })
	if one.Port("http") == 0 || one.Port("http") == two.Port("http") {
		t.Fatalf("ports %d and %d", one.Port("http"), two.Port("http"))
	}
	for _, r := range []Record{one, two} {
		if got, err := get(r.URL("http")); err != nil || got == "" {
			t.Fatalf("%s on %s: %q %v", r.Name, r.URL("http"), got, err)
		}
	}
	if err := KillAll(ctx(t), one, two); err != nil {
		t.Fatal(err)
	}
	if one.Alive() || two.Alive() {
		t.Fatal("alive after KillAll")
	}
	again, err := d.Start(ctx(t), spec("one"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Kill(context.Background()) })
	if again.Port("http") != one.Port("http") {
		// The old port is an ephemeral one: between the kill and the start
		// another test's outgoing connection may take it as its local port
		// (a fresh-clone CI run saw that), and then a new port is right.
		// Moving off a port that was free is the defect.
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(one.Port("http"))); err == nil {
			ln.Close()
			t.Fatalf("started again on port %d, was %d, which is free", again.Port("http"), one.Port("http"))
		}
		t.Logf("started again on port %d: %d was taken meanwhile", again.Port("http"), one.Port("http"))
	}
	if _, err := get(again.URL("http")); err != nil {
		t.Fatal(err)
	}
}
