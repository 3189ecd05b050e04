// Command pgstatements measures what PostgreSQL does for the shop journey:
// every statement's calls, rows and mean time per journey request (from
// pg_stat_statements), the database's rows read and commits per request
// (pg_stat_database deltas), the server's CPU per request, and the plans
// (EXPLAIN ANALYZE with buffers, as auto_explain logged them) of the most
// expensive statements. scripts/bench-statements.sh runs it around a
// loadlab run; it writes docs/postgres.md's measured section.
//
//	pgstatements begin  --db URL --state FILE
//	pgstatements end    --db URL --state FILE --loadlab-json FILE --cpu SECONDS --label NAME --out FILE
//	pgstatements report [--log-dir DIR | --server-log FILE] --doc docs/postgres.md --header TEXT RUN.json...
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pgstatements:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("want a command: begin, end or report")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	db := fs.String("db", "", "PostgreSQL URL of the shop's database")
	state := fs.String("state", "", "file holding the counters at the start")
	loadJSON := fs.String("loadlab-json", "", "loadlab run's --json output (its request count)")
	cpu := fs.Float64("cpu", 0, "CPU seconds the PostgreSQL server spent during the run")
	label := fs.String("label", "", "name of the run")
	outFile := fs.String("out", "", "where the run's figures go (JSON)")
	logDir := fs.String("log-dir", "", "the server's log directory (jsonlog, auto_explain's plans)")
	serverLog := fs.String("server-log", "", "the server's text log (auto_explain's plans, matched to statements by their text)")
	doc := fs.String("doc", "docs/postgres.md", "document whose measured section is rewritten")
	header := fs.String("header", "", "markdown put above the tables (date, commit, load)")
	top := fs.Int("plans", 5, "how many of the most expensive statements get their plan")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "begin":
		return begin(ctx, *db, *state)
	case "end":
		return end(ctx, *db, *state, *loadJSON, *cpu, *label, *outFile)
	case "report":
		return report(fs.Args(), *logDir, *serverLog, *doc, *header, *top, out)
	}
	return fmt.Errorf("unknown command %q (begin, end or report)", args[0])
}

// Counters are pg_stat_database's figures for one database.
type Counters struct {
	Commits   int64 `json:"commits"`
	Rollbacks int64 `json:"rollbacks"`
	Returned  int64 `json:"returned"`
	Fetched   int64 `json:"fetched"`
	Written   int64 `json:"written"`
	Blocks    int64 `json:"blocks"`
}

// Statement is one pg_stat_statements entry.
type Statement struct {
	QueryID  int64   `json:"queryid"`
	Query    string  `json:"query"`
	Calls    int64   `json:"calls"`
	Rows     int64   `json:"rows"`
	TotalMS  float64 `json:"total_ms"`
	MeanMS   float64 `json:"mean_ms"`
	Blocks   int64   `json:"blocks"`
	Planning float64 `json:"plan_ms"`
}

// Run is one measured run.
type Run struct {
	Label      string      `json:"label"`
	Requests   int64       `json:"requests"`
	Seconds    float64     `json:"seconds"`
	RPS        float64     `json:"rps"`
	P99MS      float64     `json:"p99_ms"`
	Errors     int64       `json:"errors"`
	CPUSeconds float64     `json:"pg_cpu_seconds"`
	Delta      Counters    `json:"delta"`
	Statements []Statement `json:"statements"`
	// Tables are each table's reads over the run.
	Tables map[string]Table `json:"tables"`
}

type startState struct {
	Counters Counters         `json:"counters"`
	Tables   map[string]Table `json:"tables"`
	At       time.Time        `json:"at"`
}

// Table is pg_stat_user_tables' reads of one table.
type Table struct {
	SeqScans   int64 `json:"seq_scans"`
	SeqRows    int64 `json:"seq_rows"`
	IndexScans int64 `json:"index_scans"`
	IndexRows  int64 `json:"index_rows"`
}

func tables(ctx context.Context, conn *pgx.Conn) (map[string]Table, error) {
	rows, err := conn.Query(ctx, `SELECT relname, coalesce(seq_scan, 0), coalesce(seq_tup_read, 0),
		coalesce(idx_scan, 0), coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]Table{}
	for rows.Next() {
		var name string
		var t Table
		if err := rows.Scan(&name, &t.SeqScans, &t.SeqRows, &t.IndexScans, &t.IndexRows); err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, rows.Err()
}

const countersSQL = `SELECT xact_commit, xact_rollback, tup_returned, tup_fetched,
	tup_inserted + tup_updated + tup_deleted, blks_hit + blks_read
	FROM pg_stat_database WHERE datname = current_database()`

func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	if url == "" {
		return nil, errors.New("--db is required")
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}

func counters(ctx context.Context, conn *pgx.Conn) (Counters, error) {
	// The statistics collector's snapshot is per transaction: clear it so
	// the figures are today's, not this session's first read.
	if _, err := conn.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
		return Counters{}, err
	}
	var c Counters
	err := conn.QueryRow(ctx, countersSQL).Scan(&c.Commits, &c.Rollbacks, &c.Returned, &c.Fetched, &c.Written, &c.Blocks)
	return c, err
}

// begin resets pg_stat_statements and records the database's counters.
func begin(ctx context.Context, url, state string) error {
	conn, err := connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_stat_statements_reset()`); err != nil {
		return fmt.Errorf("reset pg_stat_statements (is it in shared_preload_libraries and created in this database?): %w", err)
	}
	c, err := counters(ctx, conn)
	if err != nil {
		return fmt.Errorf("read pg_stat_database: %w", err)
	}
	t, err := tables(ctx, conn)
	if err != nil {
		return fmt.Errorf("read pg_stat_user_tables: %w", err)
	}
	return writeJSON(state, startState{Counters: c, Tables: t, At: time.Now()})
}

// end reads the counters and statements again and writes the run.
func end(ctx context.Context, url, state, loadJSON string, cpu float64, label, out string) error {
	var st startState
	if err := readJSON(state, &st); err != nil {
		return err
	}
	var load struct {
		Requests   int64   `json:"requests"`
		Throughput float64 `json:"throughput_rps"`
		Latency    struct {
			P99 float64 `json:"p99_ns"`
		} `json:"latency"`
		Errors map[string]int64 `json:"errors"`
	}
	if err := readJSON(loadJSON, &load); err != nil {
		return err
	}
	if load.Requests == 0 {
		return fmt.Errorf("%s: the run made no requests", loadJSON)
	}
	conn, err := connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	c, err := counters(ctx, conn)
	if err != nil {
		return fmt.Errorf("read pg_stat_database: %w", err)
	}
	r := Run{Label: label, Requests: load.Requests, Seconds: time.Since(st.At).Seconds(), RPS: load.Throughput,
		P99MS: load.Latency.P99 / 1e6, CPUSeconds: cpu, Delta: Counters{
			Commits: c.Commits - st.Counters.Commits, Rollbacks: c.Rollbacks - st.Counters.Rollbacks,
			Returned: c.Returned - st.Counters.Returned, Fetched: c.Fetched - st.Counters.Fetched,
			Written: c.Written - st.Counters.Written, Blocks: c.Blocks - st.Counters.Blocks,
		}}
	t, err := tables(ctx, conn)
	if err != nil {
		return fmt.Errorf("read pg_stat_user_tables: %w", err)
	}
	r.Tables = map[string]Table{}
	for name, after := range t {
		b := st.Tables[name]
		d := Table{after.SeqScans - b.SeqScans, after.SeqRows - b.SeqRows, after.IndexScans - b.IndexScans, after.IndexRows - b.IndexRows}
		if d != (Table{}) {
			r.Tables[name] = d
		}
	}
	for _, n := range load.Errors {
		r.Errors += n
	}
	rows, err := conn.Query(ctx, `SELECT s.queryid, s.query, s.calls, s.rows, s.total_exec_time, s.mean_exec_time,
			s.shared_blks_hit + s.shared_blks_read, s.total_plan_time
		FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
		WHERE d.datname = current_database() AND s.query NOT LIKE '%pg_stat_%'
		ORDER BY s.total_exec_time DESC`)
	if err != nil {
		return fmt.Errorf("read pg_stat_statements: %w", err)
	}
	r.Statements, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Statement, error) {
		var s Statement
		err := row.Scan(&s.QueryID, &s.Query, &s.Calls, &s.Rows, &s.TotalMS, &s.MeanMS, &s.Blocks, &s.Planning)
		return s, err
	})
	if err != nil {
		return fmt.Errorf("read pg_stat_statements: %w", err)
	}
	return writeJSON(out, r)
}

func writeJSON(path string, v any) error {
	if path == "" {
		return errors.New("an output file is required (--state or --out)")
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
