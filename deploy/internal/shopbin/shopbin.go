// Package shopbin builds the shop binary from the parent module, once per
// test process, so the deploy checks hold the manifests, rules and
// dashboards to the real command: its flags (`shop --help`) and the
// metrics a running process exports.
package shopbin

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	once     sync.Once
	built    string
	buildErr error
)

// RepoRoot is the parent module's directory (the one holding cmd/shop).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "cmd", "shop", "main.go")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no cmd/shop above the working directory")
		}
		dir = parent
	}
}

// Cleanup removes the built binary; call it from TestMain after m.Run.
func Cleanup() {
	if built != "" {
		os.RemoveAll(filepath.Dir(built))
	}
}

// Build returns the path of a shop binary built from the parent module.
func Build(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "deploy-shopbin-")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "shop")
		cmd := exec.Command("go", "build", "-o", built, "./cmd/shop")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/shop: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

var (
	flagLine = regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)`)
	envName  = regexp.MustCompile(`\bSHOP_[A-Z0-9_]+\b`)
)

// Help is what `shop --help` lists: the flag names (without dashes) and
// every environment variable it names.
type Help struct {
	Flags, Env map[string]bool
}

// ReadHelp runs `shop --help` and collects its flags and variables.
func ReadHelp(t testing.TB, bin string) Help {
	t.Helper()
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("shop --help: %v\n%s", err, out)
	}
	h := Help{Flags: map[string]bool{}, Env: map[string]bool{}}
	for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
		h.Flags[m[1]] = true
	}
	for _, m := range envName.FindAllString(string(out), -1) {
		h.Env[m] = true
	}
	if len(h.Flags) < 10 || len(h.Env) < 10 {
		t.Fatalf("shop --help lists %d flags and %d variables; the format changed?\n%s", len(h.Flags), len(h.Env), out)
	}
	return h
}

// Start runs the shop on the embedded default in a temporary directory,
// the API and the admin listener on free ports, and returns their base
// URLs once the process logs them. The process is stopped when the test
// ends.
func Start(t testing.TB, bin string, args ...string) (api, admin string) {
	t.Helper()
	args = append([]string{"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--seed-items", "20", "--drain-delay", "0s"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SHOP_ADMIN_TOKEN=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	urls := make(chan [2]string, 1)
	go func() {
		defer close(exited)
		var got [2]string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var line struct{ Msg, URL string }
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch line.Msg {
			case "listening":
				got[0] = line.URL
			case "admin listening":
				got[1] = line.URL
				urls <- got
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case u := <-urls:
		return u[0], u[1]
	case <-exited:
		t.Fatalf("shop exited before listening: %s", stderr.String())
	}
	return "", ""
}
