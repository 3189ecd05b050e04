#!/usr/bin/env bash
# bench-drain.sh [ROUNDS] measures what a graceful stop of one replica costs
# the clients of a cluster: the built-in shop scenario at 300 req/s through
# nginx to 2 replicas (scripts/cluster.sh), replica 1 sent SIGTERM 4 s into
# a 12 s run, with --drain-delay 0s and 5s alternately, ROUNDS times each
# (default 4). Prints each run's requests and errors, and the failed
# requests nginx logged. Needs what scripts/cluster.sh needs.
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
rounds=${1:-4}
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "bench-drain: ROUNDS must be a positive whole number, got '$rounds'" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/perfscale-bench-drain.XXXXXX")
state="$work/cluster"
trap 'scripts/cluster.sh --state-dir "$state" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
go build -o "$work/loadlab" ./cmd/loadlab
go build -o "$work/shop" ./cmd/shop

for round in $(seq 1 "$rounds"); do
  for delay in 0s 5s; do
    # No session rate limit: loadlab's users all come from one address.
    url=$(PERFSCALE_CLUSTER_SHOP="$work/shop" SHOP_DRAIN_DELAY=$delay SHOP_SESSION_RATE=0 SHOP_LOG_LEVEL=warn \
      scripts/cluster.sh --state-dir "$state" up 2 2>/dev/null | tail -n 1)
    "$work/loadlab" run --scenario shop --base "$url" --rate 300 --duration 12s >"$work/run.txt" 2>&1 &
    load=$!
    sleep 4
    pid=$(scripts/cluster.sh --state-dir "$state" status | awk '$1 == "replica-1" { print $3 }')
    kill -TERM "$pid"
    wait "$load" || true
    echo "drain-delay $delay, round $round: $(grep -E '^ +(requests|errors)' "$work/run.txt" | tr -s ' ' | tr '\n' ';')"
    grep -E '" 5[0-9][0-9] ' "$state/nginx-access.log" | awk '{ print "  ", $4, $5, $7 }' | sort | uniq -c || true
    scripts/cluster.sh --state-dir "$state" down >/dev/null
  done
done
