#!/usr/bin/env bash
# Know every statement (issue 17): what PostgreSQL does per request of the
# built-in `shop` journey, written into docs/postgres.md between the
# markers <!-- statements --> and <!-- /statements -->.
#
# It measures on the cluster's own PostgreSQL server: for each binary and
# round, `scripts/cluster.sh up 1` (cmd/cluster: one API replica and a
# worker behind nginx, its edge cache and per-client limits off as in
# bench.sh, on a PostgreSQL 15 server of the cluster's own with
# its small-server configuration, autovacuum on, pg_stat_statements and
# auto_explain preloaded, Redis and NATS as the cluster gives them), then,
# after an uncounted warm-up, it resets pg_stat_statements, runs the
# journey for DUR seconds through nginx and records pg_stat_database's
# deltas (rows read, commits), the server's CPU (postmaster and backends)
# and every statement's calls, rows and mean time (scripts/pgstatements;
# each run's row has the statements per request, all calls summed);
# then `down`. No ANALYZE by hand: the server's autovacuum keeps the
# statistics. A last run of the newest binary switches auto_explain on
# (ALTER SYSTEM, reload: ANALYZE, BUFFERS, a sample of executions) and the
# five most expensive statements are shown with the plans it logged in the
# server's log (db-1.log), matched to them by their text.
#
# Usage: scripts/bench-statements.sh [BEFORE-REVISION]
#   With a revision (e.g. a commit before a change), its `shop` is built
#   from `git archive` and measured in turns with the working tree's, the
#   same server, same data, same load: before and after, side by side.
# Settings (environment): DUR seconds per run (10), WARMUP seconds (12),
# USERS journey users (16), ROUNDS (2 with a revision, else 1), SAMPLE
# auto_explain's sample rate in the plan run (0.05), SEED_ORDERS (0: the
# service seeds its default catalog; N: scripts/pgseed then makes N orders
# and SEED_SESSIONS sessions (their lines over SEED_ITEMS item ids) in the
# cluster's database before the warm-up;
# the catalog stays the service's default), DOC (docs/postgres.md),
# CLUSTER_ARGS (more arguments for `cluster.sh up 1`, e.g. --db-cpu 1).
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
WARMUP=${WARMUP:-12}
USERS=${USERS:-16}
SAMPLE=${SAMPLE:-0.05}
SEED_ORDERS=${SEED_ORDERS:-0}
SEED_SESSIONS=${SEED_SESSIONS:-100000}
SEED_ITEMS=${SEED_ITEMS:-10000}
DOC=${DOC:-docs/postgres.md}
CLUSTER_ARGS=${CLUSTER_ARGS:-}
before_rev=${1:-}
ROUNDS=${ROUNDS:-$([ -n "$before_rev" ] && echo 2 || echo 1)}
say() { echo "bench-statements: $*" >&2; }
fail() { say "$*"; exit 1; }

command -v psql >/dev/null || fail "psql is missing (Debian package postgresql-client)"

work=$(mktemp -d)
chmod 755 "$work"
cs="scripts/cluster.sh --state-dir $work/cluster"
up=
cleanup() {
  [ -z "$up" ] || $cs down >/dev/null 2>&1 || true
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

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

n=0
# measure BINARY LABEL [sample-rate]: a fresh cluster on that binary, a
# warm-up and one measured run, then down (the server's log kept for the
# plans).
measure() {
  local bin=$1 label=$2 sample=${3:-0}
  n=$((n + 1))
  # The journey's users all come from one address, which nginx's per-client
  # limits (cluster.sh) would hold to one client's share: off, as in bench.sh.
  # nginx's edge cache is off too, as in bench.sh: it answers menu and item
  # reads itself, which then count as journey requests that cost the
  # database nothing (per-request figures below bench.sh's for one code).
  # shellcheck disable=SC2086 # CLUSTER_ARGS is words
  PERFSCALE_CLUSTER_EDGE_CACHE=off PERFSCALE_CLUSTER_CLIENT_LIMITS=off PERFSCALE_CLUSTER_SHOP="$work/$bin/shop" $cs up 1 $CLUSTER_ARGS >"$work/up-$n.log" 2>&1 \
    || fail "$bin: cluster.sh up failed: $(tail -3 "$work/up-$n.log")"
  up=1
  local base st dburl postmaster
  base=$(tail -1 "$work/up-$n.log")
  st=$($cs status)
  dburl=$(sed -n 's/^database: .* (\(.*\))$/\1/p' <<<"$st")
  postmaster=$(awk 'NF == 7 && $1 == "db-1" { print $3 }' <<<"$st")
  [ -n "$dburl" ] && [ -n "$postmaster" ] || fail "cluster.sh status names no database server of the cluster's own:
$st"
  if [ "$SEED_ORDERS" -gt 0 ]; then
    "$work/bin/pgseed" --db "$dburl" --orders "$SEED_ORDERS" --sessions "$SEED_SESSIONS" --items "$SEED_ITEMS" >&2
  fi
  # the warm-up's errors (a busy machine's timeouts) do not count
  "$work/bin/loadlab" run --scenario shop --base "$base" --concurrency "$USERS" --duration "${WARMUP}s" --max-errors 100% >/dev/null 2>"$work/warmup-$n.log" \
    || fail "$label: the warm-up failed: $(tail -3 "$work/warmup-$n.log")"
  if [ "$sample" != 0 ]; then
    psql "$dburl" -qX -c "ALTER SYSTEM SET auto_explain.log_min_duration = 0" -c "ALTER SYSTEM SET auto_explain.log_analyze = on" \
      -c "ALTER SYSTEM SET auto_explain.log_buffers = on" -c "ALTER SYSTEM SET auto_explain.log_timing = off" \
      -c "ALTER SYSTEM SET auto_explain.log_verbose = on" -c "ALTER SYSTEM SET auto_explain.sample_rate = $sample" \
      -c "SELECT pg_reload_conf()" >/dev/null
  fi
  "$work/bin/pgstatements" begin --db "$dburl" --state "$work/state-$n.json"
  local c0 c1
  c0=$("$work/bin/benchprobe" cpu "$postmaster")
  "$work/bin/loadlab" run --scenario shop --base "$base" --concurrency "$USERS" --duration "${DUR}s" --json "$work/load-$n.json" >/dev/null 2>"$work/load-$n.log" \
    || fail "$label: the measured run failed (more than 1% errors, or a loadlab error): $(tail -3 "$work/load-$n.log")"
  c1=$("$work/bin/benchprobe" cpu "$postmaster")
  "$work/bin/pgstatements" end --db "$dburl" --state "$work/state-$n.json" --loadlab-json "$work/load-$n.json" \
    --cpu "$(python3 -c "print($c1 - $c0)")" --label "$label" --out "$work/run-$n.json"
  runs+=("$work/run-$n.json")
  say "$label: $(python3 -c "import json; r=json.load(open('$work/run-$n.json')); q=r['requests']; d=r['delta']; print(f\"{r['rps']:.0f} req/s, {(d['returned']+d['fetched'])/q:.1f} rows read, {d['commits']/q:.2f} commits, {sum(s['calls'] for s in r['statements'])/q:.2f} statements, {r['pg_cpu_seconds']/q*1e6:.0f} µs PostgreSQL CPU per request\")")"
  [ "$sample" = 0 ] || cp "$work/cluster/db-1.log" "$work/plans.log"
  $cs down >/dev/null 2>&1 || fail "cluster.sh down failed"
  up=
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

data="the service's default catalog"
[ "$SEED_ORDERS" -le 0 ] || data="the default catalog and, made by scripts/pgseed, $SEED_ORDERS orders and $SEED_SESSIONS sessions"
side=""
[ -z "$before_rev" ] || side="; before and after measured in turns, each on a fresh cluster"
header="- date: $(date -u '+%Y-%m-%d %H:%M') UTC; commit $commit; load average before $LOAD_BEFORE, after $LOAD_AFTER (2 cores, shared: compare runs of one table, not across days)
- server: the cluster's own PostgreSQL 15 (\`scripts/cluster.sh up 1${CLUSTER_ARGS:+ $CLUSTER_ARGS}\`: small-server configuration, shared_buffers 128MB, autovacuum on, no ANALYZE by hand), $data; one API replica and a worker behind nginx (its per-client limits and edge cache off), with Redis and NATS; $USERS closed-loop users through nginx, ${WARMUP} s warm-up, ${DUR} s measured per run, a fresh cluster per run$side"
"$work/bin/pgstatements" report --server-log "$work/plans.log" --doc "$DOC" --header "$header" "${runs[@]}"
