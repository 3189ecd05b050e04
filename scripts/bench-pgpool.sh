#!/usr/bin/env bash
# scripts/bench-pgpool.sh: checkout throughput of shop on PostgreSQL by pool
# size (--db-max-conns), measured with loadlab in closed loop on a
# checkout-only journey (scripts/checkout.yaml). The sizes take turns in
# short windows over many rounds, on one database, and the summary is the
# median per size: other work on a shared machine comes and goes over tens
# of seconds, so each size sees the same mix of it.
#   SIZES="2 4 8 16 32" USERS=32 WINDOW=3s ROUNDS=8 scripts/bench-pgpool.sh
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"2 4 8 16 32"}
USERS=${USERS:-32}
WINDOW=${WINDOW:-3s}
ROUNDS=${ROUNDS:-8}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
work=$(mktemp -d)
db="shop_bench_pool_$$"
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/shop" ./cmd/shop
go build -o "$work/loadlab" ./cmd/loadlab
psql "$PGURL/postgres" -qc "CREATE DATABASE $db" >/dev/null
"$work/shop" migrate --db "$PGURL/$db" >/dev/null
port=$((20000 + RANDOM % 9000))
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $USERS users, $WINDOW windows, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
  for n in $SIZES; do
    "$work/shop" --db "$PGURL/$db" --db-max-conns "$n" --addr "127.0.0.1:$port" --log-level error --drain-delay 0s &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    "$work/loadlab" run --scenario scripts/checkout.yaml --base "http://127.0.0.1:$port" \
      --concurrency "$USERS" --duration "$WINDOW" --json "$work/r.json" >/dev/null 2>&1 || true
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    python3 - "$work/r.json" "$n" >> "$work/rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat, errs = r["latency"], r["errors"]
print(sys.argv[2], r["throughput_rps"], lat["p50_ns"] / 1e6, lat["p99_ns"] / 1e6, sum(errs.values()))
PY
  done
done
echo "# $(date -u +%FT%TZ) load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work/rows" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    n, rps, p50, p99, errs = line.split()
    rows.setdefault(int(n), []).append((float(rps), float(p50), float(p99), int(errs)))
print("%-6s %8s %14s %10s %10s %7s" % ("conns", "windows", "median req/s", "min-max", "median p99", "errors"))
for n in sorted(rows):
    rs = rows[n]
    print("%-6d %8d %14.1f %10s %9.0fms %7d" % (n, len(rs), statistics.median(r[0] for r in rs),
          "%.0f-%.0f" % (min(r[0] for r in rs), max(r[0] for r in rs)),
          statistics.median(r[2] for r in rs), sum(r[3] for r in rs)))
PY
