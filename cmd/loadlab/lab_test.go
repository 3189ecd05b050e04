package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockServerEnv makes this test binary, re-executed, a server holding a
// global lock for the given time per request: a serial section in a
// process of its own, as a user's server is.
const lockServerEnv = "LOADLAB_TEST_LOCK_SERVER"

func serveLock(hold string) {
	d, err := time.ParseDuration(hold)
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr().String())
	var mu sync.Mutex
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { //nolint:errcheck // serves until killed
		mu.Lock()
		time.Sleep(d)
		mu.Unlock()
	}))
}

// startLockServer runs a lock server holding its lock 8 ms a request and
// returns its URL; it is killed when the test ends.
func startLockServer(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockServerEnv+"=8ms")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("lock server did not start: %v", err)
	}
	return "http://" + strings.TrimSpace(addr) + "/"
}
