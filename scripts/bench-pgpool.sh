#!/usr/bin/env bash
# scripts/bench-pgpool.sh: checkout throughput of shop on PostgreSQL by pool
# size (--db-max-conns), each size on a fresh database, measured with
# loadlab in closed loop (checkout-only journey, scripts/checkout.yaml).
# Sizes alternate over ROUNDS rounds so machine noise spreads over all.
#   SIZES="2 4 8 16 32" USERS=32 DURATION=10s ROUNDS=2 scripts/bench-pgpool.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"2 4 8 16 32"}
USERS=${USERS:-32}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/shop" ./cmd/shop
go build -o "$work/loadlab" ./cmd/loadlab
port=$((20000 + RANDOM % 9000))
printf '%-6s %-6s %10s %10s %10s %8s\n' round conns "req/s" "p50 ms" "p99 ms" errors
for round in $(seq 1 "$ROUNDS"); do
  for n in $SIZES; do
    db="shop_bench_pool_${n}_$$"
    psql "$PGURL/postgres" -qc "CREATE DATABASE $db" >/dev/null
    "$work/shop" migrate --db "$PGURL/$db" >/dev/null
    "$work/shop" --db "$PGURL/$db" --db-max-conns "$n" --addr "127.0.0.1:$port" --log-level error --drain-delay 0s &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    "$work/loadlab" run --scenario scripts/checkout.yaml --base "http://127.0.0.1:$port" \
      --concurrency "$USERS" --duration "$DURATION" --json "$work/r.json" >/dev/null 2>&1 || true
    python3 - "$work/r.json" "$round" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat, errs = r["latency"], r["errors"]
print("%-6s %-6s %10.1f %10.2f %10.2f %8d" % (sys.argv[2], sys.argv[3], r["throughput_rps"],
      lat["p50_ns"] / 1e6, lat["p99_ns"] / 1e6, sum(v for v in errs.values() if isinstance(v, int))))
PY
    kill "$pid"; wait "$pid" 2>/dev/null || true
    psql "$PGURL/postgres" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
  done
done
