package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

const (
	beginMark = "<!-- statements -->"
	endMark   = "<!-- /statements -->"
)

// report renders the runs (the last one in detail) into doc between the
// statements markers, appending the section when the markers are missing.
func report(files []string, logDir, serverLog, doc, header string, top int, out io.Writer) error {
	if len(files) == 0 {
		return fmt.Errorf("report wants one or more run files")
	}
	runs := make([]Run, len(files))
	for i, f := range files {
		if err := readJSON(f, &runs[i]); err != nil {
			return err
		}
	}
	plans := map[int64]string{}
	if logDir != "" {
		var err error
		if plans, err = readPlans(logDir); err != nil {
			return err
		}
	}
	if serverLog != "" {
		byText, err := readTextPlans(serverLog)
		if err != nil {
			return err
		}
		for _, r := range runs {
			for _, s := range r.Statements {
				if p, ok := byText[strings.Join(strings.Fields(s.Query), " ")]; ok {
					plans[s.QueryID] = p
				}
			}
		}
	}
	var b strings.Builder
	render(&b, runs, plans, header, top)
	old, err := os.ReadFile(doc)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	i, j := strings.Index(text, beginMark), strings.Index(text, endMark)
	section := beginMark + "\n" + b.String() + endMark
	if i >= 0 && j > i {
		text = text[:i] + section + text[j+len(endMark):]
	} else {
		text = strings.TrimRight(text, "\n") + "\n\n" + section + "\n"
	}
	if err := os.WriteFile(doc, []byte(text), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s (%d runs, %d plans found)\n", doc, len(runs), len(plans))
	return nil
}

// calls is every statement's calls over the run.
func (r Run) calls() int64 {
	var n int64
	for _, s := range r.Statements {
		n += s.Calls
	}
	return n
}

func render(b *strings.Builder, runs []Run, plans map[int64]string, header string, top int) {
	w := func(f string, a ...any) { fmt.Fprintf(b, f+"\n", a...) }
	w("## Every statement of the journey")
	w("")
	w("Written by `scripts/bench-statements.sh` (rerun it to measure again).")
	w("")
	if header != "" {
		w("%s", header)
		w("")
	}
	w("Per journey request (a request of loadlab's built-in `shop` scenario). Rows read are `pg_stat_database`'s `tup_returned + tup_fetched` (rows a sequential scan read, index entries and the heap rows they led to), commits its `xact_commit` (every transaction, a single statement outside one included), statements the calls `pg_stat_statements` counted (every statement the server ran for a client, `BEGIN` and `commit` sent as simple queries included, and each of a pipeline's but a `BEGIN` or `COMMIT` in it, which PostgreSQL 15's `pg_stat_statements` does not count: on PostgreSQL the confirmation's two per order; each wakes a backend unless pipelined with others), PostgreSQL CPU that of the server's processes over the run:")
	w("")
	w("| run | requests | req/s | p99 | rows read | commits | statements | rows written | buffers | PostgreSQL CPU | errors |")
	w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range runs {
		n := float64(r.Requests)
		w("| %s | %d | %.0f | %.1f ms | %.1f | %.2f | %.2f | %.2f | %.1f | %.0f µs | %d |", r.Label, r.Requests, r.RPS, r.P99MS,
			float64(r.Delta.Returned+r.Delta.Fetched)/n, float64(r.Delta.Commits)/n, float64(r.calls())/n,
			float64(r.Delta.Written)/n, float64(r.Delta.Blocks)/n, r.CPUSeconds/n*1e6, r.Errors)
	}
	w("")
	r := runs[len(runs)-1]
	n := float64(r.Requests)
	var total float64
	for _, s := range r.Statements {
		total += s.TotalMS
	}
	w("### What each table gave, run %q", r.Label)
	w("")
	w("`pg_stat_user_tables` over the run, per journey request: sequential scans and the rows they read, index scans and the rows they fetched:")
	w("")
	w("| table | sequential scans | rows read by them | index scans | rows fetched by them |")
	w("| --- | ---: | ---: | ---: | ---: |")
	names := make([]string, 0, len(r.Tables))
	for name := range r.Tables {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := r.Tables[names[i]], r.Tables[names[j]]
		return a.SeqRows+a.IndexRows > b.SeqRows+b.IndexRows
	})
	for _, name := range names {
		t := r.Tables[name]
		w("| %s | %.3f | %.2f | %.3f | %.2f |", name, float64(t.SeqScans)/n, float64(t.SeqRows)/n, float64(t.IndexScans)/n, float64(t.IndexRows)/n)
	}
	w("")
	w("### Each statement, run %q", r.Label)
	w("")
	w("`pg_stat_statements` over the run, most total execution time first; calls and rows per journey request, mean execution time per call:")
	w("")
	w("| # | statement | calls | rows | rows per call | mean | share of time |")
	w("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
	for i, s := range r.Statements {
		perCall := 0.0
		if s.Calls > 0 {
			perCall = float64(s.Rows) / float64(s.Calls)
		}
		share := 0.0
		if total > 0 {
			share = s.TotalMS / total * 100
		}
		w("| %d | `%s` | %.3f | %.3f | %.2f | %.3f ms | %.1f %% |", i+1, short(s.Query, 150), float64(s.Calls)/n, float64(s.Rows)/n, perCall, s.MeanMS, share)
	}
	w("")
	w("### Plans of the %d most expensive", top)
	w("")
	w("As `auto_explain` logged them (`log_analyze`, `log_buffers`) for a sample of the run's executions:")
	w("")
	for i, s := range r.Statements {
		if i == top {
			break
		}
		w("%d. `%s`", i+1, short(s.Query, 400))
		w("")
		if p, ok := plans[s.QueryID]; ok {
			w("```")
			w("%s", strings.TrimRight(p, "\n"))
			w("```")
		} else {
			w("   (no execution of it was sampled in this run)")
		}
		w("")
	}
}

var spaces = regexp.MustCompile(`\s+`)

// short puts a statement on one line, cut at n characters, and keeps it
// from breaking a markdown table.
func short(q string, n int) string {
	q = strings.TrimSpace(spaces.ReplaceAllString(q, " "))
	if len(q) > n {
		q = q[:n] + "…"
	}
	return strings.ReplaceAll(strings.ReplaceAll(q, "|", `\|`), "`", "'")
}

// readPlans collects, per query id (jsonlog's query_id, which
// compute_query_id makes pg_stat_statements' queryid), the last plan
// auto_explain logged in the server's jsonlog files.
func readPlans(dir string) (map[int64]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	plans := map[int64]string{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var e struct {
				Message string `json:"message"`
				QueryID int64  `json:"query_id"`
			}
			if json.Unmarshal(sc.Bytes(), &e) != nil || e.QueryID == 0 {
				continue
			}
			if _, plan, ok := strings.Cut(e.Message, "plan:\n"); ok {
				plans[e.QueryID] = withoutQueryText(plan)
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	return plans, nil
}

// textPlanStart is the first line of a plan auto_explain logged in a
// server's text log (log_line_prefix '%m [%p] ', internal/pgserver); the
// plan's lines follow, each indented by a tab, its statement first
// ("Query Text: ...").
var textPlanStart = regexp.MustCompile(`^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] LOG:  duration: [\d.]+ ms  plan:$`)

// readTextPlans collects, per statement text (its whitespace collapsed),
// the last plan auto_explain logged in a server's text log (the cluster's
// db-1.log). Plans are matched by their text, not by the query id a log
// line can carry: with the extended protocol a statement's executor ends,
// and auto_explain logs, while the next statement's id is current.
func readTextPlans(file string) (map[string]string, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	plans := map[string]string{}
	var in bool
	var lines []string
	flush := func() {
		if in {
			if text, plan, ok := splitQueryText(lines); ok {
				plans[text] = plan
			}
		}
		in, lines = false, nil
	}
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "\t"); ok && in {
			lines = append(lines, rest)
			continue
		}
		flush()
		in = textPlanStart.MatchString(line)
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return plans, nil
}

// splitQueryText splits a logged plan's lines into its statement's text
// (whitespace collapsed) and the plan from its first node on.
func splitQueryText(lines []string) (text, plan string, ok bool) {
	for i, l := range lines {
		if strings.Contains(l, "(cost=") {
			q, found := strings.CutPrefix(strings.Join(lines[:i], " "), "Query Text: ")
			return strings.Join(strings.Fields(q), " "), strings.Join(lines[i:], "\n"), found
		}
	}
	return "", "", false
}

// withoutQueryText drops auto_explain's "Query Text:" lines before the
// plan's first node (the statement is printed above the plan already).
func withoutQueryText(plan string) string {
	lines := strings.Split(plan, "\n")
	for i, l := range lines {
		if strings.Contains(l, "(cost=") {
			return strings.Join(lines[i:], "\n")
		}
	}
	return plan
}
