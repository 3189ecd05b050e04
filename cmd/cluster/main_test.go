package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/perfscale/perfscale/internal/supervise"
)

// The shop is given one --db per shard in shard order, and --shards with
// more than one; with one, the flags of before shards.
func TestDBArgs(t *testing.T) {
	one := config{Databases: []database{{URL: "postgres://a/x"}}}
	if got, want := one.dbArgs(), []string{"--db", "postgres://a/x"}; !slices.Equal(got, want) {
		t.Errorf("one shard: %q, want %q", got, want)
	}
	// up 1 --shards 1 (the first count of scripts/bench-shards.sh's shards
	// run) is up 1 (its replicas run's): the same shop flags, database
	// name and start order, so the two tables share their first row.
	given := config{Name: "n", Shards: 1, Databases: one.Databases}
	if got, want := given.dbArgs(), one.dbArgs(); !slices.Equal(got, want) {
		t.Errorf("--shards 1: %q, want %q as without it", got, want)
	}
	if given.shardDatabase(1) != "n" || given.shards() != (config{}).shards() {
		t.Errorf("--shards 1: database %q, %d shards; want n and 1 as without it", given.shardDatabase(1), given.shards())
	}
	three := config{Shards: 3, Databases: []database{{URL: "postgres://a/x_s1"}, {URL: "postgres://b/x_s2"}, {URL: "postgres://c/x_s3"}}}
	want := []string{"--db", "postgres://a/x_s1", "--db", "postgres://b/x_s2", "--db", "postgres://c/x_s3", "--shards", "3"}
	if got := three.dbArgs(); !slices.Equal(got, want) {
		t.Errorf("three shards: %q, want %q", got, want)
	}
	if got := (config{Name: "n", Shards: 2}).shardDatabase(2); got != "n_s2" {
		t.Errorf("shard 2's database: %q", got)
	}
	if got := (config{Name: "n"}).shardDatabase(1); got != "n" {
		t.Errorf("the one shard's database: %q", got)
	}
}

func TestParseShards(t *testing.T) {
	for _, tt := range []struct {
		args   []string
		shards int
		bad    bool
	}{
		{[]string{"up", "2"}, 1, false},
		{[]string{"up", "2", "--shards", "4"}, 4, false},
		{[]string{"up", "2", "--shards=16"}, 16, false},
		{[]string{"up", "2", "--shards", "17"}, 0, true},
		{[]string{"up", "2", "--shards", "+2"}, 0, true},
		{[]string{"kill-db", "2", "--shards", "2"}, 0, true},
		// Shards on existing servers: --pg-url once per shard.
		{[]string{"up", "2", "--shards", "2", "--pg-url", "postgres://a:1/postgres", "--pg-url", "postgres://b:2/postgres"}, 2, false},
		{[]string{"up", "2", "--pg-url", "postgres://a:1/postgres"}, 1, false},
		{[]string{"up", "2", "--shards", "2", "--pg-url", "postgres://a:1/postgres"}, 0, true},
		{[]string{"up", "2", "--pg-url", "postgres://a:1/postgres", "--pg-url", "postgres://b:2/postgres"}, 0, true},
		{[]string{"up", "2", "--shards", "3", "--pg-url", "postgres://a:1/postgres", "--pg-url", "postgres://b:2/postgres"}, 0, true},
		{[]string{"up", "2", "--shards", "2", "--pg-url", "postgres://a:1/postgres", "--pg-url", "b:2"}, 0, true},
	} {
		o, err := parseArgs(tt.args)
		var ue usageError
		if tt.bad != errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error: %t", tt.args, err, tt.bad)
		}
		if !tt.bad && o.shards != tt.shards {
			t.Errorf("%q: %d shards, want %d", tt.args, o.shards, tt.shards)
		}
	}
}

func TestParseReadReplicaOptions(t *testing.T) {
	for _, tt := range []struct {
		args      []string
		dbReplica bool
		bad       bool
	}{
		{[]string{"up", "2", "--db-replica"}, true, false},
		{[]string{"up", "2", "--pg-url", "postgres://a:1/postgres", "--pg-replica-url", "postgres://b:2/postgres"}, true, false},
		{[]string{"up", "2", "--pg-replica-url", "postgres://b:2/postgres"}, false, true},
		{[]string{"up", "2", "--pg-url", "postgres://a:1/postgres", "--pg-replica-url", "b:2"}, false, true},
		{[]string{"kill-db", "standby"}, false, false},
		{[]string{"start-db", "standby"}, false, false},
		{[]string{"kill-db", "primary"}, false, true},
		{[]string{"kill-db", "standby", "--pg-replica-url", "postgres://b:2/postgres"}, false, true},
	} {
		o, err := parseArgs(tt.args)
		var ue usageError
		if tt.bad != errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error: %t", tt.args, err, tt.bad)
		}
		if !tt.bad && o.dbReplica != tt.dbReplica {
			t.Errorf("%q: db replica %t, want %t", tt.args, o.dbReplica, tt.dbReplica)
		}
	}
}

// nginx's per-client limits follow the replicas' admission control at its
// starting limit: replicas x (1 + ShedAll) x InitialLimit requests at once,
// turned over within the 50 ms objective per second.
func TestClientLimitsMatchTheReplicasAdmission(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	for _, tt := range []struct {
		replicas    int
		cores       float64
		conns, rate int
	}{
		{1, 0.25, 64, 1280}, // GOMAXPROCS 1: limit 16, queue to 48
		{2, 0.5, 128, 2560}, // two such replicas
		{3, 1.5, 384, 7680}, // GOMAXPROCS 2: limit 32
	} {
		l := newClientLimits(tt.replicas, tt.cores)
		if l.conns != tt.conns || l.rate != tt.rate || l.burst != tt.conns {
			t.Errorf("%d replicas at %.2f cores: %+v, want %d at once, %d/s, burst %d", tt.replicas, tt.cores, l, tt.conns, tt.rate, tt.conns)
		}
	}
	t.Setenv("GOMAXPROCS", "1") // inherited by the replicas: it wins
	if l := newClientLimits(1, 0); l.conns != 64 {
		t.Errorf("GOMAXPROCS=1 without a quota: %d at once, want 64", l.conns)
	}
	t.Setenv("PERFSCALE_CLUSTER_CLIENT_LIMITS", "off")
	if zones, limits := clientLimitsConf(2, 0); strings.Contains(zones+limits, "limit_") {
		t.Errorf("limits off, yet:\n%s\n%s", zones, limits)
	}
}

// nginx's own error bodies are valid JSON with nothing nginx would read
// as the end of its quoted string.
func TestErrorPagesAreProblemJSON(t *testing.T) {
	conf := errorPagesConf()
	for _, e := range nginxErrors {
		if !strings.Contains(conf, fmt.Sprintf("return %d '{", e.status)) {
			t.Errorf("no error page for %d:\n%s", e.status, conf)
		}
		if strings.ContainsAny(e.detail, `'\`) {
			t.Errorf("%d's detail has a quote or backslash", e.status)
		}
	}
}

// up's wait for a reload ends with a clear error when nginx keeps
// answering from another configuration, and returns once it answers the
// new generation.
func TestWaitNginxGeneration(t *testing.T) {
	var gen atomic.Value
	gen.Store("old")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != generationPath {
			http.NotFound(w, r)
			return
		}
		if asked.Add(1) == 2 {
			cancel() // the wait runs out while nginx answers the old one
		}
		fmt.Fprintln(w, gen.Load())
	}))
	defer srv.Close()
	if err := waitNginxGeneration(ctx, srv.URL, "new", nil); err == nil || !strings.Contains(err.Error(), `generation "old"`) {
		t.Fatalf("nginx answering the old generation: %v, want an error naming it", err)
	}
	gen.Store("new")
	if err := waitNginxGeneration(context.Background(), srv.URL, "new", nil); err != nil {
		t.Fatalf("nginx answering the new generation: %v", err)
	}
}

// add-shard refuses, with one line, a cluster it cannot add a shard to:
// none, one on an unsharded database, one at the most shards, one whose
// nginx is not running.
func TestAddShardRefusesWhatItCannotGrow(t *testing.T) {
	for _, tt := range []struct {
		cfg  string // cluster.json; "" for none
		want string
	}{
		{"", "no cluster in"},
		{`{"replicas":1,"name":"n","databases":[{"name":"n","url":"postgres://a/n"}]}`, "runs on one unsharded database (up without --shards), which cannot become a shard"},
		{`{"replicas":1,"shards":1,"name":"n","databases":[{"name":"n","url":"postgres://a/n"}]}`, "cannot become a shard"},
		{`{"replicas":1,"shards":16,"name":"n"}`, "has 16 shards already"},
		{`{"replicas":1,"shards":2,"name":"n"}`, "its nginx is not running"},
	} {
		dir := t.TempDir()
		if tt.cfg != "" {
			if err := os.WriteFile(filepath.Join(dir, "cluster.json"), []byte(tt.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		err := run(context.Background(), []string{"--state-dir", dir, "add-shard"}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("add-shard on %s: %v, want one line saying %q", tt.cfg, err, tt.want)
		}
	}
}

// What cluster.sh says of one replica, one key, is singular ("1 API
// replicas" before).
func TestCountSaysOneInTheSingular(t *testing.T) {
	for _, tt := range []struct {
		n          int
		noun, want string
	}{
		{1, "API replica", "1 API replica"},
		{2, "API replica", "2 API replicas"},
		{0, "Redis key", "0 Redis keys"},
	} {
		if got := count(tt.n, tt.noun); got != tt.want {
			t.Errorf("count(%d, %q) = %q, want %q", tt.n, tt.noun, got, tt.want)
		}
	}
}

// up waits for a replica's first menu as long as a start may take: a
// 0.05-core replica's took longer than the 2 s of the other checks, and up
// failed ("the menu: context deadline exceeded").
func TestFirstMenuWaitsLongerThanTheOtherChecks(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A replica slower than the other checks' client allows: it
		// answers only once that client has given up on it.
		select {
		case <-release:
			w.Write([]byte(`{"categories": [{"name": "pizza"}]}`))
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	type result struct {
		body []byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		b, err := firstMenu(context.Background(), srv.URL)
		got <- result{b, err}
	}()
	if _, err := httpGet(context.Background(), srv.URL+"/v1/menu"); err == nil {
		t.Fatal("the other checks' client did not give up on a replica that does not answer")
	}
	close(release)
	if r := <-got; r.err != nil || !strings.Contains(string(r.body), "pizza") {
		t.Fatalf("firstMenu: %v (%s)", r.err, r.body)
	}
}

// An add-shard killed while it made shard 3's server (recorded, no URL
// yet) left a record and a data directory: run again, it removes both and
// forgets the shard, so the server is made again from nothing.
func TestAHalfMadeShardServerIsDiscarded(t *testing.T) {
	state := t.TempDir()
	var stderr strings.Builder
	c := &cluster{state: state, stdout: io.Discard, stderr: &stderr, cfg: config{
		Replicas: 2, Shards: 2, Adding: true, Name: "n",
		Databases: []database{{Name: "n_s1", URL: "postgres://a/n_s1", Server: "db-1"}, {Name: "n_s2", URL: "postgres://b/n_s2", Server: "db-2"}, {Name: "n_s3", Server: "db-3"}},
	}}
	data := filepath.Join(state, "pg", "db-3")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "PG_VERSION"), []byte("15\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A process that is gone: pid 0 is never alive.
	if err := c.dir().Save(supervise.Record{Name: "db-3", Meta: map[string]string{"data": data}}); err != nil {
		t.Fatal(err)
	}
	if err := c.discardHalfMadeServer(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the half-made data directory is left: %v", err)
	}
	if _, ok, err := c.dir().Load("db-3"); ok || err != nil {
		t.Errorf("db-3's record is left (%v)", err)
	}
	var saved config
	if b, err := os.ReadFile(c.configPath()); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	if len(saved.Databases) != 2 || saved.Adding || saved.Shards != 2 {
		t.Errorf("cluster.json after: %d databases, adding %t, shards %d; want 2, false, 2", len(saved.Databases), saved.Adding, saved.Shards)
	}
	if !strings.Contains(stderr.String(), "left half made") {
		t.Errorf("nothing said of the half-made server: %q", stderr.String())
	}
}

// What a rescale did, in words: an up to the count already running said
// "rescaled from 1 to 1 API replica".
func TestRescaledTextSaysWhatChanged(t *testing.T) {
	for _, tt := range []struct {
		old, n  int
		requota bool
		want    string
	}{
		{1, 1, false, "already at 1 API replica, nothing restarted"},
		{1, 2, false, "rescaled from 1 to 2 API replicas"},
		{4, 2, false, "rescaled from 4 to 2 API replicas"},
		{2, 2, true, "restarted 2 API replicas under the new quota"},
		{1, 2, true, "rescaled from 1 to 2 API replicas, every one restarted under the new quota"},
	} {
		if got := rescaledText(tt.old, tt.n, tt.requota); got != tt.want {
			t.Errorf("rescaledText(%d, %d, %v) = %q, want %q", tt.old, tt.n, tt.requota, got, tt.want)
		}
	}
}
