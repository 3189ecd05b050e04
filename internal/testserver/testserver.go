// Package testserver holds what the tests' private servers (natstest,
// redistest) share: finding the binary (skip without it, fail under
// CI=true), a free port, and starting, waiting for and stopping the process.
package testserver

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
)

// Binary finds a server binary: the environment variable env, then the
// candidate paths, then PATH. Without it the test skips, except under
// CI=true, where it fails.
func Binary(t testing.TB, name, env string, candidates ...string) string {
	t.Helper()
	for _, p := range append([]string{os.Getenv(env)}, candidates...) {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; CI must have it (apt-get install %s)", name, name)
	}
	t.Skipf("%s is not installed: skipping the test that needs it", name)
	return ""
}

// FreePort asks the kernel for a port nobody listens on. Another process
// could take it before the server binds it; on a test machine that is rare
// and shows as a start failure, not a wrong result.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitListening returns once 127.0.0.1:port accepts connections; it fails
// t if the process ends first (done closed) or after 30 s. A process says
// nothing when it is ready, so this polls, with a generous limit.
func WaitListening(t testing.TB, port int, done <-chan struct{}, logFile string) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	testwait.Eventually(t, 30*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			out, _ := os.ReadFile(logFile)
			t.Fatalf("server exited at start:\n%s", out)
		default:
		}
		return fmt.Errorf("server not accepting connections: %w", err)
	})
}

// Process is a started server process that a test may stop and, through
// its owner, start again.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts cmd and returns once it listens on 127.0.0.1:port, failing
// t if it exits first (showing logFile) or does not come up.
func Start(t testing.TB, cmd *exec.Cmd, port int, logFile string) *Process {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", filepath.Base(cmd.Path), err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }() //nolint:errcheck // exit status of a server we stop
	WaitListening(t, port, p.done, logFile)
	return p
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) { p.cmd.Process.Signal(sig) } //nolint:errcheck

// Stop sends the signals in order and waits for the process to exit,
// killing it after 15 s.
func (p *Process) Stop(sigs ...os.Signal) {
	for _, sig := range sigs {
		p.Signal(sig)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill() //nolint:errcheck
		<-p.done
	}
}
