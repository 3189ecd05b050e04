package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
)

// TestMain lets a test run this very binary as the shop command (see
// startProcess), so signals are tested on a real process without a build.
func TestMain(m *testing.M) {
	if os.Getenv("SHOP_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type process struct {
	cmd    *exec.Cmd
	url    string
	logs   chan map[string]any // every log record after "listening"
	exited chan error
}

// startProcess runs shop in a child process and waits for it to listen.
func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, append([]string{"--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--seed-items", "5"}, args...)...)
	cmd.Env = append(os.Environ(), "SHOP_TEST_RUN_MAIN=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, logs: make(chan map[string]any, 1000), exited: make(chan error, 1)}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			if rec["msg"] == "listening" {
				listening <- rec["url"].(string)
				continue
			}
			select {
			case p.logs <- rec:
			default:
			}
		}
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	select {
	case p.url = <-listening:
	case err := <-p.exited:
		t.Fatalf("shop exited before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("shop not listening after 30s")
	}
	return p
}

func (p *process) signal(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits for the log record with msg.
func (p *process) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case rec := <-p.logs:
			if rec["msg"] == msg {
				return rec
			}
		case <-timeout:
			t.Fatalf("no %q logged within 30s", msg)
		}
	}
}

func (p *process) waitExit(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.exited:
		p.exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("shop exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("shop still running 30s after the drain")
	}
}

// get makes one request on a new connection, so each request shows whether
// the listener still accepts.
func get(url string) (*http.Response, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res, nil
}

// After SIGTERM a replica fails /readyz at once but keeps answering
// ordinary requests for the drain delay; then the listener closes while a
// request already in flight still gets its answer.
func TestSIGTERMFailsReadinessThenServesThroughTheDrainDelay(t *testing.T) {
	p := startProcess(t, "--role", "api", "--drain-delay", "10m", "--replica-name", "r1")
	res, err := get(p.url + "/readyz")
	if err != nil || res.StatusCode != 200 || res.Header.Get("X-Replica") != "r1" {
		t.Fatalf("readyz before SIGTERM: %v %v", res, err)
	}
	// A request in flight across the whole shutdown: headers and half its
	// body now, the rest after the listener has closed.
	inflight, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer inflight.Close()
	fmt.Fprintf(inflight, "POST /v1/sessions HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n{}")

	p.signal(t)
	p.waitLog(t, "draining")
	res, err = get(p.url + "/readyz")
	if err != nil || res.StatusCode != 503 {
		t.Fatalf("readyz while draining: %v %v, want 503", res, err)
	}
	for _, path := range []string{"/v1/menu", "/v1/items/1", "/healthz"} {
		res, err := get(p.url + path)
		if err != nil || res.StatusCode != 200 || !res.Close {
			t.Fatalf("GET %s while draining: %v %v, want 200 with Connection: close", path, res, err)
		}
	}

	p.signal(t) // a second signal ends the drain delay now
	p.waitLog(t, "drain cut short")
	p.waitLog(t, "shutting down")
	testwait.Eventually(t, 30*time.Second, func() error {
		if _, err := get(p.url + "/healthz"); !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("listener still open after the drain: %v", err)
		}
		return nil
	})
	fmt.Fprint(inflight, "  ")
	inflight.SetReadDeadline(time.Now().Add(30 * time.Second))
	answer, err := http.ReadResponse(bufio.NewReader(inflight), nil)
	if err != nil {
		t.Fatalf("the request in flight got no answer: %v", err)
	}
	if answer.StatusCode != 201 {
		t.Fatalf("the request in flight: %d, want 201", answer.StatusCode)
	}
	p.waitExit(t)
}

// Without a second signal the drain lasts the whole delay, and 0 turns it
// off.
func TestDrainDelayElapsesOnItsOwn(t *testing.T) {
	for _, delay := range []time.Duration{300 * time.Millisecond, 0} {
		t.Run(delay.String(), func(t *testing.T) {
			p := startProcess(t, "--role", "api", "--drain-delay", delay.String())
			res, err := get(p.url + "/healthz")
			if err != nil || res.Header.Get("X-Replica") != strings.TrimPrefix(p.url, "http://") {
				t.Fatalf("X-Replica %v (%v), want the listener's host:port by default", res, err)
			}
			sent := time.Now()
			p.signal(t)
			if delay > 0 {
				p.waitLog(t, "draining")
			}
			p.waitLog(t, "shutting down")
			if waited := time.Since(sent); waited < delay {
				t.Fatalf("the listener began closing %v after SIGTERM, before the %v drain delay", waited, delay)
			}
			p.waitExit(t)
			if _, err := get(p.url + "/healthz"); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("after exit: %v, want connection refused", err)
			}
		})
	}
}

func TestDrainDelayDefaultsByRole(t *testing.T) {
	for role, want := range map[string]time.Duration{"api": 5 * time.Second, "all": 0, "worker": 0} {
		c, err := parseConfig([]string{"--role", role}, func(string) string { return "" }, io.Discard)
		if err != nil || c.DrainDelay != want {
			t.Errorf("--role %s: drain delay %v (%v), want %v", role, c.DrainDelay, err, want)
		}
	}
	c, err := parseConfig([]string{"--role", "api"}, func(k string) string { return map[string]string{"SHOP_DRAIN_DELAY": "0s"}[k] }, io.Discard)
	if err != nil || c.DrainDelay != 0 {
		t.Errorf("SHOP_DRAIN_DELAY=0s: %v (%v), want 0", c.DrainDelay, err)
	}
}
