#!/usr/bin/env bash
# River's fetch settings by measurement (issue 17): the built-in `shop`
# journey on PostgreSQL with each setting of the worker's fetch cooldown
# and poll interval, in turns, and what each costs the database and the
# orders: requests/s and p99, commits and rows read per journey request
# (pg_stat_database), PostgreSQL CPU per request, River's fetches per
# second (pg_stat_statements' calls of JobGetAvailable), and how long an
# order waits from placed to confirmed (p50, p99, from order_events).
#
# It starts a PostgreSQL server of its own (Debian's postgresql-15
# binaries, as scripts/bench-statements.sh: autovacuum on,
# pg_stat_statements), and for each setting and round a fresh database
# with one `shop` process (api and worker), a warm-up and a measured run.
#
# Usage: scripts/bench-jobfetch.sh [COOLDOWN/POLL ...]
#   each setting is --job-fetch-cooldown/--job-poll-interval, e.g. 50ms/1s
#   (default: 50ms/1s 100ms/1s 250ms/1s 50ms/5s).
# Settings (environment): DUR seconds per run (10), WARMUP seconds (12),
# USERS journey users (16), ROUNDS (2), PG_BIN
# (/usr/lib/postgresql/15/bin).
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
WARMUP=${WARMUP:-12}
USERS=${USERS:-16}
ROUNDS=${ROUNDS:-2}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
settings=("$@")
[ ${#settings[@]} -gt 0 ] || settings=(50ms/1s 100ms/1s 250ms/1s 50ms/5s)
say() { echo "bench-jobfetch: $*" >&2; }
fail() { say "$*"; exit 1; }
[ -x "$PG_BIN/initdb" ] || fail "$PG_BIN/initdb is missing (Debian package postgresql-15)"
command -v psql >/dev/null || fail "psql is missing (Debian package postgresql-client)"
for s in "${settings[@]}"; do
  case $s in */*) ;; *) fail "a setting is COOLDOWN/POLL (e.g. 50ms/1s), not $s" ;; esac
done

work=$(mktemp -d)
chmod 755 "$work"
pgdata=$work/pg
shop_pid=
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  if [ -n "$shop_pid" ]; then kill "$shop_pid" 2>/dev/null || true; wait "$shop_pid" 2>/dev/null || true; fi
  [ -f "$pgdata/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -m immediate stop >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

say "building"
go build -o "$work/shop" ./cmd/shop
go build -o "$work/loadlab" ./cmd/loadlab
go build -o "$work/benchprobe" ./scripts/benchprobe
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
mkdir -p "$pgdata" "$work/pglog"
chown postgres "$pgdata" "$work/pglog" 2>/dev/null || true
as_pg "$PG_BIN/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 >"$work/initdb.log" 2>&1 || fail "initdb failed: $(tail -2 "$work/initdb.log")"
as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -w -l "$work/pglog/server.log" -o "-p $port -k $work/pglog -c listen_addresses=127.0.0.1 \
  -c shared_buffers=256MB -c max_connections=100 -c shared_preload_libraries=pg_stat_statements" start >/dev/null \
  || fail "the server did not start: $(tail -3 "$work/pglog/server.log")"
postmaster=$(head -1 "$pgdata/postmaster.pid")
PGURL="postgres://postgres@127.0.0.1:$port"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
stats="SELECT xact_commit, tup_returned + tup_fetched FROM pg_stat_database WHERE datname = current_database()"
fetches="SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE '%name: JobGetAvailable%'"
# Orders placed during the run and how long each waited to be confirmed.
waits="SELECT count(*), coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY c.created_at - p.created_at) / 1000.0, 0),
  coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY c.created_at - p.created_at) / 1000.0, 0)
  FROM order_events p JOIN order_events c ON c.order_id = p.order_id AND c.status = 'confirmed'
  WHERE p.status = 'placed' AND p.created_at >= :'t0'::bigint AND p.created_at < :'t1'::bigint"

n=0
echo -e "setting\tround\treq/s\tp99_ms\tcommits\trows\tcpu_us\tfetches_s\torders\tconfirm_p50_ms\tconfirm_p99_ms" >"$work/results.tsv"
measure() {
  local setting=$1 round=$2 cooldown=${1%/*} poll=${1#*/}
  n=$((n + 1))
  local db="shop_fetch_$n" shop_port admin
  psql "$PGURL/postgres" -qX -c "CREATE DATABASE $db" >/dev/null
  psql "$PGURL/$db" -qX -c "CREATE EXTENSION pg_stat_statements" >/dev/null
  "$work/shop" migrate --db "$PGURL/$db" >/dev/null 2>&1 || fail "shop migrate failed"
  shop_port=$(free_port)
  admin=$(free_port)
  "$work/shop" --db "$PGURL/$db" --addr "127.0.0.1:$shop_port" --admin-addr "127.0.0.1:$admin" --data-dir "$work/data-$n" \
    --session-rate 0 --log-level warn --job-fetch-cooldown "$cooldown" --job-poll-interval "$poll" >"$work/shop-$n.log" 2>&1 &
  shop_pid=$!
  for _ in $(seq 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$shop_port/readyz" && break
    kill -0 "$shop_pid" 2>/dev/null || fail "$setting: the service exited: $(tail -3 "$work/shop-$n.log")"
    sleep 0.1
  done
  local base="http://127.0.0.1:$shop_port"
  "$work/loadlab" run --scenario shop --base "$base" --concurrency "$USERS" --duration "${WARMUP}s" >/dev/null 2>&1
  psql "$PGURL/$db" -qX -c "SELECT pg_stat_statements_reset()" >/dev/null
  local x0 x1 c0 c1 f1 t0 t1
  x0=$(psql "$PGURL/$db" -XAtF' ' -c "$stats")
  c0=$("$work/benchprobe" cpu "$postmaster")
  t0=$(date +%s%6N)
  "$work/loadlab" run --scenario shop --base "$base" --concurrency "$USERS" --duration "${DUR}s" --json "$work/load-$n.json" >/dev/null 2>&1
  t1=$(date +%s%6N)
  c1=$("$work/benchprobe" cpu "$postmaster")
  x1=$(psql "$PGURL/$db" -XAtF' ' -c "$stats")
  f1=$(psql "$PGURL/$db" -XAt -c "$fetches")
  sleep 2 # the last orders' confirmations
  local w
  w=$(psql "$PGURL/$db" -XAtF' ' -v t0="$t0" -v t1="$t1" <<<"$waits")
  python3 - "$work/load-$n.json" "$setting" "$round" "$x0" "$x1" "$c0" "$c1" "$f1" "$t0" "$t1" "$w" >>"$work/results.tsv" <<'PY'
import json, sys
f, setting, rnd, x0, x1, c0, c1, f1, t0, t1, w = sys.argv[1:]
d = json.load(open(f))
q = d["requests"]
x0, x1 = [list(map(int, x.split())) for x in (x0, x1)]
secs = (int(t1) - int(t0)) / 1e6
orders, p50, p99 = w.split()
print("\t".join(map(str, [setting, rnd, round(d["throughput_rps"]), round(d["latency"]["p99_ns"] / 1e6, 1),
    round((x1[0] - x0[0]) / q, 3), round((x1[1] - x0[1]) / q, 1), round((float(c1) - float(c0)) / q * 1e6),
    round(int(f1) / secs, 1), orders, round(float(p50), 1), round(float(p99), 1)])))
PY
  say "$(tail -1 "$work/results.tsv")"
  kill "$shop_pid"
  wait "$shop_pid" 2>/dev/null || true
  shop_pid=
  psql "$PGURL/postgres" -qX -c "DROP DATABASE $db WITH (FORCE)" >/dev/null
}
for r in $(seq "$ROUNDS"); do
  for s in "${settings[@]}"; do
    say "round $r: $s"
    measure "$s" "$r"
  done
done
echo "# $(date -u '+%Y-%m-%d %H:%M') UTC, commit $(git rev-parse --short HEAD), load average before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg); $USERS users, ${WARMUP}s warm-up, ${DUR}s per run"
column -t -s$'\t' "$work/results.tsv"
