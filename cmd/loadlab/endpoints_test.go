package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// shopLike answers a session to every other user with a 429 problem
// document, the menu at once, and the checkout's two requests.
func shopLike(t *testing.T) *httptest.Server {
	var sessions atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST" && r.URL.Path == "/v1/sessions":
			if sessions.Add(1)%2 == 0 {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusTooManyRequests)
				w.Write([]byte(`{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"too many sessions from this client\nsecond line"}`))
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(201)
			w.Write([]byte(`{"token": "t"}`))
		case r.URL.Path == "/v1/menu":
		case r.Method == "PUT":
			w.Write([]byte(`{"total_cents": 300}`))
		case r.Method == "POST" && r.URL.Path == "/v1/orders":
			w.WriteHeader(500)
			w.Write([]byte("database is down\n"))
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

const shopLikeScenario = `
base: http://127.0.0.1:1
setup:
  - {name: session, method: POST, path: /v1/sessions, capture: {token: $.token}}
steps:
  - {name: menu, weight: 3, path: /v1/menu}
  - name: checkout
    sequence:
      - {method: PUT, path: "/v1/cart/items/{{rand 1 9}}", body: '{"quantity": 1}', capture: {total: $.total_cents}}
      - {method: POST, path: /v1/orders, body: '{"expected_total_cents": {{.total}}}'}
`

func TestRunReportsEachEndpointAndItsErrorCauses(t *testing.T) {
	srv := shopLike(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "shop.yaml")
	os.WriteFile(file, []byte(shopLikeScenario), 0o644)
	path := filepath.Join(dir, "out.json")
	out, _, err := loadlab("run", "--scenario", file, "--base", srv.URL, "--concurrency", "4", "--requests", "200",
		"--max-errors", "100%", "--json", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"endpoint", "session", "POST /v1/sessions", "menu", "checkout/1", "checkout/2", "POST /v1/orders",
		`429 Too Many Requests: "too many sessions from this client"`, `500 Internal Server Error: "database is down"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Requests  int64 `json:"requests"`
		Endpoints []struct {
			Name     string `json:"name"`
			Requests int64  `json:"requests"`
			Errors   struct {
				Total    int64            `json:"total"`
				ByStatus map[string]int64 `json:"by_status"`
				Causes   []struct {
					Cause  string `json:"cause"`
					Count  int64  `json:"count"`
					Sample string `json:"sample"`
				} `json:"causes"`
			} `json:"errors"`
			Latency struct {
				P99 int64 `json:"p99_ns"`
			} `json:"latency"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	var sum int64
	for i, ep := range res.Endpoints {
		byName[ep.Name] = i
		sum += ep.Requests
	}
	if sum != res.Requests || len(res.Endpoints) != 4 {
		t.Fatalf("endpoints %+v do not add up to the %d requests", res.Endpoints, res.Requests)
	}
	session := res.Endpoints[byName["session"]]
	if session.Errors.ByStatus["429"] == 0 || session.Errors.ByStatus["429"] != session.Errors.Total ||
		len(session.Errors.Causes) != 1 || session.Errors.Causes[0].Sample != "too many sessions from this client" {
		t.Errorf("session: %+v", session)
	}
	menu := res.Endpoints[byName["menu"]]
	if menu.Requests == 0 || menu.Errors.Total != 0 || menu.Latency.P99 <= 0 {
		t.Errorf("menu: %+v", menu)
	}
	order := res.Endpoints[byName["checkout/2"]]
	if order.Errors.ByStatus["500"] != order.Requests || order.Requests == 0 {
		t.Errorf("checkout/2: %+v", order)
	}
}

func TestEndpointThresholds(t *testing.T) {
	srv := shopLike(t)
	file := filepath.Join(t.TempDir(), "shop.yaml")
	os.WriteFile(file, []byte(shopLikeScenario), 0o644)
	args := []string{"run", "--scenario", file, "--base", srv.URL, "--concurrency", "2", "--requests", "60", "--max-errors", "100%"}
	_, _, err := loadlab(append(args, "--threshold", "menu:errors<1%", "--threshold", "menu:p99<1h")...)
	if err != nil {
		t.Fatalf("menu passes its thresholds, got %v", err)
	}
	// "checkout" covers both requests of the sequence; its orders all fail.
	_, _, err = loadlab(append(args, "--threshold", "checkout:errors<10%")...)
	if exitCode(err) != exitFailed || !strings.HasPrefix(err.Error(), "threshold checkout:errors<10% failed: errors ") ||
		!strings.Contains(err.Error(), "500 Internal Server Error on checkout/2") {
		t.Fatalf("err %v", err)
	}
	_, _, err = loadlab(append(args, "--threshold", "chekout:p99<1s")...)
	if exitCode(err) != exitBadInput || !strings.Contains(err.Error(), `no endpoint "chekout" in this run (it has session, menu, checkout/1, checkout/2)`) {
		t.Fatalf("err %v", err)
	}
}

func TestErrorCausesNameTheTransportFailure(t *testing.T) {
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(hang)
	closed := closedPort(t)
	tests := []struct{ name, url, timeout, cause, names string }{
		// The one line names the address, as the summary does.
		{"closed port", closed, "5s", "connection refused", strings.TrimSuffix(strings.TrimPrefix(closed, "http://"), "/")},
		{"unknown host", "http://no-such-host.invalid/", "5s", "no such host", "no-such-host.invalid"},
		{"timeout", slow.URL + "/wait", "50ms", "timeout after 50ms", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := loadlab("run", "--concurrency", "1", "--requests", "2", "--timeout", tt.timeout, tt.url)
			if exitCode(err) != exitFailed || !strings.Contains(err.Error(), "most: "+tt.cause) ||
				!strings.Contains(err.Error(), tt.names) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err %v", err)
			}
			if !strings.Contains(out, "2  "+tt.cause+": ") {
				t.Errorf("causes do not show %q with a sample:\n%s", tt.cause, out)
			}
		})
	}
}

func TestRunReadsTargetsFromStdin(t *testing.T) {
	var puts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PUT" && r.Header.Get("X-Run") == "7" {
			puts.Add(1)
			return
		}
		if r.URL.Path != "/v1/menu" {
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	stdin = strings.NewReader("GET " + srv.URL + "/v1/menu\n\nPUT " + srv.URL + "/v1/cart/items/3\n")
	defer func() { stdin = os.Stdin }()
	out, _, err := loadlab("run", "--targets", "-", "-H", "X-Run: 7", "--concurrency", "2", "--requests", "20")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"2 targets from stdin", "GET /v1/menu", "PUT /v1/cart/items/3"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if puts.Load() != 10 {
		t.Errorf("%d of 20 requests were the PUT target, want every other one", puts.Load())
	}
	stdin = strings.NewReader("GET " + srv.URL + "/\nnot a header\n")
	_, _, err = loadlab("run", "--targets", "-", "--rate", "5")
	if exitCode(err) != exitBadInput || !strings.Contains(err.Error(), "targets line 2:") {
		t.Fatalf("err %v", err)
	}
	_, _, err = loadlab("run", "--targets", "-", "--method", "POST", "--rate", "5")
	if exitCode(err) != exitBadInput || !strings.Contains(err.Error(), "--method, --body and --body-file apply to a URL") {
		t.Fatalf("err %v", err)
	}
}

// vegeta's json targets from stdin, told apart from its http format or
// named with --targets-format; a bad line is one line of error with its
// number, and nothing is sent.
func TestRunReadsJSONTargets(t *testing.T) {
	var puts, sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent.Add(1)
		body, _ := io.ReadAll(r.Body)
		if r.Method == "PUT" && string(body) == `{"quantity": 1}` && r.Header.Get("Content-Type") == "application/json" {
			puts.Add(1)
		}
	}))
	defer srv.Close()
	defer func() { stdin = os.Stdin }()
	targets := `{"method":"GET","url":"` + srv.URL + `/v1/menu"}` + "\n" +
		`{"method":"PUT","url":"` + srv.URL + `/v1/cart/items/3","header":{"Content-Type":["application/json"]},"body":"eyJxdWFudGl0eSI6IDF9"}` + "\n"
	for _, format := range [][]string{nil, {"--targets-format", "json"}} {
		puts.Store(0)
		stdin = strings.NewReader(targets)
		out, _, err := loadlab(append([]string{"run", "--targets", "-", "--concurrency", "2", "--requests", "20"}, format...)...)
		if err != nil {
			t.Fatalf("%v: %v", format, err)
		}
		if !strings.Contains(out, "2 targets from stdin") || !strings.Contains(out, "PUT /v1/cart/items/3") || puts.Load() != 10 {
			t.Errorf("%v: %d of 20 requests the PUT with its decoded body:\n%s", format, puts.Load(), out)
		}
	}
	sent.Store(0)
	for _, tt := range []struct {
		args  []string
		input string
		want  string
	}{
		{nil, `{"method":"GET","url":"` + srv.URL + `/"}` + "\n" + `{"method":"GET","url":"` + srv.URL + `/","body":"%%"}` + "\n", "targets line 2: not a JSON target"},
		{[]string{"--targets-format", "http"}, targets, "targets line 1:"},
		{[]string{"--targets-format", "yaml"}, targets, `--targets-format must be http or json, got "yaml"`},
	} {
		stdin = strings.NewReader(tt.input)
		_, _, err := loadlab(append([]string{"run", "--targets", "-", "--rate", "5"}, tt.args...)...)
		if exitCode(err) != exitBadInput || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: err %v, want one line with %q (exit %d)", tt.args, err, tt.want, exitBadInput)
		}
	}
	if _, _, err := loadlab("run", "--targets-format", "json", "--rate", "5", srv.URL); exitCode(err) != exitBadInput || !strings.Contains(err.Error(), "--targets-format applies to --targets only") {
		t.Errorf("--targets-format with a URL: err %v", err)
	}
	if sent.Load() != 0 {
		t.Errorf("%d requests sent for bad input", sent.Load())
	}
}
