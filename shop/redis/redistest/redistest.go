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
	proc *testserver.Process
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
	if s.proc != nil {
		return
	}
	log := filepath.Join(s.dir, "redis.log")
	cmd := exec.Command(s.bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(s.port), "--save", "",
		"--appendonly", "no", "--dir", s.dir, "--logfile", log)
	s.proc = testserver.Start(s.t, cmd, s.port, log)
}

// Stop stops the server and waits for it to exit.
func (s *Server) Stop() {
	if s.proc == nil {
		return
	}
	s.proc.Stop(syscall.SIGCONT, syscall.SIGTERM) // SIGCONT in case it is frozen
	s.proc = nil
}

// Kill ends the server with SIGKILL, as a crash would (it keeps no data:
// the test server persists nothing); Start starts it again, empty.
func (s *Server) Kill() {
	if s.proc == nil {
		return
	}
	s.proc.Stop(syscall.SIGKILL)
	s.proc = nil
}

// Freeze stops the process without closing its connections (a network
// partition as clients see it); Thaw resumes it with its data.
func (s *Server) Freeze() { s.proc.Signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (s *Server) Thaw() { s.proc.Signal(syscall.SIGCONT) }
