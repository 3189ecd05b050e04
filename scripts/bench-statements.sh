#!/usr/bin/env bash
# Know every statement (issue 17): what PostgreSQL does per request of the
# built-in `shop` journey, written into docs/postgres.md between the
# markers <!-- statements --> and <!-- /statements -->.
#
# It starts a PostgreSQL server of its own (Debian's postgresql-15
# binaries: initdb and pg_ctl in a temporary directory, a free port,
# autovacuum on as by default, pg_stat_statements and auto_explain
# preloaded), and on it, for each binary and round, a fresh database with
# one `shop` process (api and worker, Redis and NATS as scripts/cluster.sh
# gives its replicas). After an uncounted warm-up it resets
# pg_stat_statements, runs the journey for DUR seconds and records
# pg_stat_database's deltas (rows read, commits), the server's CPU and
# every statement's calls, rows and mean time (scripts/pgstatements). A
# last run of the newest binary samples plans with auto_explain (ANALYZE,
# BUFFERS); the five most expensive statements are shown with theirs.
#
# Usage: scripts/bench-statements.sh [BEFORE-REVISION]
#   With a revision (e.g. a commit before a change), its `shop` is built
#   from `git archive` and measured in turns with the working tree's, the
#   same server, same data, same load: before and after, side by side.
# Settings (environment): DUR seconds per run (10), WARMUP seconds (12),
# USERS journey users (16), ROUNDS (2 with a revision, else 1), SAMPLE
# auto_explain's sample rate in the plan run (0.05), SEED_ORDERS (0: the
# service seeds its default catalog; N: scripts/pgseed first makes N
# orders, SEED_SESSIONS sessions and SEED_ITEMS items), DOC
# (docs/postgres.md), PG_BIN (/usr/lib/postgresql/15/bin), REDIS
# (redis://127.0.0.1:6379/0, empty: none), NATS (nats://127.0.0.1:4222,
# empty: none).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
WARMUP=${WARMUP:-12}
USERS=${USERS:-16}
SAMPLE=${SAMPLE:-0.05}
SEED_ORDERS=${SEED_ORDERS:-0}
SEED_SESSIONS=${SEED_SESSIONS:-100000}
SEED_ITEMS=${SEED_ITEMS:-10000}
DOC=${DOC:-docs/postgres.md}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
REDIS=${REDIS-redis://127.0.0.1:6379/0}
NATS=${NATS-nats://127.0.0.1:4222}
before_rev=${1:-}
ROUNDS=${ROUNDS:-$([ -n "$before_rev" ] && echo 2 || echo 1)}
say() { echo "bench-statements: $*" >&2; }
fail() { say "$*"; exit 1; }

[ -x "$PG_BIN/initdb" ] || fail "$PG_BIN/initdb is missing (Debian package postgresql-15)"
command -v psql >/dev/null || fail "psql is missing (Debian package postgresql-client)"

work=$(mktemp -d)
chmod 755 "$work"
pgdata=$work/pg
shop_pid=
prefixes=()
streams=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  if [ -n "$shop_pid" ]; then kill "$shop_pid" 2>/dev/null || true; wait "$shop_pid" 2>/dev/null || true; fi
  [ -f "$pgdata/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -m immediate stop >/dev/null 2>&1 || true
  local p s
  for p in "${prefixes[@]}"; do
    redis-cli -u "$REDIS" --scan --pattern "$p*" 2>/dev/null | xargs -r redis-cli -u "$REDIS" del >/dev/null 2>&1 || true
  done
  for s in "${streams[@]}"; do "$work/after/shop" drop-events --nats "$NATS" --nats-stream "$s" >/dev/null 2>&1 || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

say "building"
mkdir -p "$work/after" "$work/bin"
go build -o "$work/after/shop" ./cmd/shop
go build -o "$work/bin/loadlab" ./cmd/loadlab
go build -o "$work/bin/benchprobe" ./scripts/benchprobe
go build -o "$work/bin/pgstatements" ./scripts/pgstatements
[ "$SEED_ORDERS" -le 0 ] || go build -o "$work/bin/pgseed" ./scripts/pgseed
binaries=(after)
if [ -n "$before_rev" ]; then
  say "building $before_rev"
  mkdir -p "$work/src-before" "$work/before"
  git archive "$before_rev" | tar -x -C "$work/src-before"
  (cd "$work/src-before" && go build -o "$work/before/shop" ./cmd/shop)
  binaries=(before after)
fi
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- . ':!'"$DOC" || commit="$commit (with uncommitted changes)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
say "PostgreSQL of its own on port $port"
mkdir -p "$pgdata" "$work/pglog"
chown postgres "$pgdata" "$work/pglog" 2>/dev/null || true
as_pg "$PG_BIN/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 >"$work/initdb.log" 2>&1 || fail "initdb failed: $(tail -2 "$work/initdb.log")"
as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -w -l "$work/pglog/server.log" -o "-p $port -k $work/pglog -c listen_addresses=127.0.0.1 \
  -c shared_buffers=256MB -c max_connections=100 -c compute_query_id=on \
  -c shared_preload_libraries=pg_stat_statements,auto_explain -c pg_stat_statements.max=1000 \
  -c auto_explain.log_min_duration=0 -c auto_explain.log_analyze=on -c auto_explain.log_buffers=on \
  -c auto_explain.log_verbose=on -c auto_explain.log_nested_statements=off -c auto_explain.sample_rate=0 \
  -c logging_collector=on -c log_destination=jsonlog -c log_directory=$work/pglog" start >/dev/null \
  || fail "the server did not start: $(tail -3 "$work/pglog/server.log")"
postmaster=$(head -1 "$pgdata/postmaster.pid")
PGURL="postgres://postgres@127.0.0.1:$port"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

n=0
# measure BINARY LABEL [sample-rate]: a fresh database, the service on it,
# a warm-up and one measured run.
measure() {
  local bin=$1 label=$2 sample=${3:-0}
  n=$((n + 1))
  local db="shop_stmt_$n" shop_port admin
  psql "$PGURL/postgres" -qX -c "CREATE DATABASE $db" >/dev/null
  psql "$PGURL/$db" -qX -c "CREATE EXTENSION pg_stat_statements" -c "ALTER DATABASE $db SET auto_explain.sample_rate = $sample" >/dev/null
  "$work/$bin/shop" migrate --db "$PGURL/$db" >/dev/null 2>&1 || fail "$bin: shop migrate failed"
  if [ "$SEED_ORDERS" -gt 0 ]; then
    "$work/bin/pgseed" --db "$PGURL/$db" --orders "$SEED_ORDERS" --sessions "$SEED_SESSIONS" --items "$SEED_ITEMS" >&2
  fi
  shop_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local extra=()
  if [ -n "$REDIS" ]; then extra+=(--redis "$REDIS" --redis-prefix "shop:stmt$$-$n:"); prefixes+=("shop:stmt$$-$n:"); fi
  if [ -n "$NATS" ]; then extra+=(--nats "$NATS" --nats-stream "STMT$$_$n"); streams+=("STMT$$_$n"); fi
  "$work/$bin/shop" --db "$PGURL/$db" --addr "127.0.0.1:$shop_port" --admin-addr "127.0.0.1:$admin" \
    --data-dir "$work/data-$n" --session-rate 0 --log-level warn "${extra[@]}" >"$work/shop-$n.log" 2>&1 &
  shop_pid=$!
  for _ in $(seq 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$shop_port/readyz" && break
    kill -0 "$shop_pid" 2>/dev/null || fail "$bin: the service exited: $(tail -3 "$work/shop-$n.log")"
    sleep 0.1
  done
  local base="http://127.0.0.1:$shop_port"
  "$work/bin/loadlab" run --scenario shop --base "$base" --concurrency "$USERS" --duration "${WARMUP}s" >/dev/null 2>&1
  "$work/bin/pgstatements" begin --db "$PGURL/$db" --state "$work/state-$n.json"
  local c0 c1
  c0=$("$work/bin/benchprobe" cpu "$postmaster")
  "$work/bin/loadlab" run --scenario shop --base "$base" --concurrency "$USERS" --duration "${DUR}s" --json "$work/load-$n.json" >/dev/null 2>&1
  c1=$("$work/bin/benchprobe" cpu "$postmaster")
  "$work/bin/pgstatements" end --db "$PGURL/$db" --state "$work/state-$n.json" --loadlab-json "$work/load-$n.json" \
    --cpu "$(python3 -c "print($c1 - $c0)")" --label "$label" --out "$work/run-$n.json"
  runs+=("$work/run-$n.json")
  say "$label: $(python3 -c "import json; r=json.load(open('$work/run-$n.json')); q=r['requests']; d=r['delta']; print(f\"{r['rps']:.0f} req/s, {(d['returned']+d['fetched'])/q:.1f} rows read, {d['commits']/q:.2f} commits, {r['pg_cpu_seconds']/q*1e6:.0f} µs PostgreSQL CPU per request\")")"
  kill "$shop_pid"
  wait "$shop_pid" 2>/dev/null || true
  shop_pid=
  psql "$PGURL/postgres" -qX -c "DROP DATABASE $db WITH (FORCE)" >/dev/null
}

runs=()
for r in $(seq "$ROUNDS"); do
  for b in "${binaries[@]}"; do
    say "round $r: $b"
    label=$b
    [ -n "$before_rev" ] || label="run $r"
    [ -n "$before_rev" ] && label="$b ($([ "$b" = before ] && echo "$before_rev" || echo "$commit")), round $r"
    measure "$b" "$label"
  done
done
say "a run with plans sampled (auto_explain, $SAMPLE of executions)"
measure after "plans sampled ($SAMPLE), $commit" "$SAMPLE"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

data="a fresh database with the service's default catalog"
[ "$SEED_ORDERS" -le 0 ] || data="a database made by scripts/pgseed: $SEED_ORDERS orders, $SEED_SESSIONS sessions, $SEED_ITEMS items"
side=""
[ -z "$before_rev" ] || side="; before and after measured in turns, each on a fresh database"
with=""
[ -z "$REDIS" ] || with+=", Redis"
[ -z "$NATS" ] || with+=", NATS"
header="- date: $(date -u '+%Y-%m-%d %H:%M') UTC; commit $commit; load average before $LOAD_BEFORE, after $LOAD_AFTER (2 cores, shared: compare runs of one table, not across days)
- server: PostgreSQL 15 of the script's own (\`initdb\` defaults, autovacuum on, shared_buffers 256MB), $data; one \`shop\` process (api and worker$with), $USERS closed-loop users, ${WARMUP} s warm-up, ${DUR} s measured per run$side"
"$work/bin/pgstatements" report --log-dir "$work/pglog" --doc "$DOC" --header "$header" "${runs[@]}"
