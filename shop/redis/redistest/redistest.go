// Package redistest runs a private redis-server for a test, one the test
// may stop, start again on the same port, or freeze (SIGSTOP), without
// disturbing the shared server other tests use.
package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Binary finds redis-server; without it the test skips, except under
// CI=true, where it fails.
func Binary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("REDIS_SERVER_BIN"), "/usr/bin/redis-server", "/usr/sbin/redis-server"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("redis-server is not installed; CI must have it (apt-get install redis-server)")
	}
	t.Skip("redis-server is not installed: skipping the Redis test")
	return ""
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
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir(), port: freePort(t)}
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
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-s.done:
			out, _ := os.ReadFile(log)
			s.t.Fatalf("redis-server exited at start:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server not accepting connections on %d after 30s", s.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
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

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
