package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/perfscale/perfscale/shop/httpapi"
	"github.com/perfscale/perfscale/shop/jobs"
	"github.com/perfscale/perfscale/shop/seed"
)

// documented is one row of the table in docs/configuration.md.
type documented struct {
	flag, env, def string // flag "" for an environment-only setting
}

// docTable reads the configuration table: | flag | environment | default | meaning |.
func docTable(t *testing.T) []documented {
	t.Helper()
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []documented
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, " | ")
		if len(cells) < 4 || !(strings.HasPrefix(line, "| `--") || strings.HasPrefix(line, "| (none)")) {
			continue
		}
		r := documented{
			flag: strings.Trim(strings.TrimPrefix(cells[0], "| "), "`-"),
			env:  strings.Trim(strings.TrimSuffix(strings.TrimSuffix(cells[1], " (comma-separated)"), " (space-separated)"), "`"),
			def:  cells[2],
		}
		if r.flag == "(none)" {
			r.flag = ""
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		t.Fatal("docs/configuration.md has no configuration table")
	}
	return rows
}

var (
	helpFlag    = regexp.MustCompile(`(?m)^  -(\S+)(?: \S+)?\n\s+\t(.*)$`)
	helpEnv     = regexp.MustCompile(`\(env (SHOP_[A-Z_]+)[,)]`)
	helpDefault = regexp.MustCompile(`\(default "?(.*?)"?\)$`)
	helpEnvOnly = regexp.MustCompile(`(?m)^(SHOP_[A-Z_]+) \(environment only\)`)
)

// helpTable reads --help as the documented table's columns: the default
// is `value` when --help shows one.
func helpTable(t *testing.T) []documented {
	t.Helper()
	var out bytes.Buffer
	if _, err := parseConfig([]string{"--help"}, func(string) string { return "" }, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	var rows []documented
	for _, m := range helpFlag.FindAllStringSubmatch(out.String(), -1) {
		r := documented{flag: m[1]}
		if e := helpEnv.FindStringSubmatch(m[2]); e != nil {
			r.env = e[1]
		}
		if d := helpDefault.FindStringSubmatch(m[2]); d != nil {
			r.def = "`" + d[1] + "`"
		}
		rows = append(rows, r)
	}
	for _, m := range helpEnvOnly.FindAllStringSubmatch(out.String(), -1) {
		rows = append(rows, documented{env: m[1]})
	}
	return rows
}

// The documented table, --help and the environment variables read are the
// same settings: each flag with its variable, and each default --help
// shows documented as that value (a default --help does not show, such as
// one that depends on --role, is documented in words).
func TestConfigurationDocMatchesHelp(t *testing.T) {
	doc, help := docTable(t), helpTable(t)
	byFlag := func(rows []documented) map[string]documented {
		m := map[string]documented{}
		for _, r := range rows {
			m[r.flag+"|"+r.env] = r
		}
		return m
	}
	docs, helps := byFlag(doc), byFlag(help)
	for k, h := range helps {
		d, ok := docs[k]
		switch {
		case !ok:
			t.Errorf("--help has --%s (env %s), docs/configuration.md has no such row", h.flag, h.env)
		case h.def != "" && d.def != h.def:
			t.Errorf("--%s: --help's default is %s, docs/configuration.md says %q", h.flag, h.def, d.def)
		case h.def == "" && strings.HasPrefix(d.def, "`") && !strings.Contains(d.def, " "):
			t.Errorf("--%s: docs/configuration.md gives the default %s, --help shows none", h.flag, d.def)
		}
	}
	for k, d := range docs {
		if _, ok := helps[k]; !ok {
			t.Errorf("docs/configuration.md has --%s (env %s), --help has no such flag", d.flag, d.env)
		}
	}
}

// parseConfig reads exactly the documented environment variables.
func TestConfigurationReadsTheDocumentedEnvironment(t *testing.T) {
	var read []string
	if _, err := parseConfig(nil, func(k string) string { read = append(read, k); return "" }, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, r := range docTable(t) {
		want = append(want, r.env)
	}
	slices.Sort(read)
	slices.Sort(want)
	if !slices.Equal(slices.Compact(read), want) {
		t.Errorf("environment read: %v\ndocumented:       %v", read, want)
	}
}

// A value from the environment is used when the flag is absent, and the
// flag wins over it, for every setting that has a flag.
func TestEveryFlagFallsBackToItsEnvironmentVariable(t *testing.T) {
	tests := []struct {
		flag, env, value string
		got              func(*config) any
		want             any
	}{
		{"addr", "SHOP_ADDR", "127.0.0.1:9", func(c *config) any { return c.Addr }, "127.0.0.1:9"},
		{"role", "SHOP_ROLE", "worker", func(c *config) any { return c.Role }, "worker"},
		{"workers", "SHOP_WORKERS", "7", func(c *config) any { return c.Workers }, 7},
		{"redis-prefix", "SHOP_REDIS_PREFIX", "x:", func(c *config) any { return c.RedisPrefix }, "x:"},
		{"db-replica", "SHOP_DB_REPLICAS", "postgres://a/x", func(c *config) any { return strings.Join(c.Postgres.Replicas, ",") }, "postgres://a/x"},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			env := map[string]string{tt.env: tt.value}
			if tt.flag == "db-replica" {
				env["SHOP_DATABASE_URL"] = "postgres://p/x"
			}
			c, err := parseConfig(nil, func(k string) string { return env[k] }, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.got(c); got != tt.want {
				t.Errorf("%s=%s: got %v, want %v", tt.env, tt.value, got, tt.want)
			}
		})
	}
	env := map[string]string{"SHOP_DATABASE_URL": "postgres://p/x", "SHOP_DB_REPLICAS": "postgres://a/x,postgres://b/x"}
	c, err := parseConfig([]string{"--db-replica", "postgres://c/x"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil || !slices.Equal(c.Postgres.Replicas, []string{"postgres://c/x"}) {
		t.Errorf("--db-replica over SHOP_DB_REPLICAS: %v (%v), want the flag's alone", c.Postgres.Replicas, err)
	}
	// SHOP_DATABASE_URL lists shards separated by spaces (a multi-host URL
	// holds commas); --db given again replaces the environment's list.
	env = map[string]string{"SHOP_DATABASE_URL": " postgres://a/x  postgres://h1,h2/x ", "SHOP_SHARDS": "2"}
	c, err = parseConfig(nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil || !slices.Equal(c.ShardURLs, []string{"postgres://a/x", "postgres://h1,h2/x"}) || c.DatabaseURL != "postgres://a/x" {
		t.Errorf("SHOP_DATABASE_URL with two shards: %v (%v)", c.ShardURLs, err)
	}
	c, err = parseConfig([]string{"--db", "postgres://c/x", "--db", "postgres://d/x", "--db", "postgres://e/x", "--shards", "3"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil || !slices.Equal(c.ShardURLs, []string{"postgres://c/x", "postgres://d/x", "postgres://e/x"}) {
		t.Errorf("--db three times over SHOP_DATABASE_URL: %v (%v)", c.ShardURLs, err)
	}
	c, err = parseConfig([]string{"--db", "postgres://c/x"}, func(string) string { return "" }, &bytes.Buffer{})
	if err != nil || c.ShardURLs != nil || c.DatabaseURL != "postgres://c/x" {
		t.Errorf("one --db without --shards is unsharded: %v %q (%v)", c.ShardURLs, c.DatabaseURL, err)
	}
}

// A bad flag is one line that names it and points at --help; the usage,
// 60 lines long, is not printed to bury it.
func TestABadFlagIsOneLineNotTheUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		see  string // a subcommand's error points at its own help
	}{
		{[]string{"--no-such-flag"}, "(see shop --help)"},
		{[]string{"--workers"}, "(see shop --help)"},
		{[]string{"migrate", "--bogus"}, "(see shop migrate --help)"},
		{[]string{"drop-events", "--bogus"}, "(see shop drop-events --help)"},
	} {
		args := tt.args
		var out bytes.Buffer
		_, err := parseConfig(args, func(string) string { return "" }, &out)
		if err == nil || !strings.HasSuffix(err.Error(), tt.see) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: err = %v, want one line ending %q", args, err, tt.see)
		}
		if out.Len() > 0 {
			t.Errorf("%v: printed %q besides the error", args, out.String())
		}
	}
}

// --help's type column names what a flag takes, as loadlab's does: every
// flag was "string", numbers and durations too.
func TestHelpNamesEachFlagsType(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseConfig([]string{"--help"}, func(string) string { return "" }, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, tt := range []struct{ flag, kind, def string }{
		{"addr", "string", `(default "127.0.0.1:8080")`},
		{"workers", "int", fmt.Sprintf("(default %d)", jobs.DefaultMaxWorkers)},
		{"seed-items", "int", fmt.Sprintf("(default %d)", seed.DefaultItems)},
		{"shards", "int", ""},
		{"session-rate", "float", fmt.Sprintf("(default %d)", httpapi.DefaultSessionRate)},
		{"db-connect-timeout", "duration", "(default 5s)"},
		{"mail-latency", "duration", "(default 0s)"},
		{"drain-delay", "duration", ""},
		{"db", "URL", ""},
		{"db-replica", "URL", ""},
	} {
		t.Run(tt.flag, func(t *testing.T) {
			m := regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(tt.flag) + ` (\S+)\n\s+\t(.*)$`).FindStringSubmatch(out.String())
			if m == nil {
				t.Fatalf("--help has no line for -%s:\n%s", tt.flag, out.String())
			}
			if m[1] != tt.kind {
				t.Errorf("-%s %s, want -%s %s", tt.flag, m[1], tt.flag, tt.kind)
			}
			if got := helpDefault.FindString(m[2]); got != tt.def {
				t.Errorf("-%s shows %q, want %q", tt.flag, got, tt.def)
			}
		})
	}
}
