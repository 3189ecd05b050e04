package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"

	"github.com/perfscale/perfscale/internal/supervise"
	"github.com/perfscale/perfscale/shop/httpapi"
)

// ensureNginx finds nginx, installing it from Debian's packages if it is
// missing (this cluster runs an nginx of its own: own config, pid file,
// port; a system nginx the package may start is not used).
func ensureNginx(c *cluster) error {
	if _, err := nginxPath(); err == nil {
		return nil
	}
	c.logf("nginx is not installed; installing it from Debian's packages")
	install := func(pkg string) error {
		cmd := exec.Command("apt-get", "install", "-y", "-qq", pkg)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.Run()
	}
	if exec.Command("apt-get", "update", "-qq").Run() != nil || install("nginx-light") != nil {
		if install("nginx") != nil {
			return fmt.Errorf("nginx is missing and could not be installed (apt-get install nginx-light)")
		}
	}
	_, err := nginxPath()
	return err
}

func nginxPath() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", fmt.Errorf("nginx is not installed (apt-get install nginx-light)")
}

// startNginx starts the load balancer on a free port (a new one if
// another process took it meanwhile).
func (c *cluster) startNginx(ctx context.Context) error {
	path, err := nginxPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(c.state, "nginx-temp"), 0o755); err != nil {
		return err
	}
	conf := filepath.Join(c.state, "nginx.conf")
	spec := supervise.Spec{
		Name: "nginx", Path: path, Ports: []string{"http"}, Logf: c.logf,
		Meta: map[string]string{"role": "balancer"},
		Args: func(p map[string]int) []string {
			// The configuration names the port: written for each try.
			if _, err := c.writeNginxConf(p["http"]); err != nil {
				c.logf("%v", err)
			}
			return []string{"-e", "stderr", "-c", conf, "-p", c.state, "-g", "daemon off;"}
		},
		Ready: func(ctx context.Context, r supervise.Record) error {
			return httpOK(ctx, r.URL("http")+"/readyz")
		},
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	_, err = c.dir().Start(sctx, spec)
	return err
}

// reloadNginx writes the configuration anew (the upstreams, the limits)
// and has nginx take it (SIGHUP), returning once nginx serves from it
// alone: nginx's reload is asynchronous (the master starts new workers,
// then tells the old ones to stop accepting), and up used to return while
// old workers still took new connections with the old upstreams.
func (c *cluster) reloadNginx(ctx context.Context) error {
	r, ok, err := c.dir().Load("nginx")
	if err != nil {
		return err
	}
	if !ok || !r.Alive() {
		return fmt.Errorf("the cluster in %s is recorded but its nginx is not running; run 'scripts/cluster.sh --state-dir %s down' first", c.state, c.state)
	}
	gen, err := c.writeNginxConf(r.Port("http"))
	if err != nil {
		return err
	}
	if err := c.testNginxConf(ctx); err != nil {
		return err
	}
	old, err := nginxWorkers(r.PID)
	if err != nil {
		return err
	}
	if err := syscall.Kill(r.PID, syscall.SIGHUP); err != nil {
		return fmt.Errorf("reload nginx: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	if err := waitNginxGeneration(wctx, r.URL("http"), gen, old); err != nil {
		return fmt.Errorf("nginx did not take its new configuration within %s (see %s): %v", reloadTimeout, filepath.Join(c.state, "nginx.log"), err)
	}
	return nil
}

// reloadTimeout bounds the wait for nginx's new workers to serve alone.
const reloadTimeout = 30 * time.Second

// testNginxConf has nginx check the written configuration, so a bad one
// is an error here, not a reload nginx refuses in its log.
func (c *cluster) testNginxConf(ctx context.Context) error {
	path, err := nginxPath()
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, path, "-t", "-q", "-e", "stderr", "-c", filepath.Join(c.state, "nginx.conf"), "-p", c.state).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx refuses its new configuration: %s", lastLine(out))
	}
	return nil
}

// nginxWorkers lists the worker processes of the nginx master pid that
// accept connections (not the cache manager or loader, not workers
// already shutting down).
func nginxWorkers(master int) ([]int, error) {
	procs, err := procfs.AllProcs()
	if err != nil {
		return nil, err
	}
	var workers []int
	for _, p := range procs {
		if st, err := p.Stat(); err != nil || st.PPID != master {
			continue
		}
		if accepting(p.PID) {
			workers = append(workers, p.PID)
		}
	}
	return workers, nil
}

// accepting says whether pid is an nginx worker that takes new
// connections: a worker told to stop sets its title to "worker process is
// shutting down" as it closes its listening sockets (in the same step of
// its loop), and one that has exited takes none.
func accepting(pid int) bool {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return false
	}
	cmd, err := p.CmdLine()
	if err != nil {
		return false
	}
	title := strings.Join(cmd, " ")
	return strings.Contains(title, "worker process") && !strings.Contains(title, "shutting down")
}

// waitNginxGeneration waits until nginx answers its configuration's
// generation gen on a new connection (new workers run the new
// configuration) and none of the old workers accepts connections any
// more, polling.
func waitNginxGeneration(ctx context.Context, base, gen string, old []int) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var last error
	for {
		err := nginxServes(ctx, client, base, gen)
		if ctx.Err() != nil && last != nil {
			return last // what nginx answered before the wait ran out
		}
		last = err
		if last == nil {
			for _, pid := range old {
				if accepting(pid) {
					last = fmt.Errorf("old worker %d still accepts connections", pid)
					break
				}
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func nginxServes(ctx context.Context, client *http.Client, base, gen string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+generationPath, nil)
	if err != nil {
		return err
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 256))
	if got := strings.TrimSpace(string(b)); res.StatusCode != http.StatusOK || got != gen {
		return fmt.Errorf("nginx answers generation %q (%s), want %q", got, res.Status, gen)
	}
	return nil
}

// generationPath answers the generation of the configuration the nginx
// worker that takes the connection runs: a random word written with each
// configuration.
const generationPath = "/_cluster/generation"

// nginxStatusPath is nginx's stub_status, which its exporter reads.
const nginxStatusPath = "/_cluster/nginx_status"

// writeNginxConf writes nginx's configuration for port and returns its
// generation (what generationPath answers).
func (c *cluster) writeNginxConf(port int) (generation string, err error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	generation = hex.EncodeToString(b)
	var ports []int
	for i := 1; i <= c.cfg.Replicas; i++ {
		r, ok, err := c.dir().Load(replicaName(i))
		if err != nil {
			return "", err
		}
		if ok {
			ports = append(ports, r.Port("http"))
		}
	}
	edge, locations := edgeCacheConf, edgeCacheLocations
	if os.Getenv("PERFSCALE_CLUSTER_EDGE_CACHE") == "off" {
		edge, locations = "    # The edge cache is off (PERFSCALE_CLUSTER_EDGE_CACHE=off).\n", ""
	}
	zones, limits := clientLimitsConf(c.cfg.Replicas, c.cfg.CPU)
	conf := strings.NewReplacer("$EDGE_CACHE_LOCATIONS", locations, "$EDGE_CACHE", edge).Replace(nginxConf)
	conf = strings.NewReplacer("$PROXY_TO_SHOP", proxyToShop, "$CLIENT_LIMIT_ZONES", zones, "$CLIENT_LIMITS", limits, "$ERROR_PAGES", errorPagesConf()).Replace(conf)
	conf = strings.NewReplacer("$USER", nginxUser(), "$STATE", c.state, "$PORT", fmt.Sprint(port), "$UPSTREAMS", upstreamServers(ports),
		"$GENERATION", generation).Replace(conf)
	return generation, os.WriteFile(filepath.Join(c.state, "nginx.conf"), []byte(conf), 0o644)
}

// upstreamServers is the replicas' part of the upstream block, one server
// a port. Passive health checks: two failed attempts (connection refused
// or reset, or a timeout; see proxy_next_upstream) take a replica out of
// the rotation for 5 s, then one request probes it again, so a killed
// replica costs no failed connect a request. But a check must never take
// the last live replica out: at a load average of 20 both replicas' slow
// answers timed out together, both were out at once, and nginx answered
// 1,144 requests "no live upstreams" (502) while both served. So every
// replica is listed again as a backup that is never taken out
// (max_fails=0): nginx goes to the backups only when every replica is
// out, and then tries them all. One replica needs none: nginx never takes
// a group's only server out.
func upstreamServers(ports []int) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "        server 127.0.0.1:%d max_fails=2 fail_timeout=5s;\n", p)
	}
	if len(ports) > 1 {
		b.WriteString("        # The same replicas, used only when every one above is out.\n")
		for _, p := range ports {
			fmt.Fprintf(&b, "        server 127.0.0.1:%d max_fails=0 backup;\n", p)
		}
	}
	return b.String()
}

// proxyToShop passes a request to the replicas over keep-alive
// connections, naming the client and the request id. Every location that
// proxies has it whole: nginx inherits proxy_set_header into a location
// only when the location sets none itself.
const proxyToShop = `            proxy_pass http://shop;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Request-Id $shop_request_id;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;`

// nginxUser is who runs this command, for nginx's workers.
func nginxUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "nobody"
}

const nginxConf = `# Generated by scripts/cluster.sh for the cluster in $STATE.
# The workers run as the user who started the cluster (nginx ignores this
# unless started by root, whose workers would otherwise be nobody, who
# cannot write the edge cache in the state directory).
user $USER;
worker_processes auto;
pid $STATE/nginx-own.pid; # nginx's own; nginx.proc.json is the supervisor's record
error_log stderr warn;    # into nginx.log

events {
    worker_connections 4096;
}

http {
    # Which replicas each request tried, in order, and what each answered.
    log_format shop '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                    'rt=$request_time upstream="$upstream_addr" upstream_status="$upstream_status" '
                    'rid=$shop_request_id';
    access_log $STATE/nginx-access.log shop buffer=64k flush=1s;
    client_body_temp_path $STATE/nginx-temp/body;
    proxy_temp_path $STATE/nginx-temp/proxy;
    fastcgi_temp_path $STATE/nginx-temp/fastcgi;
    uwsgi_temp_path $STATE/nginx-temp/uwsgi;
    scgi_temp_path $STATE/nginx-temp/scgi;
    client_max_body_size 64k;
    server_tokens off;

    # Keep the client's request id, or give the request nginx's own, so
    # one id follows a request through nginx and the replica's logs.
    map $http_x_request_id $shop_request_id {
        default $http_x_request_id;
        ""      $request_id;
    }

$EDGE_CACHE
$CLIENT_LIMIT_ZONES
    upstream shop {
        least_conn;
$UPSTREAMS
        # Keep-alive connections to the replicas, closed by nginx before
        # the service's 2-minute idle timeout would close them under it.
        keepalive 64;
        keepalive_timeout 60s;
        keepalive_requests 10000;
    }

    server {
        listen 127.0.0.1:$PORT;

        # What nginx answers itself is problem+json like the service's
        # answers (RFC 9457), with Retry-After where retrying helps. The
        # replicas' own errors (their 503s, 429s) pass through untouched
        # (no proxy_intercept_errors).
        error_page 429 @status_429;
        error_page 502 @status_502;
        error_page 503 @status_503;
        error_page 504 @status_504;
$ERROR_PAGES
        # The generation of this configuration, which up waits for after a
        # reload (cmd/cluster's waitNginxGeneration).
        location = /_cluster/generation {
            access_log off;
            default_type text/plain;
            return 200 "$GENERATION\n";
        }

        # nginx's connection counts, for the cluster's nginx exporter
        # (up --prometheus), from this machine only.
        location = /_cluster/nginx_status {
            access_log off;
            allow 127.0.0.1;
            deny all;
            stub_status;
        }

        # Health and readiness are never limited: a balancer or a probe
        # asking them must see the replicas as they are.
        location ~ ^/(healthz|readyz)$ {
$PROXY_TO_SHOP
            proxy_connect_timeout 2s;
            proxy_read_timeout 5s;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
        }

        # An order's Server-Sent Events: passed through as they come
        # (no buffering), and open for as long as the stream lasts (the
        # service sends a heartbeat every 15 s and ends a stream after
        # 15 min; the client resumes with Last-Event-ID).
        location ~ ^/v1/orders/[0-9]+/events$ {
$CLIENT_LIMITS
$PROXY_TO_SHOP
            proxy_buffering off;
            proxy_cache off;
            proxy_connect_timeout 2s;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
        }

$EDGE_CACHE_LOCATIONS
        location / {
$CLIENT_LIMITS
$PROXY_TO_SHOP
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            proxy_send_timeout 30s;

            # Retry on another replica when this one could not be reached or
            # broke the connection before answering. Without non_idempotent,
            # nginx retries a POST (a session, a checkout) only when it could
            # not send it at all (connection refused, connect timeout): once
            # a checkout was sent, only the client may retry it, with the
            # same Idempotency-Key, which the service answers with the same
            # order. A 503 from the service (overload, database down) is an
            # answer, passed to the client with its Retry-After, and does
            # not count against the replica.
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 10s;
        }
    }
}
`

// edgeCacheConf is the edge cache's zone and keys: the menu and the item
// pages (documents every reader shares) are kept by nginx, as a CDN keeps
// them, so repeated reads never reach a replica. nginx honours the
// service's Cache-Control (max-age=1, stale-while-revalidate=1) and
// revalidates with its ETag (a 304 refreshes the copy). The key holds the
// content coding, normalised to the three the service sends, so each
// coding is its own copy. Nothing carrying a session (an Authorization
// header or any cookie) is served from the cache or stored in it, and
// nginx never stores an answer that sets a cookie.
const edgeCacheConf = `    proxy_cache_path $STATE/nginx-cache levels=1:2 keys_zone=shop_edge:10m
                     max_size=64m inactive=10m use_temp_path=off;
    map $http_accept_encoding $shop_edge_coding {
        default "";
        ~*\bbr\b   br;
        ~*\bgzip\b gzip;
    }
    map "$http_authorization$http_cookie" $shop_edge_session {
        default 1;
        ""      0;
    }
`

// edgeCacheLocations are the cached routes: the proxy settings of "/",
// plus the cache's. One request per key goes to the service when a copy
// is missing (the lock); the others wait for it, up to 5 s. While a
// stale copy is revalidated in the background, readers get the stale one
// (within the service's stale-while-revalidate); a failing service is not
// hidden behind old copies.
const edgeCacheLocations = `        location ~ ^/v1/(menu|items)$ {
$CLIENT_LIMITS
$PROXY_TO_SHOP
            proxy_set_header Accept-Encoding $shop_edge_coding;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            proxy_send_timeout 30s;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 10s;

            proxy_cache shop_edge;
            proxy_cache_key "$request_method $uri?$args $shop_edge_coding";
            proxy_cache_lock on;
            proxy_cache_lock_timeout 5s;
            proxy_cache_lock_age 5s;
            proxy_cache_background_update on;
            proxy_cache_revalidate on;
            # The key holds the coding already; the service's Vary would
            # split copies by the clients' exact Accept-Encoding strings.
            proxy_ignore_headers Vary;
            proxy_cache_bypass $shop_edge_session;
            proxy_no_cache $shop_edge_session;
            add_header X-Cache-Status $upstream_cache_status always;
        }
`

// clientLimits are nginx's per-client limits for a cluster of replicas
// API replicas, each held to cores CPUs (0: none). They are sized from the
// adaptive limit's starting point (httpapi.DefaultAdmission for the
// replica's GOMAXPROCS; --admission adaptive): a replica works on
// InitialLimit requests at once and queues up to ShedAll times as many
// more, then refuses everything. The default split admission holds more
// (its slots and up to 64 queued a slot), so one client still meets
// nginx's 429 before it fills a replica's queues. So:
//   - conns, the requests one client address may have in nginx at once,
//     is what all the replicas hold, working and queued, before they
//     refuse everything: replicas x (1 + ShedAll) x InitialLimit. One
//     client can fill the cluster's queues, never overflow them for the
//     others: its next request gets a 429 from nginx, not a place in a
//     replica's queue.
//   - rate, the requests per second, is that many requests turning over
//     within the routes' common latency objective (50 ms, Little's law):
//     a client sending faster would hold more than conns once its
//     requests take their objective. burst is conns, with no delay: a
//     client may send everything it may hold at once.
//
// Both are keyed by the connection's address, never X-Forwarded-For
// (a client could name any address in it).
type clientLimits struct {
	conns, rate, burst int
}

// clientObjective is the latency objective of the browsing, cart and
// order-read routes (shop/httpapi's route table).
const clientObjective = 50 * time.Millisecond

func newClientLimits(replicas int, cores float64) clientLimits {
	adm := httpapi.DefaultAdmission(uint(replicaCPUs(cores)))
	conns := replicas * int(float64(adm.InitialLimit)*(1+adm.ShedAll))
	return clientLimits{conns: conns, rate: int(float64(conns) / clientObjective.Seconds()), burst: conns}
}

// replicaCPUs is the GOMAXPROCS an API replica runs with: the
// environment's GOMAXPROCS, which the replicas inherit; else, under a
// quota, the one the supervisor gives (the quota rounded up); else Go's
// default on this machine, as this process has it.
func replicaCPUs(cores float64) int {
	if n, err := strconv.Atoi(os.Getenv("GOMAXPROCS")); err == nil && n > 0 {
		return n
	}
	if cores > 0 {
		return supervise.GoMaxProcs(cores)
	}
	return runtime.GOMAXPROCS(0)
}

// clientLimitsConf is the zones (http level) and the directives (in each
// location but health and readiness) of the per-client limits, or
// comments when PERFSCALE_CLUSTER_CLIENT_LIMITS=off: a load generator on
// one address that stands for many clients turns them off.
func clientLimitsConf(replicas int, cores float64) (zones, limits string) {
	if os.Getenv("PERFSCALE_CLUSTER_CLIENT_LIMITS") == "off" {
		return "    # Per-client limits are off (PERFSCALE_CLUSTER_CLIENT_LIMITS=off).\n",
			"            # Per-client limits are off (PERFSCALE_CLUSTER_CLIENT_LIMITS=off)."
	}
	l := newClientLimits(replicas, cores)
	zones = fmt.Sprintf(`    # Per-client limits (cmd/cluster's clientLimits says how they follow
    # from the replicas' admission control: %d replicas at their starting
    # limit), by the connection's address. Past them nginx answers 429
    # problem+json with Retry-After (error_page below), logged at info
    # only (error_log is at warn): a log line per refusal would cost what
    # refusing saves.
    limit_req_zone $binary_remote_addr zone=shop_client_rate:10m rate=%dr/s;
    limit_conn_zone $binary_remote_addr zone=shop_client_conns:10m;
    limit_req_status 429;
    limit_conn_status 429;
    limit_req_log_level info;
    limit_conn_log_level info;
`, replicas, l.rate)
	limits = fmt.Sprintf(`            limit_req zone=shop_client_rate burst=%d nodelay;
            limit_conn shop_client_conns %d;`, l.burst, l.conns)
	return zones, limits
}

// nginxErrors are the answers nginx makes itself, as problem+json
// (RFC 9457) like the service's, each with Retry-After: 1.
var nginxErrors = []struct {
	status       int
	code, detail string
}{
	{429, "too_many_requests", "too many requests from your address, at once or per second, for this cluster (its load balancer holds each client to what the replicas admit); retry after the time in Retry-After"},
	{502, "unavailable", "no API replica could be reached or one broke the connection; a checkout may have been placed: retry it with the same Idempotency-Key"},
	{503, "unavailable", "the load balancer cannot serve this request now; retry after the time in Retry-After"},
	{504, "unavailable", "the API replica did not answer in time; a checkout may have been placed: retry it with the same Idempotency-Key"},
}

// errorPagesConf is a named location per status of nginxErrors, which
// error_page sends nginx's own answers to. The bodies hold no variable:
// nothing a client sent is echoed into the JSON.
func errorPagesConf() string {
	var b strings.Builder
	for _, e := range nginxErrors {
		body, _ := json.Marshal(map[string]any{"type": "about:blank", "title": http.StatusText(e.status), "status": e.status, "code": e.code, "detail": e.detail})
		fmt.Fprintf(&b, `        location @status_%d {
            default_type application/problem+json;
            add_header Retry-After 1 always;
            return %d '%s\n';
        }
`, e.status, e.status, body)
	}
	return b.String()
}
