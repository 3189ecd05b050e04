// Package natstest runs a private nats-server with JetStream for a test,
// one the test may stop and start again (on the same port, with the same
// storage) without disturbing the shared server other tests use.
package natstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/perfscale/perfscale/internal/testserver"
)

// Binary finds nats-server; without it the test skips, except under CI=true,
// where it fails.
func Binary(t testing.TB) string {
	t.Helper()
	return testserver.Binary(t, "nats-server", "NATS_SERVER_BIN", "/usr/sbin/nats-server", "/usr/bin/nats-server")
}

// Server is a private nats-server.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	proc *testserver.Process
}

// Start starts a server with JetStream on a free port; t's cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir(), port: testserver.FreePort(t)}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// URL is the server's client URL.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// Start (re)starts the server on its port with its storage, and returns
// once it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	if s.proc != nil {
		return
	}
	log, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(s.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-js", "-sd", filepath.Join(s.dir, "js"))
	cmd.Stdout, cmd.Stderr = log, log
	s.proc = testserver.Start(s.t, cmd, s.port, filepath.Join(s.dir, "server.log"))
}

// Stop stops the server and waits for it to exit.
func (s *Server) Stop() {
	if s.proc == nil {
		return
	}
	s.proc.Stop(os.Interrupt)
	s.proc = nil
}

// Kill ends the server with SIGKILL, as a crash would; Start starts it
// again on its port and JetStream store.
func (s *Server) Kill() {
	if s.proc == nil {
		return
	}
	s.proc.Stop(syscall.SIGCONT, syscall.SIGKILL)
	s.proc = nil
}

// Pause stops the server's process (SIGSTOP): its connections stay open
// and nothing answers, as with a server stuck in a long pause. t's cleanup
// resumes it, so that Stop can end it.
func (s *Server) Pause() {
	s.t.Helper()
	if s.proc == nil {
		s.t.Fatal("natstest: Pause of a stopped server")
	}
	s.proc.Signal(syscall.SIGSTOP)
	s.t.Cleanup(s.Resume)
}

// Resume continues a paused server (SIGCONT); it does nothing otherwise.
func (s *Server) Resume() {
	if s.proc != nil {
		s.proc.Signal(syscall.SIGCONT)
	}
}
