#!/usr/bin/env bash
# Do confirmations keep up with checkouts? Runs a shop binary on a fresh
# data directory, loads it with USERS closed-loop users that only check out
# (scripts/checkout-only.yaml) for DURATION, and reports orders placed and
# confirmed per second during the load, the job backlog when the load
# stops, and how long the worker then takes to drain it. Usage:
#   scripts/bench-confirmations.sh SHOP LOADLAB [USERS] [DURATION] [extra shop flags...]
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
shop=$1 loadlab=$2 users=${3:-32} duration=${4:-20s}
shift 4 || shift $#
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/shop-confirm.XXXXXX")
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=18441 admin=18442
"$shop" --addr 127.0.0.1:$port --admin-addr 127.0.0.1:$admin --data-dir "$work" --log-level error "$@" >"$work/shop.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
counts() { # orders placed so far, mails sent so far
  python3 - "$work/shop.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=30)
print(db.execute("SELECT COUNT(*) FROM orders").fetchone()[0], db.execute("SELECT COUNT(*) FROM mail_outbox").fetchone()[0])
PY
}
backlog() { curl -s http://127.0.0.1:$admin/metrics | awk '/^shop_jobs_waiting /{w=$2} /^shop_jobs_oldest_waiting_seconds /{o=$2} END{print w, o}'; }
read -r o0 m0 < <(counts)
t0=$(date +%s.%N)
"$loadlab" run --scenario "$here/checkout-only.yaml" --base http://127.0.0.1:$port --concurrency "$users" --duration "$duration" \
  | grep -E 'requests|errors'
t1=$(date +%s.%N)
read -r o1 m1 < <(counts)
read -r waiting oldest < <(backlog)
awk -v o=$((o1-o0)) -v m=$((m1-m0)) -v t0="$t0" -v t1="$t1" 'BEGIN{d=t1-t0; printf "  during load  %.1fs: %d orders placed (%.0f/s), %d confirmed (%.0f/s)\n", d, o, o/d, m, m/d}'
echo "  at the end   backlog $waiting jobs waiting, oldest waited ${oldest}s"
start=$(date +%s.%N)
while :; do
  read -r waiting _ < <(backlog)
  [ "${waiting%.*}" = 0 ] && break
  sleep 0.5
done
read -r o2 m2 < <(counts)
awk -v s="$start" -v e="$(date +%s.%N)" -v n=$((m2-m1)) 'BEGIN{printf "  drained      in %.1fs after the load (%d more confirmed)\n", e-s, n}'
