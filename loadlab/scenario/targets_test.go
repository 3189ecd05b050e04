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
	if _, err := scenario.ReadTargets(strings.NewReader(src), dir, nil); err == nil || !strings.Contains(err.Error(), "targets line 3:") {
		t.Fatalf("err %v, want one naming line 3", err)
	}
	src = strings.Replace(src, "GET http://127.0.0.1:8080/v1/menu\n", "GET http://127.0.0.1:8080/v1/menu\n\n", 1)
	tg, err := scenario.ReadTargets(strings.NewReader(src), dir, http.Header{"X-Run": {"7"}})
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
		_, err := scenario.ReadTargets(strings.NewReader(tt.src), dir, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err %v, want %q", tt.src, err, tt.want)
		}
	}
}
