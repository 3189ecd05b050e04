#!/usr/bin/env bash
# Measures what synchronous(FULL) on the write connection costs: two shop
# binaries (built before and after the change) are run alternately on
# fresh data directories on the same disk, each loaded with the built-in
# "shop" journey in closed loop. Usage:
#   scripts/bench-durability.sh SHOP_BEFORE SHOP_AFTER LOADLAB [ROUNDS] [USERS] [DURATION]
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
before=$1 after=$2 loadlab=$3 rounds=${4:-3} users=${5:-16} duration=${6:-10s}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/shop-durability.XXXXXX")
trap 'rm -rf "$work"' EXIT
port=18431
for round in $(seq 1 "$rounds"); do
  for variant in before after; do
    bin=${!variant}
    dir=$work/$variant-$round
    mkdir -p "$dir"
    "$bin" --addr 127.0.0.1:$port --data-dir "$dir" --log-level error >"$dir/shop.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done
    echo "== round $round: $variant ($bin)"
    "$loadlab" run --scenario shop --base http://127.0.0.1:$port --concurrency "$users" \
      --duration "$duration" --json "$dir/result.json" | grep -E 'requests|errors|latency|^ +[0-9]'
    kill "$pid"; wait "$pid" || true
  done
done
