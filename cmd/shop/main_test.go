package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the test reads the database the service wrote

	"github.com/perfscale/perfscale/internal/testwait"
)

// logBuffer is a goroutine-safe stdout for run.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// field returns the value of key in the first log record with msg.
func (b *logBuffer) field(msg, key string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			v, _ := rec[key].(string)
			return v
		}
	}
	return ""
}

type instance struct {
	api, admin string
	logs       *logBuffer
	stop       func() error
}

func start(t *testing.T, dataDir string, extra ...string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &logBuffer{}
	// No drain delay unless a test gives one: with --role api it is 5 s,
	// spent on each stop (the drain is tested on a real process in
	// drain_test.go).
	args := append([]string{"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data-dir", dataDir, "--prep-time", "200ms",
		"--drain-delay", "0s"}, extra...)
	env := map[string]string{"SHOP_ADMIN_TOKEN": "secret"}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, func(k string) string { return env[k] }, logs) }()
	inst := &instance{logs: logs}
	t.Cleanup(cancel) // also when the wait below fails
	testwait.Eventually(t, 20*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("run returned before listening: %v\n%s", err, logs.String())
		default:
		}
		inst.api, inst.admin = logs.field("listening", "url"), logs.field("admin listening", "url")
		if inst.api == "" || inst.admin == "" {
			return fmt.Errorf("not listening (api %q, admin %q); the log so far:\n%s", inst.api, inst.admin, logs.String())
		}
		return nil
	})
	var once sync.Once
	var stopErr error
	inst.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(30 * time.Second):
				stopErr = fmt.Errorf("run did not return 30s after cancel")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { inst.stop() })
	return inst
}

// waitOrderReady polls the order through the API until the worker has
// taken it to ready.
func waitOrderReady(t *testing.T, api, token string, id int64) {
	t.Helper()
	testwait.Eventually(t, 20*time.Second, func() error {
		code, body := call(t, "GET", fmt.Sprintf("%s/v1/orders/%d", api, id), token, "", "")
		var order struct{ Status string }
		json.Unmarshal(body, &order)
		if code != 200 || order.Status != "ready" {
			return fmt.Errorf("order %d: %d %s", id, code, body)
		}
		return nil
	})
}

func call(t *testing.T, method, url, token, key, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// The curl walk-through of docs/shop.md, through the real binary's wiring.
func TestRunServesTheWholeJourneyAndStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir, "--log-level", "debug") // successful requests are logged at debug level
	if code, _ := call(t, "GET", s.api+"/v1/menu", "", "", ""); code != 200 {
		t.Fatalf("menu: %d", code)
	}
	code, body := call(t, "POST", s.api+"/v1/sessions", "", "", "")
	var sess struct{ Token string }
	json.Unmarshal(body, &sess)
	if code != 201 || sess.Token == "" {
		t.Fatalf("session: %d %s", code, body)
	}
	if code, body := call(t, "PUT", s.api+"/v1/cart/items/3", sess.Token, "", `{"quantity": 2}`); code != 200 {
		t.Fatalf("cart: %d %s", code, body)
	}
	code, body = call(t, "POST", s.api+"/v1/orders", sess.Token, "walkthrough-1", `{"customer_name": "Ada", "email": "ada@example.com"}`)
	var order struct {
		ID     int64
		Status string
	}
	json.Unmarshal(body, &order)
	if code != 201 {
		t.Fatalf("checkout: %d %s", code, body)
	}
	waitOrderReady(t, s.api, sess.Token, order.ID)
	if code, _ := call(t, "PUT", s.api+"/v1/admin/items/3", "secret", "", `{"price_cents": 1234}`); code != 200 {
		t.Fatalf("admin with SHOP_ADMIN_TOKEN: %d", code)
	}
	// Profiling is on the admin listener only.
	if code, _ := call(t, "GET", s.admin+"/debug/pprof/", "", "", ""); code != 200 {
		t.Fatalf("pprof on admin: %d", code)
	}
	if code, _ := call(t, "GET", s.api+"/debug/pprof/", "", "", ""); code != 404 {
		t.Fatalf("pprof on the public listener: %d, want 404", code)
	}
	if code, _ := call(t, "GET", s.admin+"/metrics", "", "", ""); code != 200 {
		t.Fatalf("metrics on admin: %d", code)
	}
	if code, _ := call(t, "GET", s.api+"/metrics", "", "", ""); code != 404 {
		t.Fatalf("metrics on the public listener: %d, want 404", code)
	}
	if _, body := call(t, "GET", s.admin+"/metrics", "", "", ""); !bytes.Contains(body, []byte("\nshop_jobs_waiting ")) || !bytes.Contains(body, []byte("\nshop_jobs_oldest_waiting_seconds ")) {
		t.Fatal("the admin metrics lack the job backlog (shop_jobs_waiting, shop_jobs_oldest_waiting_seconds)")
	}
	if err := s.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if s.logs.field("stopped", "msg") == "" && !strings.Contains(s.logs.buf.String(), `"msg":"stopped"`) {
		t.Fatal("no clean stop logged")
	}
	for _, line := range strings.Split(strings.TrimSpace(s.logs.buf.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("log line is not JSON: %s", line)
		}
	}
	if !strings.Contains(s.logs.buf.String(), `"request_id"`) {
		t.Fatal("request logs carry no request_id")
	}

	// A restart keeps the data and does not seed again.
	s2 := start(t, dir, "--seed-items", "5")
	_, body = call(t, "GET", s2.api+"/v1/items/3", "", "", "")
	if !bytes.Contains(body, []byte(`"price_cents":1234`)) {
		t.Fatalf("after a restart item 3 is %s", body)
	}
	if s2.logs.field("seeded catalog", "msg") != "" || strings.Contains(s2.logs.buf.String(), "seeded catalog") {
		t.Fatal("the catalog was seeded again on restart")
	}
}

func TestRunRejectsBadConfiguration(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
		code int // exitBadInput, or exitFailed for what is found only in starting
	}{
		{[]string{"--seed-items", "-1"}, nil, "--seed-items must be", exitBadInput},
		{[]string{"--seed-items", "2000000"}, nil, "--seed-items must be", exitBadInput},
		{nil, map[string]string{"SHOP_SEED_ITEMS": "many"}, "--seed-items must be", exitBadInput},
		{[]string{"--role", "boss"}, nil, "--role must be api, worker or all", exitBadInput},
		{[]string{"--prep-time", "soon"}, nil, "--prep-time must be a duration", exitBadInput},
		{[]string{"--drain-delay", "-1s"}, nil, "--drain-delay must not be negative, got \"-1s\"", exitBadInput},
		{nil, map[string]string{"SHOP_DRAIN_DELAY": "a while"}, "--drain-delay must be a duration", exitBadInput},
		{[]string{"--log-level", "loud"}, nil, "--log-level must be", exitBadInput},
		{[]string{"--no-such-flag"}, nil, "flag provided but not defined", exitBadInput},
		{[]string{"--session-rate", "-1"}, nil, "--session-rate must be", exitBadInput},
		{nil, map[string]string{"SHOP_SESSION_RATE": "fast"}, "--session-rate must be", exitBadInput},
		{[]string{"--session-burst", "0"}, nil, "--session-burst must be", exitBadInput},
		{[]string{"--workers", "0"}, nil, "--workers must be", exitBadInput},
		{[]string{"--trusted-proxies", "10.0.0.0/8,nginx"}, nil, "--trusted-proxies must be", exitBadInput},
		{[]string{"--checkout-backpressure", "maybe"}, nil, "--checkout-backpressure must be on or off, got \"maybe\"", exitBadInput},
		{nil, map[string]string{"SHOP_CHECKOUT_BACKPRESSURE": "no"}, "--checkout-backpressure must be on or off", exitBadInput},
		{nil, map[string]string{"SHOP_ADMIN_TOKEN": " s3cret"}, "SHOP_ADMIN_TOKEN has leading or trailing whitespace", exitBadInput},
		{nil, map[string]string{"SHOP_ADMIN_TOKEN": "s3cret\n"}, "SHOP_ADMIN_TOKEN has leading or trailing whitespace", exitBadInput},
		{[]string{"extra"}, nil, "unexpected argument", exitBadInput},
		{[]string{"--addr", "256.0.0.1:8080", "--data-dir", "DIR"}, nil, "listen on", exitFailed},
		{[]string{"--addr", "256.0.0.1:99999", "--data-dir", "DIR"}, nil, "--addr must be HOST:PORT or :PORT with a port from 0 to 65535", exitBadInput},
		{[]string{"--db", "mysql://shop@localhost/shop"}, nil, "--db must be a postgres:// URL", exitBadInput},
		{[]string{"--db", "postgres://shop:s3cret@localhost:port/shop"}, nil, "is not a PostgreSQL URL", exitBadInput},
		{nil, map[string]string{"SHOP_DATABASE_URL": "postgres://shop:s3cret@localhost:port/shop"}, "is not a PostgreSQL URL", exitBadInput},
		{[]string{"--db-max-conns", "0"}, nil, "--db-max-conns must be", exitBadInput},
		{[]string{"--db-replica", "postgres://localhost/shop"}, nil, "--db-replica needs --db", exitBadInput},
		{[]string{"--db", "postgres://a/shop", "--db", "postgres://b/shop"}, nil, "--db is given 2 times: say --shards 2", exitBadInput},
		{[]string{"--db", "postgres://a/shop", "--shards", "2"}, nil, "--shards 2 needs --db given 2 times, one PostgreSQL URL per shard in shard order, got 1", exitBadInput},
		{nil, map[string]string{"SHOP_DATABASE_URL": "postgres://a/shop postgres://b/shop", "SHOP_SHARDS": "3"}, "--shards 3 needs --db given 3 times", exitBadInput},
		{[]string{"--shards", "0"}, nil, "--shards must be a whole number from 1 to 1024", exitBadInput},
		{[]string{"--db", "postgres://a/shop", "--db", "mysql://b/shop", "--shards", "2"}, nil, "--db must be a postgres:// URL", exitBadInput},
		{[]string{"--db", "postgres://a/shop", "--db", "postgres://b/shop", "--shards", "2", "--db-replica", "postgres://r/shop"}, nil, "--db-replica cannot be used with --shards", exitBadInput},
		{[]string{"--order-retention", "8760h"}, nil, "--order-retention needs --db", exitBadInput},
		{[]string{"--db", "postgres://localhost/shop", "--order-retention", "24h"}, nil, "--order-retention must be 0 (keep every order) or a duration of at least 720h0m0s", exitBadInput},
		{nil, map[string]string{"SHOP_ORDER_RETENTION": "a year"}, "--order-retention must be", exitBadInput},
		{[]string{"--db", "postgres://localhost/shop", "--db-replica", "redis://localhost"}, nil, "--db-replica must be a postgres:// URL", exitBadInput},
		{[]string{"--db", "postgres://localhost/shop", "--db-replica", "postgres://u:s3cret@localhost:port/shop"}, nil, "--db-replica: ", exitBadInput},
		{[]string{"--nats", "127.0.0.1:4222"}, nil, "--nats must be nats://host:port", exitBadInput},
		{[]string{"--redis", "http://127.0.0.1:6379"}, nil, "--redis must be redis://host:port", exitBadInput},
		{[]string{"--nats-stream", "orders.all"}, nil, "--nats-stream must be letters", exitBadInput},
		{nil, map[string]string{"SHOP_REDIS_URL": "127.0.0.1:6379"}, "--redis must be redis://host:port", exitBadInput},
		{nil, map[string]string{"SHOP_NATS_URL": "http://127.0.0.1:4222"}, "--nats must be nats://host:port", exitBadInput},
		{[]string{"--db-connect-timeout", "soon"}, nil, "--db-connect-timeout must be a duration", exitBadInput},
		{[]string{"--nats-timeout", "-2s"}, nil, "--nats-timeout must not be negative", exitBadInput},
		{[]string{"--nats-timeout", "0s"}, nil, "--nats-timeout must be above 0", exitBadInput},
		{[]string{"--db-statement-timeout", "0s"}, nil, "must be above 0", exitBadInput},
		{[]string{"migrate", "--db", "postgres://nobody@127.0.0.1:1/shop", "--db-connect-timeout", "2s"}, nil, "postgres at 127.0.0.1:1/shop is not reachable", exitFailed},
		// A free port: the API listens before the database is reached, and
		// the default 8080 may be another process's on a shared machine.
		{[]string{"--addr", "127.0.0.1:0", "--db", "postgres://nobody@127.0.0.1:1/shop", "--db-connect-timeout", "2s"}, nil, "postgres at 127.0.0.1:1/shop is not reachable", exitFailed},
		{[]string{"drop-events"}, nil, "drop-events needs --nats", exitBadInput},
		{[]string{"drop-events", "--nats", "nats://127.0.0.1:1"}, nil, "nats nats://127.0.0.1:1: nats: no servers available", exitFailed},
		{[]string{"drop-events", "--nats", "nats://127.0.0.1:4222", "--nats-stream", "a.b"}, nil, "--nats-stream must be letters", exitBadInput},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			for i, a := range tt.args {
				if a == "DIR" {
					tt.args[i] = dir
				}
			}
			args := append([]string{"--data-dir", dir}, tt.args...)
			if len(tt.args) > 0 && (tt.args[0] == "migrate" || tt.args[0] == "drop-events") {
				args = append([]string{tt.args[0], "--data-dir", dir}, tt.args[1:]...)
			}
			err := run(context.Background(), args, func(k string) string { return tt.env[k] }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if code := exitCode(err); code != tt.code {
				t.Fatalf("err = %v: exit %d, want %d", err, code, tt.code)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error shows the password: %q", err)
			}
		})
	}
}

// The api and worker roles split one deployment in two processes (here two
// run calls) over one database: the api enqueues, the worker confirms.
func TestAPIAndWorkerRolesShareTheWork(t *testing.T) {
	dir := t.TempDir()
	api := start(t, dir, "--role", "api")
	worker := start(t, dir, "--role", "worker")
	if code, _ := call(t, "GET", worker.api+"/v1/menu", "", "", ""); code != 404 {
		t.Fatalf("the worker serves the API: %d", code)
	}
	if code, _ := call(t, "GET", worker.api+"/readyz", "", "", ""); code != 200 {
		t.Fatalf("worker readyz: %d", code)
	}
	for _, inst := range []*instance{api, worker} {
		if code, _ := call(t, "GET", inst.api+"/metrics", "", "", ""); code != 404 {
			t.Fatalf("metrics on the public listener of a split role: %d, want 404", code)
		}
		if code, _ := call(t, "GET", inst.admin+"/metrics", "", "", ""); code != 200 {
			t.Fatalf("metrics on the admin listener of a split role: %d", code)
		}
	}
	_, body := call(t, "POST", api.api+"/v1/sessions", "", "", "")
	var sess struct{ Token string }
	json.Unmarshal(body, &sess)
	call(t, "PUT", api.api+"/v1/cart/items/1", sess.Token, "", `{"quantity": 1}`)
	code, body := call(t, "POST", api.api+"/v1/orders", sess.Token, "k", `{"customer_name": "Ada", "email": "ada@example.com"}`)
	if code != 201 {
		t.Fatalf("checkout: %d %s", code, body)
	}
	var order struct{ ID int64 }
	json.Unmarshal(body, &order)
	waitOrderReady(t, api.api, sess.Token, order.ID)
}

// SIGTERM (here: the cancelled run context, which is what main's
// signal.NotifyContext turns SIGTERM into) while a confirmation is being
// mailed: the job finishes and confirms the order before run returns.
func TestShutdownLetsARunningJobFinish(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir, "--mail-latency", "3s", "--shutdown-timeout", "15s")
	_, body := call(t, "POST", s.api+"/v1/sessions", "", "", "")
	var sess struct{ Token string }
	json.Unmarshal(body, &sess)
	call(t, "PUT", s.api+"/v1/cart/items/1", sess.Token, "", `{"quantity": 1}`)
	code, body := call(t, "POST", s.api+"/v1/orders", sess.Token, "k", `{"customer_name": "Ada", "email": "ada@example.com"}`)
	if code != 201 {
		t.Fatalf("checkout: %d %s", code, body)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Wait until the worker has taken the job (it then sleeps 3 s in the
	// simulated mail call).
	testwait.Eventually(t, 20*time.Second, func() error {
		var n int
		err := db.QueryRow(`SELECT COUNT(*) FROM river_job WHERE kind = 'order_placed' AND state = 'running'`).Scan(&n)
		if err != nil || n != 1 {
			return fmt.Errorf("%d confirmation jobs running, want 1 (%v)", n, err)
		}
		return nil
	})
	if err := s.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	var status, state string
	if err := db.QueryRow(`SELECT status FROM orders WHERE id = 1`).Scan(&status); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT state FROM river_job WHERE kind = 'order_placed'`).Scan(&state); err != nil {
		t.Fatal(err)
	}
	if status != "confirmed" || state != "completed" {
		t.Fatalf("after shutdown the order is %q and its job %q; want confirmed and completed\n%s", status, state, s.logs.buf.String())
	}
	if strings.Contains(s.logs.buf.String(), "context canceled") {
		t.Fatalf("the job was cancelled:\n%s", s.logs.buf.String())
	}
}
