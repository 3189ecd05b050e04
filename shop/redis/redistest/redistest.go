// Package redistest runs a private redis-server for a test, one the test
// may stop, start again on the same port, or freeze (SIGSTOP), without
// disturbing the shared server other tests use.
package redistest

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/perfscale/perfscale/internal/testserver"
	"time"
)

// Binary finds redis-server; without it the test skips, except under CI=true,
// where it fails.
func Binary(t testing.TB) string {
	t.Helper()
	return testserver.Binary(t, "redis-server", "REDIS_SERVER_BIN", "/usr/bin/redis-server", "/usr/sbin/redis-server")
}

// Server is a private redis-server without persistence.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a server on a free port; t's cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir(), port: testserver.FreePort(t)}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// URL is the server's URL.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

// Start (re)starts the server, empty, and returns once it accepts
// connections.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		return
	}
	log := filepath.Join(s.dir, "redis.log")
	cmd := exec.Command(s.bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(s.port), "--save", "",
		"--appendonly", "no", "--dir", s.dir, "--logfile", log)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.done) }() //nolint:errcheck // exit status of a server we stop
	testserver.WaitListening(s.t, s.port, s.done, log)
}

// Stop stops the server and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT) //nolint:errcheck // in case it is frozen
	s.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill() //nolint:errcheck
		<-s.done
	}
	s.cmd = nil
}

// Freeze stops the process without closing its connections (a network
// partition as clients see it); Thaw resumes it with its data.
func (s *Server) Freeze() { s.cmd.Process.Signal(syscall.SIGSTOP) } //nolint:errcheck

// Thaw resumes a frozen server.
func (s *Server) Thaw() { s.cmd.Process.Signal(syscall.SIGCONT) } //nolint:errcheck
