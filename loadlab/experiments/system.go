package experiments

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// system is one started system: a served process group, or what an up
// command started.
type system struct {
	url  string
	dir  string
	cmd  *exec.Cmd // serve
	down string    // up/down
	log  *tailBuffer
	done chan struct{}
}

// expander fills a setting's placeholders for one system.
type expander struct {
	shop, dir string
	port      int
}

func (x expander) expand(s string) string {
	return strings.NewReplacer("{shop}", x.shop, "{dir}", x.dir, "{port}", strconv.Itoa(x.port)).Replace(s)
}

// freePort asks the kernel for a port no one listens on.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// prepare makes the directory and port a setting's commands get.
func (r *Runner) prepare(name string) (expander, error) {
	dir, err := os.MkdirTemp(r.TempDir, "loadlab-exp-"+name+"-")
	if err != nil {
		return expander{}, fmt.Errorf("a directory for the system: %w", err)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return expander{}, fmt.Errorf("a free port: %w", err)
	}
	return expander{shop: r.Shop, dir: dir, port: port}, nil
}

// start starts a serve or up setting and waits until its URL answers.
func (r *Runner) start(ctx context.Context, s *Setting, x expander) (*system, error) {
	sys := &system{dir: x.dir, log: &tailBuffer{max: 4096}, done: make(chan struct{})}
	if s.Serve != "" {
		sys.url = x.expand(s.URL)
		cmd := exec.Command("sh", "-c", x.expand(s.Serve))
		cmd.Dir = r.Dir
		cmd.Stdout, cmd.Stderr = sys.log, sys.log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			os.RemoveAll(x.dir)
			return nil, fmt.Errorf("start %q: %w", s.Serve, err)
		}
		sys.cmd = cmd
		go func() { cmd.Wait(); close(sys.done) }() //nolint:errcheck // a stopped server's status is the signal
	} else {
		sys.down = x.expand(s.Down)
		out, err := r.shell(ctx, x.expand(s.Up))
		if err != nil {
			r.stop(sys)
			return nil, fmt.Errorf("up %q: %w", s.Up, err)
		}
		sys.url = lastLine(out)
		close(sys.done)
	}
	if err := r.waitReady(ctx, sys); err != nil {
		r.stop(sys)
		return nil, err
	}
	return sys, nil
}

// shell runs a command to its end, its output logged; it returns stdout.
func (r *Runner) shell(ctx context.Context, command string) (string, error) {
	var out bytes.Buffer
	tail := &tailBuffer{max: 2048}
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Dir = r.Dir
	cmd.Stdout, cmd.Stderr = &out, tail
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, strings.TrimSpace(tail.String()))
	}
	return out.String(), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// waitReady polls the URL until it answers below 500.
func (r *Runner) waitReady(ctx context.Context, sys *system) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(r.readyTimeout())
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, sys.url, nil)
		if err != nil {
			return fmt.Errorf("the system's URL %q: %v", sys.url, err)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sys.done:
			if sys.cmd != nil {
				return fmt.Errorf("the system stopped before it answered at %s: %s", sys.url, strings.TrimSpace(sys.log.String()))
			}
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the system did not answer at %s within %v: %s", sys.url, r.readyTimeout(), strings.TrimSpace(sys.log.String()))
		}
	}
}

// stop stops a system and removes its directory: SIGTERM to a served
// process group (SIGKILL after 20 s), or the down command.
func (r *Runner) stop(sys *system) error {
	defer os.RemoveAll(sys.dir)
	if sys.cmd != nil {
		pgid := sys.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM) //nolint:errcheck // gone already is fine
		select {
		case <-sys.done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL) //nolint:errcheck // gone already is fine
			<-sys.done
			return errors.New("the system did not stop within 20 s of SIGTERM; killed")
		}
		return nil
	}
	if sys.down == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := r.shell(ctx, sys.down); err != nil {
		return fmt.Errorf("down %q: %w", sys.down, err)
	}
	return nil
}

func (r *Runner) readyTimeout() time.Duration {
	if r.ReadyTimeout > 0 {
		return r.ReadyTimeout
	}
	return 90 * time.Second
}

// tailBuffer keeps the last max bytes written to it, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
