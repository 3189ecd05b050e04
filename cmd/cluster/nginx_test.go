package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/perfscale/perfscale/internal/testwait"
)

// The rendered upstream lists each replica once with its passive health
// check and, with two or more, once more as a backup that is never taken
// out; one replica alone needs none (nginx never takes a group's only
// server out).
func TestUpstreamServersKeepABackupOfEveryReplica(t *testing.T) {
	for _, tt := range []struct {
		ports []int
		want  []string
	}{
		{[]int{8001}, []string{"server 127.0.0.1:8001 max_fails=2 fail_timeout=5s;"}},
		{[]int{8001, 8002}, []string{
			"server 127.0.0.1:8001 max_fails=2 fail_timeout=5s;", "server 127.0.0.1:8002 max_fails=2 fail_timeout=5s;",
			"server 127.0.0.1:8001 max_fails=0 backup;", "server 127.0.0.1:8002 max_fails=0 backup;"}},
	} {
		var got []string
		for _, l := range strings.Split(upstreamServers(tt.ports), "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "server ") {
				got = append(got, l)
			}
		}
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("ports %v: servers\n%s\nwant\n%s", tt.ports, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
		}
	}
}

// A passive health check never takes the last live replica out: with both
// replicas out after failed attempts (at a load average of 20 both timed
// out together), a request once they answer again is served, not refused
// "no live upstreams" (502) for the rest of the 5 s fail_timeout. Run on a
// real nginx with the rendered servers and the cluster's retry settings;
// the old servers (no backups) answered 502 here.
func TestAPassiveHealthCheckNeverTakesTheLastReplicaOut(t *testing.T) {
	nginx, err := nginxPath()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v; under CI=true .ci/run must provide it", err)
		}
		t.Skipf("%v; skipping", err)
	}
	replicas := []int{freePort(t), freePort(t)} // nothing listens there yet
	port, dir := freePort(t), t.TempDir()
	conf := fmt.Sprintf(`user %s;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[3]s; proxy_temp_path %[3]s; fastcgi_temp_path %[3]s; uwsgi_temp_path %[3]s; scgi_temp_path %[3]s;
    upstream shop {
        least_conn;
%s    }
    server {
        listen 127.0.0.1:%d;
        location / {
            proxy_pass http://shop;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
        }
    }
}
`, nginxUser(), dir, dir, upstreamServers(replicas), port)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-e", filepath.Join(dir, "error.log"), "-c", path, "-p", dir, "-g", "daemon off; master_process off;") // one process: killing it leaves no worker behind
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	status := func() int {
		resp, err := http.Get(url)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testwait.Eventually(t, 30*time.Second, func() error {
		if status() == 0 {
			return errors.New("nginx is not listening yet")
		}
		return nil
	})
	// Each request tries both replicas (refused): two requests make two
	// failed attempts each, and both are out.
	for range 3 {
		if got := status(); got != http.StatusBadGateway {
			t.Fatalf("status %d with no replica listening, want 502", got)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
	if n := strings.Count(string(b), "upstream server temporarily disabled"); n < 2 {
		t.Fatalf("%d replicas taken out, want both:\n%s", n, b)
	}
	for _, p := range replicas {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	if got := status(); got != http.StatusOK {
		b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("status %d once both replicas answer, want 200:\n%s", got, b)
	}
}

// freePort is a port nothing listened on a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
