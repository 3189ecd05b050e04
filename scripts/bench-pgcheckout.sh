#!/usr/bin/env bash
# Checkout on PostgreSQL against pgbench (issue 11): the service's checkout
# rate as a share of what PostgreSQL does with the same SQL and no service.
#
# One fresh database; alternating rounds of
#   service: shop --db ... --role api (no worker: the confirmation jobs wait
#            in river_job, as pgbench's do; --checkout-backpressure off,
#            or that backlog would refuse its checkouts within seconds),
#            loaded by loadlab with USERS closed-loop users on
#            scripts/checkout-only.yaml (put one item in the cart, place
#            the order, again);
#   pgbench: USERS clients running scripts/pgbench-checkout.sql, the same
#            statements in the same transactions per turn, prepared (the
#            checkout's two in one pipeline, as the service's batch).
# A rate is orders placed per second, counted in the orders table before
# and after each round, so both sides are measured the same way. With two
# or more cores the service is pinned to core 0 and the generators (loadlab,
# pgbench) to core 1; PostgreSQL runs where the system put it.
#
# Usage: scripts/bench-pgcheckout.sh [JSON-OUT]
#   e.g. DUR=5 ROUNDS=2 scripts/bench-pgcheckout.sh /tmp/pgcheckout.json
# Settings (environment): USERS (16), DUR seconds per round (10), ROUNDS (3),
# PGURL (postgres://postgres@127.0.0.1:5432), SHOP and LOADLAB prebuilt
# binaries (built here when unset).
# Exit status: 0 measured, 1 a step failed (one line says which and why),
# 2 bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "bench-pgcheckout: $*" >&2; }
fail() { say "$*"; exit 1; }
usage() { say "$*"; say "usage: scripts/bench-pgcheckout.sh [JSON-OUT] (settings USERS, DUR, ROUNDS, PGURL, SHOP, LOADLAB in the environment; see the script's head)"; exit 2; }
case ${1:-} in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  -*) usage "unknown option $1" ;;
esac
[ $# -le 1 ] || usage "one argument at most (the JSON output file), got $#"
USERS=${USERS:-16}
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-3}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
for v in USERS DUR ROUNDS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || usage "$v must be a whole number above 0, got '${!v}'"
done
out=${1:-}
if [ -n "$out" ]; then
  [ -d "$(dirname "$out")" ] || usage "no directory $(dirname "$out") for the JSON output $out"
fi

command -v pgbench >/dev/null || fail "pgbench is not installed (Debian package postgresql-client)"
command -v psql >/dev/null || fail "psql is not installed (Debian package postgresql-client)"
psql "$PGURL/postgres" -qAtc 'SELECT 1' >/dev/null 2>&1 || fail "PostgreSQL is not reachable at $PGURL"

work=$(mktemp -d)
db="shop_pgcheckout_$$"
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

SHOP=${SHOP:-}
LOADLAB=${LOADLAB:-}
if [ -z "$SHOP" ]; then go build -o "$work/shop" ./cmd/shop; SHOP=$work/shop; fi
if [ -z "$LOADLAB" ]; then go build -o "$work/loadlab" ./cmd/loadlab; LOADLAB=$work/loadlab; fi
PIN_SERVER="" PIN_GEN=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PIN_SERVER="taskset -c 0" PIN_GEN="taskset -c 1"
fi

sql() { psql "$PGURL/$db" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }
psql "$PGURL/postgres" -qc "CREATE DATABASE $db" >/dev/null
"$SHOP" migrate --db "$PGURL/$db" >/dev/null

port=$((20000 + RANDOM % 9000))
$PIN_SERVER "$SHOP" --db "$PGURL/$db" --role api --addr "127.0.0.1:$port" --log-level error \
  --drain-delay 0s --session-burst "$((USERS * 2))" --checkout-backpressure off >"$work/shop.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || fail "shop did not become ready: $(tail -3 "$work/shop.log")"

# Stock enough for every round of both sides, so no checkout is refused
# (the service reads items through its cache: stock is changed before the
# first request and never again from outside).
sql "UPDATE items SET stock = 1000000000" >/dev/null
# pgbench's shoppers: sessions first+1 .. first+USERS, numbered by the
# sessions' sequence (which need not start at 1: migration 00012 sets it
# past 1), so their ids are read back, not assumed.
sql "INSERT INTO sessions (token_hash, created_at, expires_at)
     SELECT 'pgbench-' || g, 0, 9000000000000000 FROM generate_series(1, $USERS) g" >/dev/null
read -r first last n < <(sql "SELECT min(id) - 1, max(id), count(*) FROM sessions WHERE token_hash LIKE 'pgbench-%'" | tr '|' ' ')
[ "$n" = "$USERS" ] && [ "$((last - first))" = "$USERS" ] \
  || fail "pgbench's $USERS sessions got ids $((first + 1)) to $last, not consecutive"
# An order's created_at (microseconds), one for the whole run.
now_us=$(($(date +%s) * 1000000))
orders() { sql "SELECT COUNT(*) FROM orders"; }
now() { date +%s.%N; }

rows=$work/rows
for round in $(seq 1 "$ROUNDS"); do
  o0=$(orders) t0=$(now)
  $PIN_GEN "$LOADLAB" run --scenario scripts/checkout-only.yaml --base "http://127.0.0.1:$port" \
    --concurrency "$USERS" --duration "${DUR}s" --json "$work/service-$round.json" >"$work/service-$round.txt" 2>&1 \
    || fail "loadlab failed in round $round: $(grep -m1 '^loadlab: ' "$work/service-$round.txt" || tail -1 "$work/service-$round.txt")"
  t1=$(now) o1=$(orders)
  errs=$(python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['errors']; print(sum(e.values()))" "$work/service-$round.json")
  echo "service $round $((o1 - o0)) $t0 $t1 $errs" >>"$rows"
  say "round $round service: $((o1 - o0)) orders in $(python3 -c "print(round($t1-$t0, 1))")s, $errs errors"

  o0=$(orders) t0=$(now)
  $PIN_GEN pgbench -n -M prepared -c "$USERS" -j 1 -T "$DUR" -D "first_session=$first" -D "now=$now_us" \
    -f scripts/pgbench-checkout.sql "$PGURL/$db" >"$work/pgbench-$round.log" 2>&1 \
    || fail "pgbench failed in round $round: $(grep -m3 -i error "$work/pgbench-$round.log")"
  t1=$(now) o1=$(orders)
  errs=$(awk '/number of failed transactions/{print $5; f=1} END{if(!f) print 0}' "$work/pgbench-$round.log")
  echo "pgbench $round $((o1 - o0)) $t0 $t1 $errs" >>"$rows"
  say "round $round pgbench: $((o1 - o0)) orders in $(python3 -c "print(round($t1-$t0, 1))")s, $errs failed"
done

python3 - "$rows" "$out" "$USERS" "$DUR" "$ROUNDS" <<'PY'
import json, sys
rows, out, users, dur, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
per = {}
for line in open(rows):
    side, rnd, n, t0, t1, errs = line.split()
    per.setdefault(int(rnd), {})[side] = {"orders": int(n), "seconds": float(t1) - float(t0),
                                          "rate": int(n) / (float(t1) - float(t0)), "errors": int(errs)}
result = {"users": users, "duration_s": dur, "rounds": []}
for rnd in sorted(per):
    s, p = per[rnd]["service"], per[rnd]["pgbench"]
    result["rounds"].append({"round": rnd, "service": s, "pgbench": p, "ratio": s["rate"] / p["rate"]})
svc = sum(r["service"]["rate"] for r in result["rounds"]) / len(result["rounds"])
pgb = sum(r["pgbench"]["rate"] for r in result["rounds"]) / len(result["rounds"])
result.update(service_rate=svc, pgbench_rate=pgb, ratio=svc / pgb,
              errors=sum(r["service"]["errors"] + r["pgbench"]["errors"] for r in result["rounds"]))
print("%-6s %14s %14s %7s" % ("round", "service ord/s", "pgbench ord/s", "ratio"))
for r in result["rounds"]:
    print("%-6d %14.1f %14.1f %7.2f" % (r["round"], r["service"]["rate"], r["pgbench"]["rate"], r["ratio"]))
print("%-6s %14.1f %14.1f %7.2f" % ("mean", svc, pgb, svc / pgb))
if out:
    json.dump(result, open(out, "w"), indent=1)
PY
