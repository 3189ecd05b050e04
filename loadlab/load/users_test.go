package load_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/perfscale/perfscale/loadlab/load"
	"github.com/perfscale/perfscale/loadlab/scenario"
)

// tokenCounter is a target that hands out a token per POST /s and counts
// the requests each token carries.
type tokenCounter struct {
	mu      sync.Mutex
	made    int
	perUser map[string]int
}

func (c *tokenCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Method == http.MethodPost {
		c.made++
		fmt.Fprintf(w, `{"token": "t%d"}`, c.made)
		return
	}
	c.perUser[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]++
}

func userScenario(t *testing.T, base string) *scenario.Scenario {
	t.Helper()
	f, err := scenario.Parse([]byte(`base: `+base+`
setup:
  - {name: session, method: POST, path: /s, capture: {token: $.token}}
steps:
  - {name: page, path: /x, headers: {Authorization: "Bearer {{.token}}"}}
`), false)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scenario.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// An open-loop run with a pool of users spreads its requests over all of
// them, however few requests are in flight at once: 50 users make 50
// sessions, and each takes about 1/50 of the rest. Without a pool a user
// is a request slot in flight (at most 20 here), so a store that places
// sessions by a hash of them would get its load from at most 20.
func TestOpenLoopSpreadsItsRequestsOverThePoolsUsers(t *testing.T) {
	c := &tokenCounter{perUser: map[string]int{}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	users := load.NewUsers(50)
	s := userScenario(t, srv.URL)
	// Two runs share the pool: the second makes no session.
	for run := 1; run <= 2; run++ {
		res, err := load.Run(context.Background(), load.Config{Rate: 2000, Requests: 300, MaxInFlight: 20, Scenario: s, Users: users})
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors.Total() != 0 {
			t.Fatalf("run %d: %d errors", run, res.Errors.Total())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.made != 50 || users.Made() != 50 {
		t.Fatalf("%d sessions made, the pool says %d: want 50 (one a user of the pool, none in the second run)", c.made, users.Made())
	}
	// 600 requests, 50 of them the set-ups: 550 pages, 11 a user. A user
	// given back waits behind every idle user (at least 30, with at most
	// 20 in flight), so none takes more than 550/30.
	if len(c.perUser) < 45 {
		t.Errorf("the pages came from %d users, want about 50: %v", len(c.perUser), c.perUser)
	}
	for u, n := range c.perUser {
		if n > 19 {
			t.Errorf("user %s took %d of 550 pages, more than one in 30", u, n)
		}
	}
}

func TestAPoolOfUsersIsForOpenLoopScenarios(t *testing.T) {
	s := userScenario(t, "http://127.0.0.1:1")
	for _, cfg := range []load.Config{
		{Concurrency: 2, Requests: 1, Scenario: s, Users: load.NewUsers(5)},
		{Rate: 10, Requests: 1, Target: &load.Request{URL: "http://127.0.0.1:1/"}, Users: load.NewUsers(5)},
	} {
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "pool of users") {
			t.Errorf("%+v: %v, want the pool refused", cfg, err)
		}
	}
}
