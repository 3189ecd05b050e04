#!/usr/bin/env bash
# What holds the cluster's per-core goals (issue 17): profiles of one
# journey run on scripts/cluster.sh, from both sides of the wire.
#   - a Go CPU profile of API replica 1 (/debug/pprof/profile on its admin
#     listener, which cluster.sh gives every replica on 127.0.0.1; a shop
#     started by hand has none unless given --admin-addr);
#   - PostgreSQL's side: every statement's calls, rows, execution and
#     planning time per journey request (pg_stat_statements, reset after
#     the warm-up; scripts/pgstatements), set against the server's CPU per
#     request from /proc, so the share of its CPU spent outside statements
#     (parse, bind, the protocol, commits) shows;
#   - with perf installed (PERF=1, the default when it is), a perf profile
#     of the PostgreSQL server's processes over the same run, by function.
# After an uncounted warm-up, one run of DUR seconds of the built-in shop
# journey (loadlab, closed loop, USERS users) through nginx, without its
# edge cache (as bench.sh's cluster phase). The figures are a shape: run it
# on a quiet machine (the load average is printed with them) and compare
# shares, not absolute times, across machines.
#
# Usage: scripts/bench-profile.sh [REPLICAS]   (REPLICAS API replicas, 2)
#   e.g. scripts/bench-profile.sh 2
# Settings (environment): DUR seconds of the profiled run (20), WARMUP
# seconds (15), USERS (16), OUT directory for the profiles (a new one under
# /tmp, printed), PERF (1 when perf is installed, else 0), CLUSTER_ARGS
# (more arguments for `cluster.sh up`, e.g. --db-cpu 1).
# Exit status: 0 profiled, 1 a step failed (one line says which), 2 bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "bench-profile: $*" >&2; }
fail() { say "$*"; exit 1; }
usage() { say "$*"; say "usage: scripts/bench-profile.sh [REPLICAS] (settings DUR, WARMUP, USERS, OUT, PERF, CLUSTER_ARGS; see the script's head)"; exit 2; }
case ${1:-} in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  -*) usage "unknown option $1" ;;
esac
[ $# -le 1 ] || usage "one argument at most (the number of replicas), got $#"
REPLICAS=${1:-2}
DUR=${DUR:-20}
WARMUP=${WARMUP:-15}
USERS=${USERS:-16}
CLUSTER_ARGS=${CLUSTER_ARGS:-}
PERF=${PERF:-$(command -v perf >/dev/null && echo 1 || echo 0)}
for v in REPLICAS DUR WARMUP USERS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || usage "$v must be a whole number above 0, got '${!v}'"
done
[[ $PERF =~ ^[01]$ ]] || usage "PERF must be 0 or 1, got '$PERF'"
[ "$PERF" = 0 ] || command -v perf >/dev/null || fail "PERF=1 but perf is not installed (Debian package linux-perf)"
command -v psql >/dev/null || fail "psql is missing (Debian package postgresql-client)"
OUT=${OUT:-$(mktemp -d /tmp/bench-profile.XXXXXX)}
mkdir -p "$OUT" || fail "cannot make $OUT"

work=$(mktemp -d)
chmod 755 "$work"
cs="scripts/cluster.sh --state-dir $work/cluster"
up=
perf_pid=
cleanup() {
  [ -z "$perf_pid" ] || kill -INT "$perf_pid" 2>/dev/null || true
  [ -z "$up" ] || $cs down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

say "building"
mkdir -p "$work/bin"
for b in shop loadlab; do go build -o "$work/bin/$b" "./cmd/$b"; done
for b in benchprobe pgstatements; do go build -o "$work/bin/$b" "./scripts/$b"; done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

say "cluster.sh up $REPLICAS"
# shellcheck disable=SC2086 # CLUSTER_ARGS is words
PERFSCALE_CLUSTER_EDGE_CACHE=off PERFSCALE_CLUSTER_CLIENT_LIMITS=off PERFSCALE_CLUSTER_SHOP="$work/bin/shop" \
  $cs up "$REPLICAS" $CLUSTER_ARGS >"$work/up.log" 2>&1 || fail "cluster.sh up failed: $(tail -3 "$work/up.log")"
up=1
base=$(tail -1 "$work/up.log")
st=$($cs status)
dburl=$(sed -n 's/^database: .* (\(.*\))$/\1/p' <<<"$st")
postmaster=$(awk 'NF == 7 && $1 == "db-1" { print $3 }' <<<"$st")
admin=$(awk 'NF == 7 && $1 == "replica-1" { print $5 }' <<<"$st")
[ -n "$dburl" ] && [ -n "$postmaster" ] || fail "cluster.sh status names no database server of the cluster's own (--pg-url is not profiled):
$st"
[ -n "$admin" ] || fail "cluster.sh status names no admin listener of replica-1:
$st"

say "warm-up, ${WARMUP}s"
"$work/bin/loadlab" run --scenario shop --base "$base" --concurrency "$USERS" --duration "${WARMUP}s" --max-errors 100% >/dev/null 2>"$work/warmup.log" \
  || fail "the warm-up failed: $(tail -1 "$work/warmup.log")"

say "profiled run, ${DUR}s, $USERS users"
"$work/bin/pgstatements" begin --db "$dburl" --state "$work/state.json"
curl -sf -o "$OUT/replica-1.pprof" "$admin/debug/pprof/profile?seconds=$DUR" &
pprof_pid=$!
if [ "$PERF" = 1 ]; then
  # the server and its backends as they are now (the pools' connections
  # are open after the warm-up)
  pids=$(pgrep -d, -P "$postmaster" || true)
  perf record -q -F 499 -g -o "$work/perf.data" -p "$postmaster${pids:+,$pids}" >/dev/null 2>"$work/perf.log" &
  perf_pid=$!
fi
c0=$("$work/bin/benchprobe" cpu "$postmaster")
"$work/bin/loadlab" run --scenario shop --base "$base" --concurrency "$USERS" --duration "${DUR}s" --json "$work/load.json" >"$work/load.txt" 2>&1 \
  || fail "the profiled run failed: $(grep -m1 '^loadlab: ' "$work/load.txt" || tail -1 "$work/load.txt")"
c1=$("$work/bin/benchprobe" cpu "$postmaster")
if [ -n "$perf_pid" ]; then
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" || true
  perf_pid=
fi
wait "$pprof_pid" || say "the replica's CPU profile could not be taken ($admin/debug/pprof/profile)"
"$work/bin/pgstatements" end --db "$dburl" --state "$work/state.json" --loadlab-json "$work/load.json" \
  --cpu "$(python3 -c "print($c1 - $c0)")" --label profile --out "$OUT/postgres.json"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
cp "$work/load.txt" "$OUT/loadlab.txt"

if [ -s "$OUT/replica-1.pprof" ]; then
  go tool pprof -top -nodecount=30 "$work/bin/shop" "$OUT/replica-1.pprof" >"$OUT/replica-1.top" 2>/dev/null || true
  go tool pprof -top -cum -nodecount=40 "$work/bin/shop" "$OUT/replica-1.pprof" >"$OUT/replica-1.cum" 2>/dev/null || true
  cp "$work/bin/shop" "$OUT/shop" # pprof needs the binary for symbols
fi
if [ "$PERF" = 1 ] && [ -s "$work/perf.data" ]; then
  rep() { perf report -i "$work/perf.data" -g none --stdio "$@" 2>/dev/null | grep -v '^#' | grep -v '^$' || true; }
  rep --no-children --sort sym | head -40 >"$OUT/postgres.perf"
  rep --no-children --sort dso | head -15 >"$OUT/postgres.perf-dso"
  # Inclusive shares of a backend's phases: a statement's execution, its
  # parse and bind (extended protocol), planning, commit, and the socket.
  rep --children --sort sym | grep -E ' (exec_execute_message|exec_bind_message|exec_parse_message|exec_simple_query|pg_plan_queries|standard_ExecutorRun|CommitTransactionCommand|XLogFlush|pq_getbyte|secure_read|secure_write|pq_flush|PostgresMain)$' >"$OUT/postgres.perf-phases"
fi

python3 - "$OUT" "$LOAD_BEFORE" "$LOAD_AFTER" "$REPLICAS" <<'PY' | tee "$OUT/summary.txt"
import json, os, sys
out, before, after, replicas = sys.argv[1:]
r = json.load(open(os.path.join(out, "postgres.json")))
q = r["requests"]
cpu_us = r["pg_cpu_seconds"] / q * 1e6
st = sorted(r["statements"], key=lambda s: -(s["total_ms"] + s["plan_ms"]))
in_st = sum(s["total_ms"] + s["plan_ms"] for s in st) / q * 1e3
print(f"load average before {before}, after {after} (figures from a busy machine are not results)")
print(f"cluster.sh up {replicas}: {r['rps']:.0f} journey req/s, p99 {r['p99_ms']:.1f} ms, {r['errors']} errors, {q} requests")
print(f"PostgreSQL CPU {cpu_us:.0f} µs per request (from /proc); statements' execution and planning {in_st:.0f} µs per request (pg_stat_statements: elapsed time, lock waits and, on a busy machine, waits for a CPU included: set against the CPU, a share, not a part of it; postgres.perf-phases has the CPU by phase)")
d = r["delta"]
print(f"{d['commits'] / q:.2f} commits and {(d['returned'] + d['fetched']) / q:.1f} rows read per request")
print()
print(f"{'µs/req':>7} {'/CPU':>6} {'calls/req':>9} {'rows/call':>9}  statement (by execution + planning time per request)")
for s in st[:15]:
    t = (s["total_ms"] + s["plan_ms"]) / q * 1e3
    print(f"{t:7.1f} {t / cpu_us:6.1%} {s['calls'] / q:9.3f} {s['rows'] / max(s['calls'], 1):9.1f}  {' '.join(s['query'].split())[:110]}")
PY
say "profiles in $OUT: replica-1.top and replica-1.cum (go tool pprof $OUT/shop $OUT/replica-1.pprof), postgres.json, summary.txt$([ "$PERF" = 1 ] && echo ', postgres.perf (by function), postgres.perf-dso and postgres.perf-phases')"
