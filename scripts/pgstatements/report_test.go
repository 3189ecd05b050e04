package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A server's text log with two plans auto_explain logged, one of a
// statement over several lines, between other lines: each plan is found
// under its statement's text (whitespace collapsed), from its first node
// on, and a later plan of the same statement replaces an earlier one.
func TestReadTextPlans(t *testing.T) {
	log := "2026-12-06 12:39:01.123 UTC [4711] LOG:  checkpoint starting: time\n" +
		"2026-12-06 12:39:02.001 UTC [4712] LOG:  duration: 0.052 ms  plan:\n" +
		"\tQuery Text: SELECT name, available FROM items WHERE id = $1\n" +
		"\tIndex Scan using items_pkey on public.items  (cost=0.14..1.54 rows=1 width=12) (actual rows=1 loops=1)\n" +
		"\t  Index Cond: (items.id = $1)\n" +
		"2026-12-06 12:39:02.002 UTC [4713] LOG:  duration: 0.200 ms  plan:\n" +
		"\tQuery Text: WITH page AS (SELECT id FROM orders\n" +
		"\t\t\tWHERE session_id = $1) SELECT * FROM page\n" +
		"\tCTE Scan on page  (cost=0.00..0.20 rows=10 width=8) (actual rows=2 loops=1)\n" +
		"2026-12-06 12:39:02.003 UTC [4712] LOG:  duration: 0.050 ms  plan:\n" +
		"\tQuery Text: SELECT name, available FROM items WHERE id = $1\n" +
		"\tIndex Scan using items_pkey on public.items  (cost=0.14..1.54 rows=1 width=12) (actual rows=0 loops=1)\n" +
		"2026-12-06 12:39:03.000 UTC [4714] WARNING:  something else\n"
	file := filepath.Join(t.TempDir(), "db-1.log")
	if err := os.WriteFile(file, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	plans, err := readTextPlans(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) != 2 {
		t.Fatalf("found %d plans, want 2: %q", len(plans), plans)
	}
	item := plans["SELECT name, available FROM items WHERE id = $1"]
	if !strings.HasPrefix(item, "Index Scan using items_pkey") || !strings.Contains(item, "actual rows=0") || strings.Contains(item, "Query Text") {
		t.Errorf("the item plan is %q, want the later one from its first node", item)
	}
	if page := plans["WITH page AS (SELECT id FROM orders WHERE session_id = $1) SELECT * FROM page"]; !strings.HasPrefix(page, "CTE Scan on page") {
		t.Errorf("the page's plan is %q", page)
	}
}

// Each run's row has its statements per request: the calls of every
// statement pg_stat_statements counted, over the requests (before and
// after side by side show the statements a change saved).
func TestRunRowsHaveStatementsPerRequest(t *testing.T) {
	run := func(label string, calls ...int64) Run {
		r := Run{Label: label, Requests: 100, Delta: Counters{Commits: 40}}
		for i, c := range calls {
			r.Statements = append(r.Statements, Statement{QueryID: int64(i), Query: "SELECT 1", Calls: c})
		}
		return r
	}
	var b strings.Builder
	render(&b, []Run{run("before", 100, 50, 7), run("after", 100, 30)}, nil, "", 5)
	text := b.String()
	for _, want := range []string{"| commits | statements |", "| before | 100 | 0 | 0.0 ms | 0.0 | 0.40 | 1.57 |", "| after | 100 | 0 | 0.0 ms | 0.0 | 0.40 | 1.30 |"} {
		if !strings.Contains(text, want) {
			t.Errorf("the report has no %q:\n%s", want, text)
		}
	}
}
