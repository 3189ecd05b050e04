package pgserver_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/perfscale/perfscale/internal/pgserver"
	"github.com/perfscale/perfscale/internal/supervise"
)

// TestServerStartsWithTheSmallServerSettingsAndStops makes a server in a
// temporary directory, starts it through supervise, checks that it runs
// with the small-server settings the cluster relies on (autovacuum on,
// pg_stat_statements loaded and usable, checkpoints and vacuums in its
// log, ANALYZE's sample bounded) and that Stop shuts it down and
// leaves no process behind. About two seconds with Debian's binaries;
// skipped (failed under CI=true) where they are not installed.
func TestServerStartsWithTheSmallServerSettingsAndStops(t *testing.T) {
	bin, err := pgserver.Bin()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	owner, err := pgserver.Owner()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	state := t.TempDir()
	data, external, err := pgserver.DataDir(state, "db-1", owner)
	if err != nil {
		t.Fatal(err)
	}
	if external {
		t.Cleanup(func() { os.RemoveAll(data) })
	}
	if err := pgserver.Init(ctx, bin, data, owner); err != nil {
		t.Fatal(err)
	}
	if err := pgserver.Init(ctx, bin, data, owner); err == nil {
		t.Error("a second initdb into a made data directory succeeded")
	}
	dir := supervise.Dir(filepath.Join(state, "run"))
	if err := os.MkdirAll(string(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := pgserver.Server{Name: "db-1", DataDir: data, Bin: bin, Owner: owner}
	rec, err := dir.Start(ctx, srv.Spec())
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			rec.Kill(context.Background()) //nolint:errcheck // the test failed already
		}
	})
	if !pgserver.IsServer(rec) || rec.Meta["role"] != pgserver.RolePrimary {
		t.Errorf("the record %+v is not a primary server's", rec)
	}
	url := pgserver.URL(rec.Port("postgres"), "postgres")
	if err := pgserver.Exec(ctx, url, "CREATE DATABASE shop", "CREATE EXTENSION pg_stat_statements"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pgserver.URL(rec.Port("postgres"), "shop"))
	if err != nil {
		t.Fatal(err)
	}
	for setting, want := range map[string]string{
		"autovacuum":                      "on",
		"shared_preload_libraries":        "pg_stat_statements,auto_explain",
		"auto_explain.log_min_duration":   "-1",
		"random_page_cost":                "1.1",
		"listen_addresses":                "127.0.0.1",
		"log_checkpoints":                 "on",
		"log_autovacuum_min_duration":     "0",
		"default_statistics_target":       "10",
		"autovacuum_analyze_threshold":    "1000",
		"autovacuum_analyze_scale_factor": "0.2",
		"autovacuum_vacuum_scale_factor":  "0.05",
	} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	conn.Close(ctx)
	checkAnalyzeSamplesFewRows(ctx, t, pgserver.URL(rec.Port("postgres"), "shop"))
	var calls int64
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_statements").Scan(&calls); err != nil || calls == 0 {
		t.Errorf("pg_stat_statements holds %d statements (%v)", calls, err)
	}
	// A checkpoint and a vacuum are lines of the server's log, to match a
	// stall of the service with.
	if _, err := admin.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)

	if err := pgserver.Stop(ctx, rec); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if rec.Alive() {
		t.Errorf("the server (pid %d) still runs after Stop", rec.PID)
	}
	if err := pgserver.Ping(ctx, url); err == nil {
		t.Error("the server still answers after Stop")
	}
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); !os.IsNotExist(err) {
		t.Errorf("postmaster.pid is left after a clean stop (%v)", err)
	}
	log, err := os.ReadFile(rec.Log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "checkpoint complete") {
		t.Errorf("the server's log names no checkpoint:\n%s", log)
	}
}

// checkAnalyzeSamplesFewRows checks that an ANALYZE of a table of 10,000
// rows reads a sample of 3,000 (PostgreSQL's default of 30,000 would read
// them all): what bounds one autovacuum run's CPU under a quota of a
// fraction of a core, whatever the size the table grows to.
func checkAnalyzeSamplesFewRows(ctx context.Context, t *testing.T, url string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var notices []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range []string{
		"CREATE TABLE analyzed AS SELECT n, md5(n::text) AS s FROM generate_series(1, 10000) AS n",
		"ANALYZE VERBOSE analyzed",
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	sampled := regexp.MustCompile(`(\d+) rows in sample`)
	for _, n := range notices {
		if m := sampled.FindStringSubmatch(n); m != nil {
			if m[1] != "3000" {
				t.Errorf("ANALYZE sampled %s rows of 10,000, want 3000: %s", m[1], n)
			}
			return
		}
	}
	t.Errorf("ANALYZE VERBOSE said nothing of its sample: %q", notices)
}
