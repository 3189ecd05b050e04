#!/usr/bin/env bash
# How many PostgreSQL transactions does an order's confirmation and its
# "ready" step take? For each shop binary given (e.g. main's and a
# branch's, side by side in one run): a fresh database on the machine's
# PostgreSQL, `shop migrate`, ORDERS checkouts placed by an api-only
# process (no worker: the jobs wait), then a worker (`--role worker`)
# started and timed until every order is ready. pg_stat_database's
# commits of that database over the worker's run, per order, are the
# confirmation and ready steps with River's fetches, completer updates and
# scheduler passes; the same worker left idle for as long afterwards gives
# the commits River's upkeep makes without orders (printed beside it, and
# subtracted). With pg_stat_statements on the server, the statements the
# worker ran per order are listed too. Usage:
#   scripts/bench-confirmtx.sh SHOP[,LABEL] [SHOP[,LABEL]...]
# Settings (environment): ORDERS (500), PG (postgres://postgres@127.0.0.1:5432),
# PORT (18461), PREP (--prep-time, 1s), LOADLAB (loadlab binary; built if unset).
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
ORDERS=${ORDERS:-500}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18461}
PREP=${PREP:-1s}
work=$(mktemp -d)
pids=()
dbs=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "${dbs[@]}"; do psql "$PG/postgres" -Xqc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
say() { echo "confirmtx: $*" >&2; }
if [ -z "${LOADLAB:-}" ]; then
  go build -o "$work/loadlab" ./cmd/loadlab
  LOADLAB=$work/loadlab
fi
[ $# -ge 1 ] || { echo "usage: $0 SHOP[,LABEL] [SHOP[,LABEL]...]" >&2; exit 2; }

commits() { psql "$1" -XAtc "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"; }
not_ready() { psql "$1" -XAtc "SELECT count(*) FROM orders WHERE status <> 'ready'"; }
statements() { # URL: calls of each statement on this database, "calls<TAB>query" lines
  psql "$1" -XAtF$'\t' -c "SELECT s.calls, regexp_replace(s.query, '\s+', ' ', 'g') FROM pg_stat_statements s
    JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() ORDER BY s.queryid" 2>/dev/null || true
}
has_pgss=$(psql "$PG/postgres" -XAtc "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_stat_statements'" 2>/dev/null || echo 0)

n=0
for spec in "$@"; do
  n=$((n + 1))
  shop=${spec%%,*}
  label=${spec#*,}
  [ "$label" = "$spec" ] && label=$shop
  db="confirmtx_$$_$n"
  dbs+=("$db")
  url="$PG/$db?sslmode=disable"
  psql "$PG/postgres" -Xqc "CREATE DATABASE $db" >/dev/null
  "$shop" migrate --db "$url" >"$work/migrate-$n.log" 2>&1
  "$shop" --role api --db "$url" --addr "127.0.0.1:$PORT" --admin-addr "127.0.0.1:$((PORT + 1))" --log-level error >"$work/api-$n.log" 2>&1 &
  api=$!
  pids+=("$api")
  for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" && break; sleep 0.1; done
  say "$label: placing $ORDERS orders"
  "$LOADLAB" run --scenario scripts/checkout-only.yaml --base "http://127.0.0.1:$PORT" --concurrency 4 --requests "$((ORDERS * 2))" \
    --max-errors 100% >"$work/load-$n.txt" 2>&1 || true
  kill "$api"
  wait "$api" 2>/dev/null || true
  placed=$(psql "$url" -XAtc "SELECT count(*) FROM orders")
  [ "$has_pgss" = 1 ] && psql "$url" -XAtc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null 2>&1 || true
  s0=$(statements "$url")
  c0=$(commits "$url")
  t0=$(date +%s.%N)
  "$shop" --role worker --db "$url" --addr "127.0.0.1:$((PORT + 3))" --admin-addr "127.0.0.1:$((PORT + 2))" --prep-time "$PREP" --log-level error >"$work/worker-$n.log" 2>&1 &
  worker=$!
  pids+=("$worker")
  while [ "$(not_ready "$url")" != 0 ]; do
    kill -0 "$worker" 2>/dev/null || { say "$label: the worker stopped: $(tail -2 "$work/worker-$n.log")"; exit 1; }
    sleep 0.2
  done
  t1=$(date +%s.%N)
  c1=$(commits "$url")
  s1=$(statements "$url")
  busy=$(python3 -c "print($t1 - $t0)")
  # the same worker idle for as long: River's upkeep without orders
  sleep "$busy"
  c2=$(commits "$url")
  kill "$worker"
  wait "$worker" 2>/dev/null || true
  python3 - "$label" "$placed" "$c0" "$c1" "$c2" "$busy" <<'PY'
import sys
label, placed, c0, c1, c2, busy = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6]), float(sys.argv[6])
work, idle = c1 - c0, c2 - c1
print(f"{label}: {placed} orders confirmed and ready in {busy:.1f} s: {work} commits ({work/placed:.2f} per order); "
      f"idle for as long after: {idle} commits; net {(work-idle)/placed:.2f} per order")
PY
  if [ -n "$s1" ]; then
    python3 - "$placed" <(printf '%s\n' "$s0") <(printf '%s\n' "$s1") <<'PY'
import sys
placed = int(sys.argv[1])
def load(p):
    d = {}
    for l in open(p):
        if "\t" in l:
            c, q = l.rstrip("\n").split("\t", 1)
            d[q] = d.get(q, 0) + int(c)
    return d
a, b = load(sys.argv[2]), load(sys.argv[3])
rows = sorted(((b[q] - a.get(q, 0), q) for q in b if b[q] - a.get(q, 0) > 0), reverse=True)
for calls, q in rows[:15]:
    print(f"  {calls/placed:6.2f} per order  {q[:140]}")
PY
  fi
  psql "$PG/postgres" -Xqc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
done
