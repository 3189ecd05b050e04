package scenario_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/loadlab/scenario"
)

func TestReadTargetsInVegetasFormat(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "body.json"), []byte(`{"quantity": 1}`), 0o644)
	src := `# the menu, twice as often
GET http://127.0.0.1:8080/v1/menu
GET http://127.0.0.1:8080/v1/menu?x=1

PUT http://127.0.0.1:8080/v1/cart/items/3
Content-Type: application/json
@body.json
`
	// Two targets in a row without a blank line: the second line is not a
	// header, so it is refused with its line.
	if _, err := scenario.ReadTargets(strings.NewReader(src), scenario.TargetsAuto, dir, nil); err == nil || !strings.Contains(err.Error(), "targets line 3:") {
		t.Fatalf("err %v, want one naming line 3", err)
	}
	src = strings.Replace(src, "GET http://127.0.0.1:8080/v1/menu\n", "GET http://127.0.0.1:8080/v1/menu\n\n", 1)
	tg, err := scenario.ReadTargets(strings.NewReader(src), scenario.TargetsAuto, dir, http.Header{"X-Run": {"7"}})
	if err != nil {
		t.Fatal(err)
	}
	if tg.Len() != 3 || len(tg.Endpoints()) != 2 || tg.Endpoints()[0].Name != "GET /v1/menu" || tg.Endpoints()[1].Name != "PUT /v1/cart/items/3" {
		t.Fatalf("%d targets, endpoints %v", tg.Len(), tg.Endpoints())
	}
	u := tg.NewSession()
	var got []string
	for range 4 {
		r, err := u.Next()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Method+" "+r.URL)
		if r.Header.Get("X-Run") != "7" {
			t.Errorf("%s lacks the header every target gets", r.URL)
		}
		if r.Method == "PUT" && (string(r.Body) != `{"quantity": 1}` || r.Header.Get("Content-Type") != "application/json" || r.Endpoint != 1) {
			t.Errorf("PUT target: %+v", r)
		}
	}
	if got[0] != got[3] || got[0] == got[1] {
		t.Errorf("targets not sent in turn: %v", got)
	}
}

func TestReadTargetsRefusesBadLines(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(dir, "b"), []byte("b"), 0o644)
	for _, tt := range []struct{ src, want string }{
		{"", "no targets"},
		{"# only a comment\n", "no targets"},
		{"GET\n", "line 1: \"GET\": want METHOD URL"},
		{"get http://x/\n", "line 1: \"get\" is not an HTTP method"},
		{"GET localhost:8080/\n", "line 1: URL \"localhost:8080/\" must start with http"},
		{"\nGET http://x/\n@missing.json\n", "line 3: body:"},
		{"GET http://x/\n@a\n@b\n", "line 3: a second body"},
	} {
		_, err := scenario.ReadTargets(strings.NewReader(tt.src), scenario.TargetsAuto, dir, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err %v, want %q", tt.src, err, tt.want)
		}
	}
}

// vegeta's json format (what `vegeta encode` writes): one object a line,
// the body in base64, told apart from the http format by its first line.
func TestReadTargetsInVegetasJSONFormat(t *testing.T) {
	src := `# checkout's cart, then the menu
{"method": "PUT", "url": "http://127.0.0.1:8080/v1/cart/items/3", "header": {"Content-Type": ["application/json"], "X-Two": ["a", "b"]}, "body": "eyJxdWFudGl0eSI6IDF9"}

{"method":"GET","url":"http://127.0.0.1:8080/v1/menu"}
{"method":"GET","url":"http://127.0.0.1:8080/v1/menu?page=2","header":null}
`
	for _, format := range []string{scenario.TargetsAuto, scenario.TargetsJSON} {
		tg, err := scenario.ReadTargets(strings.NewReader(src), format, t.TempDir(), http.Header{"X-Run": {"7"}})
		if err != nil {
			t.Fatalf("format %q: %v", format, err)
		}
		if tg.Len() != 3 || len(tg.Endpoints()) != 2 || tg.Endpoints()[0].Name != "PUT /v1/cart/items/3" || tg.Endpoints()[1].Name != "GET /v1/menu" {
			t.Fatalf("format %q: %d targets, endpoints %v", format, tg.Len(), tg.Endpoints())
		}
		put, _ := tg.NewSession().Next()
		if string(put.Body) != `{"quantity": 1}` || put.Header.Get("Content-Type") != "application/json" ||
			strings.Join(put.Header.Values("X-Two"), ",") != "a,b" || put.Header.Get("X-Run") != "7" {
			t.Errorf("format %q: PUT target %+v", format, put)
		}
	}
	// Told it is the http format, the JSON line is not a METHOD URL line.
	if _, err := scenario.ReadTargets(strings.NewReader(src), scenario.TargetsHTTP, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "targets line 2:") {
		t.Errorf("json read as http: err %v, want one naming line 2", err)
	}
	if _, err := scenario.ReadTargets(strings.NewReader(src), "yaml", t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), `unknown targets format "yaml"`) {
		t.Errorf("format yaml: err %v", err)
	}
}

func TestReadTargetsRefusesBadJSONLines(t *testing.T) {
	ok := `{"method":"GET","url":"http://x/"}` + "\n"
	for _, tt := range []struct{ src, want string }{
		{`{"method":"GET","url":"http://x/"` + "\n", "line 1: not a JSON target"},
		{ok + `{"method":"GET"}` + "\n", `line 2: no "url"`},
		{ok + `{"url":"http://x/"}` + "\n", `line 2: no "method"`},
		{ok + ok + `{"method":"get","url":"http://x/"}` + "\n", `line 3: "get" is not an HTTP method`},
		{ok + `{"method":"GET","url":"x/"}` + "\n", `line 2: URL "x/" must start with http`},
		{ok + `{"method":"GET","url":"http://x/","body":"not base64!"}` + "\n", "line 2: not a JSON target"},
		{ok + `{"method":"GET","url":"http://x/","headers":{}}` + "\n", `line 2: not a JSON target {"method", "url", "header", "body" (base64)}: json: unknown field "headers"`},
		{ok + `{"method":"GET","url":"http://x/","header":{"A":"b"}}` + "\n", "line 2: not a JSON target"},
		{ok + ok + `{"method":"GET","url":"http://x/"} {}` + "\n", "line 3: more than one JSON value"},
		{ok + "GET http://x/\n", "line 2: not a JSON target"},
	} {
		_, err := scenario.ReadTargets(strings.NewReader(tt.src), scenario.TargetsAuto, t.TempDir(), nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: err %v, want one line with %q", tt.src, err, tt.want)
		}
	}
}
