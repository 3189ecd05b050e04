#!/usr/bin/env bash
# bench-gomaxprocs.sh [ROUNDS] measures what GOMAXPROCS does to an API
# replica held to 0.25 cores: two clusters side by side (scripts/cluster.sh
# up 1 --cpu 0.25), one with the supervisor's GOMAXPROCS=1, one with
# GOMAXPROCS=2 (Go's own default under a quota below 2 cores), each loaded
# in turn with the built-in shop journey straight at its replica (not
# through nginx), 8 users, DUR seconds (default 10), ROUNDS times each
# (default 3). Prints each run's throughput and p99, the replica's
# throttled share of quota periods, and the load average; then the
# cluster's own PostgreSQL server's memory (PSS, its backends included) and
# CPU per request. Needs what scripts/cluster.sh needs.
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
rounds=${1:-3}
dur=${DUR:-10}
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "bench-gomaxprocs: ROUNDS must be a positive whole number, got '$rounds'" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/perfscale-bench-gomaxprocs.XXXXXX")
chmod 755 "$work"
trap 'for p in 1 2; do scripts/cluster.sh --state-dir "$work/p$p" down >/dev/null 2>&1 || true; done; rm -rf "$work"' EXIT
go build -o "$work/loadlab" ./cmd/loadlab
go build -o "$work/shop" ./cmd/shop
go build -o "$work/benchprobe" ./scripts/benchprobe

row() { scripts/cluster.sh --state-dir "$1" status | awk -v n="$2" '$1 == n'; }
for p in 1 2; do
  # No session rate limit: loadlab's users all come from one address.
  env GOMAXPROCS=$p PERFSCALE_CLUSTER_SHOP="$work/shop" SHOP_SESSION_RATE=0 SHOP_LOG_LEVEL=warn \
    scripts/cluster.sh --state-dir "$work/p$p" up 1 --cpu 0.25 >/dev/null 2>"$work/up$p.log" \
    || { cat "$work/up$p.log" >&2; exit 1; }
done
# The supervisor sets GOMAXPROCS only when the environment does not: the
# first cluster's replica gets it from the environment too, so both are
# set the same way.
throttled() { # cgroup -> "nr_periods nr_throttled"
  awk '$1 == "nr_periods" { p = $2 } $1 == "nr_throttled" { t = $2 } END { print p, t }' "$1/cpu.stat"
}
echo "date $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)"
printf '%-6s %-10s %10s %9s %10s %-9s %s\n' round GOMAXPROCS 'req/s' 'p99 ms' throttled saturated 'load average'
declare -A sum=() n=()
for r in $(seq 1 "$rounds"); do
  for p in 1 2; do
    url=$(row "$work/p$p" replica-1 | awk '{ print $4 }')
    cg=$(python3 -c "import json; print(json.load(open('$work/p$p/replica-1.proc.json'))['cgroup'])")
    read -r p0 t0 < <(throttled "$cg")
    "$work/loadlab" run --scenario shop --base "$url" --concurrency 8 --duration "${dur}s" --json "$work/run.json" >/dev/null 2>&1 || true
    read -r p1 t1 < <(throttled "$cg")
    # saturated: loadlab's own flag that the generator, not the replica,
    # may have set the pace (such a run is not counted).
    read -r rps p99 sat < <(python3 -c "import json; d=json.load(open('$work/run.json')); print('%.1f %.1f %s' % (d['throughput_rps'], d['latency']['p99_ns']/1e6, 'yes' if d.get('generator_saturated') else 'no'))")
    share=$(python3 -c "print('%.0f%%' % (100 * ($t1 - $t0) / max(1, $p1 - $p0)))")
    printf '%-6s %-10s %10s %9s %10s %-9s %s\n' "$r" "$p" "$rps" "$p99" "$share" "$sat" "$(cut -d' ' -f1-3 /proc/loadavg)"
    if [ "$sat" = no ]; then
      sum[$p]=$(python3 -c "print(${sum[$p]:-0} + $rps)")
      n[$p]=$((${n[$p]:-0} + 1))
    fi
  done
done
for p in 1 2; do echo "GOMAXPROCS=$p: mean $(python3 -c "print('%.1f' % (${sum[$p]:-0} / max(1, ${n[$p]:-0})))") req/s over ${n[$p]:-0} unsaturated runs"; done

# The cluster's own PostgreSQL server: memory after the runs and CPU per
# journey request, one more run on the first cluster.
pg=$(row "$work/p1" db-1 | awk '{ print $3 }')
pss() { # pid -> PSS in MiB of it and its children
  local total=0 kid
  for kid in $1 $(pgrep -P "$1"); do
    total=$((total + $(awk '/^Pss:/ { print $2 }' "/proc/$kid/smaps_rollup" 2>/dev/null || echo 0)))
  done
  echo "$((total / 1024))"
}
url=$(row "$work/p1" replica-1 | awk '{ print $4 }')
c0=$("$work/benchprobe" cpu "$pg")
"$work/loadlab" run --scenario shop --base "$url" --concurrency 8 --duration "${dur}s" --json "$work/run.json" >/dev/null 2>&1 || true
c1=$("$work/benchprobe" cpu "$pg")
reqs=$(python3 -c "import json; print(json.load(open('$work/run.json'))['requests'])")
echo "own PostgreSQL server (db-1, pid $pg): $(pss "$pg") MiB PSS with its $(pgrep -c -P "$pg") children after the runs; $(python3 -c "print('%.0f' % (1e6 * ($c1 - $c0) / max(1, $reqs)))") µs CPU per journey request over $reqs requests; load average $(cut -d' ' -f1-3 /proc/loadavg)"
