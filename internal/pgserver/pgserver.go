// Package pgserver runs PostgreSQL servers of a deployment's own with
// Debian's binaries: initdb into a data directory, a configuration sized
// for a small server, the server started and stopped through
// internal/supervise (so it runs in its cgroup and is recorded like every
// other process), and streaming standbys made with pg_basebackup. Each
// server is named (db-1, db-1-standby, ...), so a deployment may run
// several.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perfscale/perfscale/internal/supervise"
)

// BinEnv names a directory of PostgreSQL binaries to use instead of the
// newest /usr/lib/postgresql/*/bin.
const BinEnv = "PERFSCALE_PG_BIN"

// Bin finds the directory holding initdb, postgres and pg_basebackup.
func Bin() (string, error) {
	if dir := os.Getenv(BinEnv); dir != "" {
		return dir, checkBin(dir)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, dir := range dirs {
		if checkBin(dir) == nil {
			return dir, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		return dir, checkBin(dir)
	}
	return "", errors.New("PostgreSQL's server binaries (initdb, postgres) are not installed: apt-get install postgresql-15, or set " + BinEnv)
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func checkBin(dir string) error {
	for _, b := range []string{"initdb", "postgres", "pg_basebackup"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("%s has no %s: %w", dir, b, err)
		}
	}
	return nil
}

// Owner is the user the servers run as: PostgreSQL refuses to run as
// root, so as root they run as the postgres user; otherwise as this one
// (nil).
func Owner() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, the database server needs the postgres user to run as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// DataDir is where server name keeps its data: state/pg/name when the
// owner can reach it, else (a state directory under a private one, as a
// test's temporary directory is) a directory of its own in the system's
// temporary directory. external says which, so the caller records it
// and removes it.
func DataDir(state, name string, owner *syscall.Credential) (dir string, external bool, err error) {
	dir = filepath.Join(state, "pg", name)
	if owner == nil || reachable(filepath.Dir(dir)) {
		return dir, false, os.MkdirAll(filepath.Dir(dir), 0o755)
	}
	dir, err = os.MkdirTemp("", "perfscale-"+name+"-")
	return dir, true, err
}

// reachable reports whether every directory from / to dir lets others
// through (or does not exist yet and would be made 0755).
func reachable(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" || d == "." {
			return true
		}
	}
}

// SmallServer is the configuration of a server for a small machine (a
// fraction of a core to a core or two, a few hundred MB of memory), the
// data tier of the local cluster. Why each setting: docs/cluster.md.
// Autovacuum's ANALYZE samples 3,000 rows (default_statistics_target 10)
// and runs after 1,000 changed rows and a fifth of the table: under a
// quota of 0.15 core one ANALYZE of a 10,000-row river_job took 40 ms of
// CPU at the default 30,000-row sample, more than two quota periods'
// worth at once, and every statement waited behind it (docs/scaleout.md).
const SmallServer = `
# perfscale: a small server (internal/pgserver; docs/cluster.md says why)
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
shared_buffers = 128MB
effective_cache_size = 512MB
work_mem = 4MB
maintenance_work_mem = 64MB
wal_buffers = 4MB
max_wal_size = 512MB
min_wal_size = 80MB
checkpoint_completion_target = 0.9
random_page_cost = 1.1
effective_io_concurrency = 100
jit = off
max_worker_processes = 4
max_parallel_workers_per_gather = 0
max_parallel_maintenance_workers = 1
max_parallel_workers = 2
autovacuum = on
autovacuum_naptime = 10s
autovacuum_vacuum_scale_factor = 0.05
autovacuum_analyze_threshold = 1000
autovacuum_analyze_scale_factor = 0.2
default_statistics_target = 10
track_io_timing = on
shared_preload_libraries = 'pg_stat_statements,auto_explain'
pg_stat_statements.max = 2000
pg_stat_statements.track = top
auto_explain.log_min_duration = -1
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
hot_standby = on
hot_standby_feedback = on
log_min_messages = warning
log_checkpoints = on
log_autovacuum_min_duration = 0
log_line_prefix = '%m [%p] '
`

// Init makes a new data directory with initdb (trust authentication on
// 127.0.0.1 only, replication included) and the small-server settings.
func Init(ctx context.Context, bin, dataDir string, owner *syscall.Credential) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	if owner != nil {
		if err := os.Chown(dataDir, int(owner.Uid), int(owner.Gid)); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", dataDir, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %v: %s", dataDir, err, lastLine(out))
	}
	f, err := os.OpenFile(filepath.Join(dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(SmallServer)
	return err
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// Server is one server of a deployment.
type Server struct {
	Name    string // db-1, db-1-standby
	DataDir string
	Bin     string
	Owner   *syscall.Credential
	Cgroup  string // the cgroup it runs in; empty: none
	Standby bool   // a streaming standby (role "standby" in its record)
}

// Roles in a server's record (Meta["role"]).
const (
	RolePrimary = "database"
	RoleStandby = "standby"
)

// IsServer reports whether a record is one of a database server.
func IsServer(r supervise.Record) bool {
	return r.Meta["role"] == RolePrimary || r.Meta["role"] == RoleStandby
}

// URL is the connection URL of database db on a server listening on port.
func URL(port int, db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", port, db)
}

// Spec is how supervise starts the server: postgres itself (not pg_ctl,
// which would fork it away from the supervisor's record), on a port of
// its own, ready once it accepts a query.
func (s Server) Spec() supervise.Spec {
	role := RolePrimary
	if s.Standby {
		role = RoleStandby
	}
	return supervise.Spec{
		Name:       s.Name,
		Path:       filepath.Join(s.Bin, "postgres"),
		Args:       func(p map[string]int) []string { return []string{"-D", s.DataDir, "-p", strconv.Itoa(p["postgres"])} },
		Ports:      []string{"postgres"},
		Cgroup:     s.Cgroup,
		Credential: s.Owner,
		Meta:       map[string]string{"role": role, "data": s.DataDir},
		Ready: func(ctx context.Context, r supervise.Record) error {
			return Ping(ctx, URL(r.Port("postgres"), "postgres"))
		},
	}
}

// Ping connects and runs a query.
func Ping(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "SELECT 1")
	return err
}

// Stop shuts a recorded server down (SIGINT: PostgreSQL's fast shutdown,
// which ends the sessions and checkpoints), killing it after a minute.
func Stop(ctx context.Context, r supervise.Record) error {
	killed, err := r.Stop(ctx, syscall.SIGINT, time.Minute)
	if err == nil && killed {
		return fmt.Errorf("%s (pid %d) did not shut down within a minute; killed", r.Name, r.PID)
	}
	return err
}

// RemoveStaleLock removes the postmaster.pid a killed server left in
// dataDir when it names pid, the server's recorded pid, which no longer
// runs. PostgreSQL removes a stale lock itself only when no process has
// the pid: a killed postmaster not yet reaped by its new parent (a
// zombie, which holds nothing) makes it refuse to start with "lock file
// already exists". A lock naming another pid is left to PostgreSQL.
func RemoveStaleLock(dataDir string, pid int) error {
	path := filepath.Join(dataDir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if strings.TrimSpace(first) != strconv.Itoa(pid) || running(pid) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the stale %s: %w", path, err)
	}
	return nil
}

// running reports whether pid is a process that is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// BaseBackup copies a running primary into dataDir as a streaming
// standby (pg_basebackup -R, a replication slot of its own so the
// primary keeps the WAL it has not streamed yet).
func BaseBackup(ctx context.Context, bin, primaryURL, dataDir, slot string, owner *syscall.Credential) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	if owner != nil {
		if err := os.Chown(dataDir, int(owner.Uid), int(owner.Gid)); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pg_basebackup"), "-d", primaryURL, "-D", dataDir,
		"--write-recovery-conf", "--wal-method=stream", "--checkpoint=fast", "--create-slot", "--slot="+slot, "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_basebackup: %v: %s", err, lastLine(out))
	}
	return nil
}

// WaitReplayed waits until the standby at standbyURL has replayed the
// primary's WAL up to where it is now: what was committed on the primary
// before the call is then readable on the standby.
func WaitReplayed(ctx context.Context, primaryURL, standbyURL string) error {
	var lsn string
	if err := query(ctx, primaryURL, "SELECT pg_current_wal_lsn()::text", &lsn); err != nil {
		return fmt.Errorf("the primary's WAL position: %w", err)
	}
	for {
		var done bool
		err := query(ctx, standbyURL, "SELECT coalesce(pg_last_wal_replay_lsn() >= '"+lsn+"'::pg_lsn, false)", &done)
		if err == nil && done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the read replica has not replayed the primary's WAL up to %s: it is not streaming (%v)", lsn, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func query(ctx context.Context, url, sql string, dst any) error {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(qctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(qctx, sql).Scan(dst)
}

// VacuumCatalogs vacuums and analyzes the system catalogs of the
// database at url, and only them. A database just migrated has dead rows
// in its catalogs (pg_attribute, pg_class, pg_depend) that autovacuum
// would otherwise clean inside the first seconds of load. Its own tables
// are left alone: a vacuum of an empty table records it as empty
// (reltuples 0, where a table never vacuumed reads -1 and is planned as
// ten pages), and a generic plan made on that before autovacuum's first
// analyze scans the table whole for as long as the connection lives.
func VacuumCatalogs(ctx context.Context, url string) error {
	var tables string
	err := query(ctx, url, `SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ' ORDER BY c.relname)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'pg_catalog' AND c.relkind = 'r'`, &tables)
	if err != nil {
		return fmt.Errorf("list the system catalogs: %w", err)
	}
	return Exec(ctx, url, "VACUUM (ANALYZE) "+tables)
}

// Exec runs statements on url, one connection.
func Exec(ctx context.Context, url string, statements ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, s := range statements {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}
