package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Spec says how to start one process.
type Spec struct {
	Name string
	Path string
	// Args builds the arguments once the ports are known.
	Args func(ports map[string]int) []string
	// Ports names the purposes the process needs a port for; a process
	// recorded before keeps its ports (start it again on its old port).
	Ports []string
	// Listeners names the purposes the process is handed a listening TCP
	// socket for, bound on 127.0.0.1 before it starts (file descriptor 3
	// for the first, 4 for the next), its port recorded under the purpose
	// (the old port when it is still free). No other process can take
	// the port meanwhile, and connections queue from the start: such a
	// process needs no Ready to be connected to.
	Listeners []string
	Env       []string // nil: this process's environment
	Dir       string   // working directory; empty: this one
	// Cgroup is the cgroup the process runs in from its first
	// instruction; empty: none.
	Cgroup string
	// Go marks a Go program: under a CPU quota below the machine's cores
	// it gets GOMAXPROCS to match (GoMaxProcs), unless Env sets one.
	Go bool
	// Credential runs the process as another user (PostgreSQL refuses to
	// run as root).
	Credential *syscall.Credential
	// Ready says whether the started process is ready; Start waits for it
	// (nil: started is ready). It is called until it returns nil, the
	// process exits, or ctx ends.
	Ready func(ctx context.Context, r Record) error
	Meta  map[string]string
	// Logf, if set, hears of a start again on new ports.
	Logf func(format string, args ...any)
}

// portRetries is how often Start tries new ports when the process found
// one of its ports taken (clusters starting side by side can pick the
// same free port before either binds it).
const portRetries = 3

// StartError is a process that did not start: its name, why, and the end
// of its log.
type StartError struct {
	Name, Reason, Log string
}

func (e *StartError) Error() string {
	if e.Log == "" {
		return fmt.Sprintf("%s %s", e.Name, e.Reason)
	}
	return fmt.Sprintf("%s %s: %s", e.Name, e.Reason, e.Log)
}

// Start starts the process detached (a session of its own, standard
// input from /dev/null, output to DIR/NAME.log), records it, and waits
// until it is ready. When it exits before that saying a port was taken,
// it is started again on new ports, up to three times. On failure it is
// stopped and its record kept (Forget it to drop its ports).
func (d Dir) Start(ctx context.Context, s Spec) (Record, error) {
	prev, _, err := d.Load(s.Name)
	if err != nil {
		return Record{}, err
	}
	ports := prev.Ports
	for tries := 0; ; tries++ {
		if ports, err = d.assignPorts(s.Name, s.Ports, ports); err != nil {
			return Record{}, err
		}
		files, err := listen(s.Listeners, prev.Ports, ports)
		if err != nil {
			return Record{}, err
		}
		r, err := d.launch(s, ports, files)
		closeAll(files)
		if err != nil {
			return Record{}, err
		}
		err = d.waitReady(ctx, s, r)
		if err == nil {
			return r, nil
		}
		r.Kill(context.Background()) //nolint:errcheck // best effort; the error below says why
		var se *StartError
		if errors.As(err, &se) && tries < portRetries && len(s.Ports) > 0 && portTaken(r.Log) {
			if s.Logf != nil {
				s.Logf("%s: %s", s.Name, PortTakenNotice)
			}
			ports = nil
			continue
		}
		return r, err
	}
}

// PortTakenNotice is written into a process's log when it is started
// again on new ports.
const PortTakenNotice = "a port was taken meanwhile; starting it again on new ports"

func portTaken(log string) bool {
	b, _ := os.ReadFile(log)
	return bytes.Contains(bytes.ToLower(b), []byte("address already in use"))
}

// assignPorts keeps the ports the process had and picks free ones for
// the purposes it lacks, none of them a port another record of this
// directory holds.
func (d Dir) assignPorts(name string, purposes []string, have map[string]int) (map[string]int, error) {
	ports := map[string]int{}
	taken := map[int]bool{}
	records, err := d.List()
	if err != nil {
		return nil, err
	}
	for _, r := range records {
		if r.Name != name {
			for _, p := range r.Ports {
				taken[p] = true
			}
		}
	}
	for _, purpose := range purposes {
		if p := have[purpose]; p != 0 {
			ports[purpose] = p
			taken[p] = true
			continue
		}
		p, err := FreePort(taken)
		if err != nil {
			return nil, err
		}
		ports[purpose] = p
		taken[p] = true
	}
	return ports, nil
}

// FreePort picks a port nothing listens on from 20000-29999 (below the
// kernel's ephemeral range, so no outgoing connection holds it), not one
// of taken. Another process may still bind it first: Start handles that.
func FreePort(taken map[int]bool) (int, error) {
	for range 200 {
		p := 20000 + rand.IntN(10000)
		if taken[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		return p, nil
	}
	return 0, errors.New("no free port found in 20000-29999")
}

// listen binds a listener for each purpose, on its old port if that is
// free, and records its port in ports; the files are the listeners as the
// child inherits them (this process's own copies are closed).
func listen(purposes []string, old, ports map[string]int) ([]*os.File, error) {
	var files []*os.File
	for _, purpose := range purposes {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(old[purpose]))
		if err != nil && old[purpose] != 0 {
			ln, err = net.Listen("tcp", "127.0.0.1:0")
		}
		if err != nil {
			closeAll(files)
			return nil, fmt.Errorf("listen for %s: %w", purpose, err)
		}
		f, err := ln.(*net.TCPListener).File()
		ln.Close()
		if err != nil {
			closeAll(files)
			return nil, fmt.Errorf("listen for %s: %w", purpose, err)
		}
		ports[purpose] = ln.Addr().(*net.TCPAddr).Port
		files = append(files, f)
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func (d Dir) launch(s Spec, ports map[string]int, files []*os.File) (Record, error) {
	r := Record{Name: s.Name, Ports: ports, Cgroup: s.Cgroup, Log: filepath.Join(string(d), s.Name+".log"), Meta: s.Meta}
	log, err := os.OpenFile(r.Log, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return r, err
	}
	defer log.Close()
	if s.Credential != nil {
		os.Chown(r.Log, int(s.Credential.Uid), int(s.Credential.Gid)) //nolint:errcheck // root only; the log is ours either way
	}
	var args []string
	if s.Args != nil {
		args = s.Args(ports)
	}
	env := s.Env
	if env == nil {
		env = os.Environ()
	}
	if s.Go && s.Cgroup != "" && !hasEnv(env, "GOMAXPROCS") {
		if cores, limited, err := Open(s.Cgroup).Quota(); err == nil && limited && cores < 1 {
			env = append(env[:len(env):len(env)], "GOMAXPROCS="+strconv.Itoa(GoMaxProcs(cores)))
		}
	}
	cmd := exec.Command(s.Path, args...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = env, s.Dir, log, log, files
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: s.Credential}
	if s.Cgroup != "" {
		cg := Open(s.Cgroup)
		if cg.V2 {
			// clone3 puts the child in the cgroup before it runs anything.
			fd, err := os.Open(cg.Dir)
			if err != nil {
				return r, fmt.Errorf("cgroup %s: %w", cg.Dir, err)
			}
			defer fd.Close()
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(fd.Fd())
		} else {
			// v1 has no such clone flag: a shell joins the cgroup, then
			// becomes the program (same pid), so nothing of it runs outside.
			// Run as another user, the shell may write cgroup.procs once
			// the file is that user's (v1 delegation).
			if s.Credential != nil {
				if err := os.Chown(filepath.Join(cg.Dir, "cgroup.procs"), int(s.Credential.Uid), int(s.Credential.Gid)); err != nil {
					return r, fmt.Errorf("cgroup %s: %w", cg.Dir, err)
				}
			}
			cmd.Path = "/bin/sh"
			cmd.Args = append([]string{"sh", "-c", `echo $$ >"$0" && exec "$@"`, filepath.Join(cg.Dir, "cgroup.procs"), s.Path}, args...)
		}
	}
	if err := cmd.Start(); err != nil {
		return r, &StartError{Name: s.Name, Reason: "could not start", Log: err.Error()}
	}
	go cmd.Wait() //nolint:errcheck // reap it if it exits while this process runs
	r.PID = cmd.Process.Pid
	t, ok := startTime(r.PID)
	if !ok {
		return r, &StartError{Name: s.Name, Reason: "exited at once", Log: Tail(r.Log, 3)}
	}
	r.Start = t
	return r, d.Save(r)
}

func hasEnv(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}

func (d Dir) waitReady(ctx context.Context, s Spec, r Record) error {
	for {
		if s.Ready == nil || s.Ready(ctx, r) == nil {
			if r.Alive() {
				return nil
			}
		}
		if !r.Alive() {
			return &StartError{Name: s.Name, Reason: "exited while starting", Log: Tail(r.Log, 3)}
		}
		select {
		case <-ctx.Done():
			return &StartError{Name: s.Name, Reason: "not ready in time (" + ctx.Err().Error() + ")", Log: "see " + r.Log}
		case <-time.After(poll * 4):
		}
	}
}

// Tail is the last n lines of a file, joined by spaces.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " ")
}
