#!/usr/bin/env bash
# overload.sh [OUT_DIR] measures the embedded default under overload, with
# admission control on and off side by side (docs/reliability.md). It finds
# the capacity with loadlab diagnose (the built-in shop journey, p99 50 ms,
# admission off), then for each mode (off, on) and each multiple of it
# (0.5 1 2 3 10) starts a fresh shop, offers the journey open loop at that
# rate for 20 s (60 s at 10x), then at half the capacity for 10 s to see
# how long latency takes to come back, scraping the shop's metrics before
# and after and its resident memory every half second. Prints the tables
# (scripts/overloadreport) and leaves the raw results in OUT_DIR (default:
# a temporary directory, removed). Takes about 9 minutes. CAPACITY=N skips
# the diagnosis and uses N req/s; MODES="on" and MULTS="1 3" run a subset.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=${1:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/perfscale-overload.XXXXXX")
out=${keep:-$work/out}
mkdir -p "$out"
shop_pid=
stop_shop() {
  if [[ -n "$shop_pid" ]]; then kill "$shop_pid" 2>/dev/null || true; wait "$shop_pid" 2>/dev/null || true; shop_pid=; fi
}
trap 'stop_shop; rm -rf "$work"' EXIT
go build -o "$work/loadlab" ./cmd/loadlab
go build -o "$work/shop" ./cmd/shop
go build -o "$work/report" ./scripts/overloadreport

port=18480
admin=18481
base=http://127.0.0.1:$port

# start_shop MODE: a fresh embedded shop (its own data directory), ready.
start_shop() {
  rm -rf "$work/data"
  SHOP_SESSION_RATE=0 SHOP_LOG_LEVEL=warn "$work/shop" --addr 127.0.0.1:$port --admin-addr 127.0.0.1:$admin \
    --data-dir "$work/data" --admission "$1" >>"$out/shop.log" 2>&1 &
  shop_pid=$!
  for _ in $(seq 1 300); do
    curl -fs "$base/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "overload: the shop did not become ready; see $out/shop.log" >&2
  exit 3
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "cpus: $(nproc)"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/meta.txt"

if [[ -n "${CAPACITY:-}" ]]; then
  [[ "$CAPACITY" =~ ^[1-9][0-9]*$ ]] || { echo "overload: CAPACITY must be a positive whole number of req/s, got '$CAPACITY'" >&2; exit 2; }
  echo "{\"capacity_rps\": $CAPACITY}" >"$out/capacity.json"
else
start_shop off
"$work/loadlab" diagnose --scenario shop --slo 50ms --max-concurrency 64 --step-duration 3s \
  --json "$out/capacity.json" "$base" >"$out/capacity.txt" 2>&1 || true
stop_shop
fi
capacity=$("$work/report" capacity "$out/capacity.json")
echo "capacity at p99 50 ms: $capacity req/s" >&2

for mode in ${MODES:-off on}; do
  for mult in ${MULTS:-0.5 1 2 3 10}; do
    name="$mode-$mult"
    rate=$(awk -v c="$capacity" -v m="$mult" 'BEGIN { printf "%d", c * m }')
    half=$(awk -v c="$capacity" 'BEGIN { printf "%d", c / 2 }')
    dur=20s
    [[ "$mult" == 10 ]] && dur=60s
    start_shop "$mode"
    ( while kill -0 "$shop_pid" 2>/dev/null; do awk '/VmRSS/ { print $2 }' "/proc/$shop_pid/status" 2>/dev/null || true; sleep 0.5; done ) >"$out/$name.rss" &
    sampler=$!
    curl -fs "http://127.0.0.1:$admin/metrics" >"$out/$name.m0"
    "$work/loadlab" run --scenario shop --base "$base" --rate "$rate" --duration "$dur" --timeout 10s \
      --max-errors 100% --json "$out/$name.json" >"$out/$name.txt" 2>&1 || true
    curl -fs "http://127.0.0.1:$admin/metrics" >"$out/$name.m1" || echo "the shop did not answer /metrics" >"$out/$name.m1"
    "$work/loadlab" run --scenario shop --base "$base" --rate "$half" --duration 10s --timeout 10s \
      --max-errors 100% --json "$out/$name.after.json" >"$out/$name.after.txt" 2>&1 || true
    kill -0 "$shop_pid" 2>/dev/null && echo alive >"$out/$name.alive" || echo crashed >"$out/$name.alive"
    echo "$(cut -d' ' -f1-3 /proc/loadavg)" >"$out/$name.loadavg"
    stop_shop
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    echo "$name done ($rate req/s)" >&2
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/meta.txt"
"$work/report" table "$out"
