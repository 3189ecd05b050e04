package scenario_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/scenario"
	"github.com/perfscale/perfscale/shop/backend"
	"github.com/perfscale/perfscale/shop/httpapi"
	"github.com/perfscale/perfscale/shop/seed"
)

func compile(t *testing.T, src string) *scenario.Scenario {
	t.Helper()
	f, err := scenario.Parse([]byte(src), false)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scenario.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRejectsBadScenarios(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"no base", "steps: [{path: /}]", "base is missing"},
		{"bad base", "base: localhost\nsteps: [{path: /}]", "must start with http"},
		{"no steps", "base: http://x", "at least one step"},
		{"unknown field", "base: http://x\nsteps: [{path: /, wieght: 2}]", "wieght"},
		{"bad method", "base: http://x\nsteps: [{name: s, method: 'GE T', path: /}]", "step s: method"},
		{"relative path", "base: http://x\nsteps: [{name: s, path: menu}]", "must start with /"},
		{"bad template", "base: http://x\nsteps: [{name: s, path: '/{{.x'}]", "step s: path"},
		{"unknown function", "base: http://x\nsteps: [{name: s, path: '/{{nope}}'}]", "nope"},
		{"negative weight", "base: http://x\nsteps: [{name: s, path: /, weight: -1}]", "weight must not be negative"},
		{"both call and sequence", "base: http://x\nsteps: [{name: s, path: /, sequence: [{path: /a}]}]", "not both"},
		{"bad capture", "base: http://x\nsteps: [{name: s, path: /, capture: {a: token}}]", "capture a"},
		{"bad header", "base: http://x\nsteps: [{name: s, path: /, headers: {'a b': c}}]", "header name"},
		{"range over a number", "base: http://x\nsteps: [{name: s, path: '/{{range 100000000000}}a{{end}}'}]", "step s: path: range over 100000000000"},
		{"range over a function", "base: http://x\nsteps: [{name: s, body: '{{if 1}}{{range rand 1 9}}a{{end}}{{end}}', path: /}]", "step s: body: range over rand"},
		{"recursion", "base: http://x\nsteps: [{name: s, path: '/{{define \"a\"}}{{template \"a\" .}}{{end}}{{template \"a\" .}}'}]", "calling templates is not supported"},
		{"bad escape", "base: http://x\nsteps: [{name: s, path: /%zz}]", "step s: path \"/%zz\" is not a valid URL path"},
		{"not yaml", "{{{", "invalid YAML"},
		{"uncaptured variable", "base: http://x\nsteps:\n  - name: s\n    path: /\n    headers:\n      Authorization: 'Bearer {{.tokn}}'\n  - {name: t, path: /, capture: {token: $.token}}",
			`line 6: step s: header Authorization: {{.tokn}}: no request captures "tokn" (captured: token)`},
		{"nothing captured", "base: http://x\nsteps: [{name: s, path: '/{{.id}}'}]", `line 2: step s: path: {{.id}}: no request captures "id" (none are captured`},
		{"rand max below min", "base: http://x\nsteps:\n  - name: s\n    path: /\n    body: '{\"n\": {{rand 5 1}}}'", "line 5: step s: body: {{rand 5 1}}: max 1 is below min 5"},
		{"rand one argument", "base: http://x\nsteps: [{name: s, path: '/{{rand 5}}'}]", "rand takes two numbers"},
		{"rand not whole", "base: http://x\nsteps: [{name: s, path: '/{{rand 1.5 3}}'}]", "rand takes whole numbers"},
		{"uuid argument", "base: http://x\nsteps: [{name: s, path: '/{{uuid 3}}'}]", "uuid takes no arguments"},
		{"in a sequence", "base: http://x\nsteps:\n  - name: buy\n    sequence:\n      - {path: /a}\n      - {path: '/b/{{rand 9 2}}'}", "line 6: step buy, request 2: path: {{rand 9 2}}: max 2 is below min 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := scenario.Parse([]byte(tt.src), false)
			if err == nil {
				_, err = scenario.Compile(f)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if _, err := scenario.Load(filepath.Join(t.TempDir(), "missing.yaml"), ""); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

// A name that is neither a file nor a built-in scenario says so, naming
// the built-in ones: "open shoop: no such file or directory" left a
// mistyped "shop" looking like a path problem.
func TestLoadOfAnUnknownNameListsTheBuiltinScenarios(t *testing.T) {
	_, err := scenario.Load("shoop", "")
	want := "scenario shoop: no such file, nor a built-in scenario (shop, shop-writes)"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	if _, err := scenario.Load(missing, ""); err == nil || err.Error() != "scenario "+missing+": no such file" {
		t.Fatalf("err = %v, want a missing file named", err)
	}
	if _, err := scenario.Source("shop-writes"); err != nil {
		t.Fatalf("built-in shop-writes: %v", err)
	}
}

// What the decoders refuse is one line in the scenario's words: yaml.v3
// listed its errors a line each ("yaml: unmarshal errors:\n  line 5: field
// request not found in type scenario.Step"), an empty file was "EOF".
func TestDecodeErrorsAreOneLineInTheScenariosWords(t *testing.T) {
	for _, tt := range []struct {
		name, src string
		json      bool
		want      string
	}{
		{"unknown field", "base: http://x\nsteps:\n  - name: a\n    request: {path: /}\n", false,
			`invalid YAML: line 4: unknown field "request" in a step (name, weight, sequence, or a request's fields)`},
		{"several", "base: http://x\nsteps:\n  - name: a\n    weight: abc\n    headers: [a]\n    sequence: {a: 1}\n", false,
			`invalid YAML: line 4: want a whole number, got text "abc"; line 5: want a map of names to text, got a list; line 6: want a list of requests, got a map`},
		{"not a map", "- a\n- b\n", false, "invalid YAML: line 1: want a scenario (a map of base, setup and steps), got a list"},
		{"empty", "", false, "invalid YAML: the file is empty"},
		{"syntax", "steps: [\n", false, "invalid YAML: line 1: did not find expected node content"},
		{"empty JSON", "", true, "invalid JSON: the file is empty"},
		{"JSON unknown field", `{"base": "http://x", "stepz": []}`, true, `invalid JSON: unknown field "stepz"`},
		{"JSON wrong type", `{"base": "http://x", "steps": [{"name": "a", "weight": "x", "path": "/"}]}`, true,
			"invalid JSON: steps.weight: want a whole number, got a JSON string"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := scenario.Parse([]byte(tt.src), tt.json)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse: %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestCapturesAndTemplates(t *testing.T) {
	s := compile(t, `
base: http://shop.test/
setup:
  - {name: login, method: post, path: /sessions, capture: {token: $.token, first: "$.items[0].id"}}
steps:
  - name: get
    path: /items/{{.first}}
    headers: {Authorization: "Bearer {{.token}}"}
    body: '{"n": {{rand 5 5}}, "key": "{{uuid}}"}'
`)
	u := s.NewSession()
	r, err := u.Next()
	if err != nil || r.Method != "POST" || r.URL != "http://shop.test/sessions" {
		t.Fatalf("first request %+v, %v; want the setup POST", r, err)
	}
	// A failed setup request is repeated.
	u.Observe(r, load.Response{Status: 503})
	if r, _ = u.Next(); r.URL != "http://shop.test/sessions" {
		t.Fatalf("after a failed setup: %s", r.URL)
	}
	u.Observe(r, load.Response{Status: 201, Body: []byte(`{"token": "tok-1", "items": [{"id": 7}, {"id": 8}]}`)})
	r, err = u.Next()
	if err != nil {
		t.Fatal(err)
	}
	if r.URL != "http://shop.test/items/7" || r.Header.Get("Authorization") != "Bearer tok-1" {
		t.Fatalf("step request %s %v", r.URL, r.Header)
	}
	if !strings.HasPrefix(string(r.Body), `{"n": 5, "key": "`) || len(r.Body) != len(`{"n": 5, "key": ""}`)+36 {
		t.Fatalf("body %s", r.Body)
	}
	if r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("content type %q", r.Header.Get("Content-Type"))
	}
}

func TestSequenceStopsAtAFailure(t *testing.T) {
	s := compile(t, `
base: http://x
steps:
  - {name: buy, sequence: [{method: PUT, path: /cart}, {method: POST, path: /orders}]}
`)
	u := s.NewSession()
	r, _ := u.Next()
	u.Observe(r, load.Response{Status: 200})
	if r, _ = u.Next(); r.Method != "POST" {
		t.Fatalf("second request of the sequence: %s %s", r.Method, r.URL)
	}
	u.Observe(r, load.Response{Status: 201})
	r, _ = u.Next()
	u.Observe(r, load.Response{Status: 404}) // adding failed: no checkout follows
	if r, _ = u.Next(); r.Method != "PUT" {
		t.Fatalf("after a failed add: %s %s, want a new sequence", r.Method, r.URL)
	}
}

func TestJSONScenario(t *testing.T) {
	f, err := scenario.Parse([]byte(`{"base": "http://x", "steps": [{"name": "a", "weight": 2, "method": "GET", "path": "/a"}]}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := scenario.Compile(f); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{
		`{"base": "http://x", "stepz": []}`,
		`{"base": "http://x", "steps": [{"path": "/a", "wieght": 2}]}`,
		`{"base": "http://x", "steps": [{"sequence": [{"path": "/a", "hedaers": {}}]}]}`,
		`{"base": "http://x", "setup": [{"path": "/a", "captrue": {}}], "steps": [{"path": "/"}]}`,
	} {
		if _, err := scenario.Parse([]byte(src), true); err == nil || !strings.Contains(err.Error(), "unknown field") {
			t.Errorf("%s: err = %v, want an unknown field named", src, err)
		}
	}
}

// The built-in shop scenarios, run by the real generator against the real
// service: every request succeeds and orders are placed; shop-writes
// sends no read.
func TestBuiltinShopScenarioAgainstTheService(t *testing.T) {
	for _, tt := range []struct {
		name   string
		writes bool
	}{{"shop", false}, {"shop-writes", true}} {
		t.Run(tt.name, func(t *testing.T) {
			if reads := runBuiltinShop(t, tt.name); (reads == 0) != tt.writes {
				t.Fatalf("%d reads (GET), want them only in the journey that browses", reads)
			}
		})
	}
}

// runBuiltinShop runs the built-in scenario name with 4 users against the
// embedded shop, checks its requests, orders and checkouts, and returns
// how many of its requests were reads.
func runBuiltinShop(t *testing.T, name string) int64 {
	ctx := context.Background()
	b, err := backend.Open(ctx, backend.Config{SQLitePath: filepath.Join(t.TempDir(), "shop.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Seed(ctx, seed.Items(seed.DefaultItems)); err != nil {
		t.Fatal(err)
	}
	store := b.Store
	h := httpapi.NewHandler(httpapi.Config{
		Catalog: store, Sessions: store, Carts: store, Ordering: b.Desk, Health: store,
	})
	// Every checkout sends the total its cart showed.
	var checkouts, withTotal, reads atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			reads.Add(1)
		}
		if r.Method == "POST" && r.URL.Path == "/v1/orders" {
			body, _ := io.ReadAll(r.Body)
			checkouts.Add(1)
			if bytes.Contains(body, []byte(`"expected_total_cents": `)) {
				withTotal.Add(1)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()

	s, err := scenario.Load(name, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res, err := load.Run(ctx, load.Config{Scenario: s, Concurrency: 4, Requests: 400, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 400 || res.Errors.Total() != 0 {
		t.Fatalf("%d requests, errors %+v; want 400 without errors", res.Requests, res.Errors)
	}
	var orders int
	if err := b.SQLite.WriteDB().QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&orders); err != nil {
		t.Fatal(err)
	}
	var sessions int
	b.SQLite.WriteDB().QueryRow(`SELECT COUNT(*) FROM sessions`).Scan(&sessions)
	if orders == 0 || sessions != 4 {
		t.Fatalf("%d orders, %d sessions; want some orders from 4 users", orders, sessions)
	}
	if checkouts.Load() == 0 || withTotal.Load() != checkouts.Load() {
		t.Fatalf("%d of %d checkouts sent expected_total_cents, want all", withTotal.Load(), checkouts.Load())
	}
	return reads.Load()
}

func FuzzParseScenario(f *testing.F) {
	for _, name := range []string{"shop", "shop-writes"} {
		f.Add(string(scenario.Builtin[name]))
	}
	f.Add("base: http://x\nsteps: [{path: '/{{rand 1 2}}', capture: {a: '$.b[0]'}}]")
	f.Add("base: http://x\nsteps: [{sequence: [{path: /a}, {path: /b}]}]")
	f.Add("steps: [{path: '/{{'}]")
	f.Add(`{"base": "http://x", "setup": [{"method": "POST", "path": "/s", "capture": {"t": "$.a[0]"}}], "steps": [{"path": "/{{.t}}"}]}`)
	f.Fuzz(func(t *testing.T, src string) {
		// The same input as YAML and as JSON: neither may panic, and what
		// compiles must only ever address the base.
		for _, isJSON := range []bool{false, true} {
			file, err := scenario.Parse([]byte(src), isJSON)
			if err != nil {
				continue
			}
			checkSessions(t, file)
		}
	})
}

// checkSessions walks a few requests of a compiled scenario: every one must
// go to the base's host, whatever the templates and captured values say.
func checkSessions(t *testing.T, file *scenario.File) {
	s, err := scenario.Compile(file)
	if err != nil {
		return
	}
	base, err := url.Parse(strings.TrimRight(file.Base, "/"))
	if err != nil {
		t.Fatalf("compiled with a base that does not parse: %q", file.Base)
	}
	u := s.NewSession()
	for range 3 {
		r, err := u.Next()
		if err != nil {
			return
		}
		got, err := url.Parse(r.URL)
		if err != nil || got.Host != base.Host || got.Scheme != base.Scheme {
			t.Fatalf("request %q left the base %q (err %v)", r.URL, file.Base, err)
		}
		u.Observe(r, load.Response{Status: 200, Body: []byte(`{"a": [1], "b": {"c": 2}, "t": "/../@evil.example"}`)})
	}
}

func TestCapturedValueThatBreaksTheURLIsAnError(t *testing.T) {
	s := compile(t, "base: http://x\nsetup: [{path: /s, capture: {id: $.id}}]\nsteps: [{name: item, path: '/items/{{.id}}'}]")
	u := s.NewSession()
	r, _ := u.Next()
	u.Observe(r, load.Response{Status: 200, Body: []byte(`{"id": "%zz"}`)})
	if _, err := u.Next(); err == nil || !strings.Contains(err.Error(), "step item: path") {
		t.Fatalf("err = %v, want one naming the step and path", err)
	}
}

func TestTemplatesAreBounded(t *testing.T) {
	s := compile(t, "base: http://x\nsetup: [{path: /s, capture: {xs: $.xs}}]\nsteps: [{name: big, path: /, body: '{{range .xs}}{{.}}{{end}}'}]")
	u := s.NewSession()
	r, _ := u.Next()
	// A captured list may be ranged over, but what it makes is bounded.
	u.Observe(r, load.Response{Status: 200, Body: []byte(`{"xs": ["a", "b"]}`)})
	if r, err := u.Next(); err != nil || string(r.Body) != "ab" {
		t.Fatalf("body %q, err %v", r.Body, err)
	}
	long := `"` + strings.Repeat("x", 1<<16) + `"`
	u = s.NewSession()
	r, _ = u.Next()
	u.Observe(r, load.Response{Status: 200, Body: []byte(`{"xs": [` + strings.Repeat(long+",", 20) + long + `]}`)})
	if _, err := u.Next(); err == nil || !strings.Contains(err.Error(), "step big: body: expands to more than") {
		t.Fatalf("err = %v, want the expansion bounded", err)
	}
}

func TestMissingCapturedValueIsAnError(t *testing.T) {
	// The token is captured, but only by the request after the one that
	// uses it: a run-time error, named by step, request and header.
	s := compile(t, "base: http://x\nsteps:\n  - name: cart\n    sequence:\n      - {path: /cart, headers: {Authorization: 'Bearer {{.token}}'}}\n      - {path: /login, capture: {token: $.t}}")
	if _, err := s.NewSession().Next(); err == nil || !strings.Contains(err.Error(), "step cart, request 1: header Authorization") {
		t.Fatalf("err = %v, want one naming the step and header", err)
	}
}

// A setup request refused with Retry-After (503 while the service sheds,
// 429) is tried again only after the user waited that long, at most
// 10 s; the waits are observed through the generator's Pause hook, so
// the test does not wait them.
func TestASetupRefusedWithRetryAfterWaits(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  load.Config
	}{
		{"closed loop, fasthttp", load.Config{Concurrency: 1, Client: load.ClientFastHTTP}},
		{"closed loop, nethttp", load.Config{Concurrency: 1, Client: load.ClientNetHTTP}},
		// One request in flight: one user, whose setup the server sees
		// (a second would log in on its own).
		{"open loop", load.Config{Rate: 50, MaxInFlight: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var seen []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				seen = append(seen, r.Method+" "+r.URL.Path)
				n := len(seen)
				mu.Unlock()
				switch {
				case r.URL.Path != "/sessions":
				case n == 1:
					w.Header().Set("Retry-After", "2")
					w.WriteHeader(http.StatusServiceUnavailable)
				case n == 2:
					w.Header().Set("Retry-After", "3600") // an hour: the user waits 10 s at most
					w.WriteHeader(http.StatusTooManyRequests)
				default:
					w.WriteHeader(http.StatusCreated)
					io.WriteString(w, `{"token": "t"}`) //nolint:errcheck // test server
				}
			}))
			defer srv.Close()
			s := compile(t, `
base: `+srv.URL+`
setup:
  - {name: login, method: post, path: /sessions, capture: {token: $.token}}
steps:
  - {name: menu, path: /menu}
`)
			type pause struct {
				d    time.Duration
				seen int // requests the server had seen when the user paused
			}
			var pauses []pause
			cfg := tc.cfg
			cfg.Scenario, cfg.Requests, cfg.Timeout = s, 5, 5*time.Second
			cfg.Pause = func(ctx context.Context, d time.Duration) bool {
				mu.Lock()
				defer mu.Unlock()
				pauses = append(pauses, pause{d, len(seen)})
				return ctx.Err() == nil
			}
			res, err := load.Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := []pause{{2 * time.Second, 1}, {10 * time.Second, 2}}
			if len(pauses) != len(want) || pauses[0] != want[0] || pauses[1] != want[1] {
				t.Errorf("paused %+v, want %+v (after each refusal, before the next request)", pauses, want)
			}
			wantSeen := []string{"POST /sessions", "POST /sessions", "POST /sessions", "GET /menu", "GET /menu"}
			if strings.Join(seen, ",") != strings.Join(wantSeen, ",") || res.Requests != 5 {
				t.Errorf("the server saw %v (%d requests reported), want %v", seen, res.Requests, wantSeen)
			}
		})
	}
}

// A step's Retry-After is not waited on: the load's schedule is the
// steps', and a failed setup without one is tried again at once.
func TestOnlyASetupWaitsForRetryAfter(t *testing.T) {
	s := compile(t, `
base: http://x
setup:
  - {method: post, path: /sessions}
steps:
  - {name: menu, path: /menu}
`)
	u := s.NewSession()
	r, _ := u.Next()
	if wait := u.Observe(r, load.Response{Status: 503}); wait != 0 {
		t.Errorf("a setup refused without Retry-After waits %v, want 0", wait)
	}
	r, _ = u.Next()
	u.Observe(r, load.Response{Status: 201})
	r, _ = u.Next()
	if wait := u.Observe(r, load.Response{Status: 503, RetryAfter: 5 * time.Second}); wait != 0 || r.URL != "http://x/menu" {
		t.Errorf("step %s refused with Retry-After waits %v, want 0", r.URL, wait)
	}
}
