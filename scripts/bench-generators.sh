#!/usr/bin/env bash
# Compares loadlab with wrk, vegeta and hey on this machine, in one run,
# against the same local target (scripts/benchtarget):
#   1. throughput: the most requests/s each generator gets from a bare
#      net/http server with a 20 KB body, and the CPU it spends doing it
#      (requests/s per core of generator CPU);
#   2. accuracy: p50 and p99 each reports against a server with a fixed
#      delay, compared with the server's own measurement of its handling;
#   3. open loop at fixed rates (loadlab and vegeta, the two open-loop
#      tools here): the rate each really sent, its latency, its CPU, and
#      whether loadlab flagged itself as saturated.
# The target and the generator are pinned to different cores when there are
# two or more. Prints markdown tables; docs/loadlab-vs-peers.md holds a run.
#
# Settings (environment): DUR seconds per run (10), CONNS connections (64),
# ROUNDS throughput rounds (2), RATE requests/s for accuracy (500),
# DELAY target delay for accuracy (10ms), OPEN_RATES requests/s for the
# open-loop runs ("5000 10000 20000 30000").
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."

DUR=${DUR:-10}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-2}
RATE=${RATE:-500}
DELAY=${DELAY:-10ms}
OPEN_RATES=${OPEN_RATES:-5000 10000 20000 30000}
PORT=${PORT:-8099}
URL="http://127.0.0.1:$PORT/"

work=$(mktemp -d)
target_pid=""
cleanup() {
  [ -n "$target_pid" ] && kill "$target_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { echo "bench: $*" >&2; }

say "building loadlab and the target"
go build -o "$work/loadlab" ./cmd/loadlab
go build -o "$work/benchtarget" ./scripts/benchtarget

if ! command -v wrk >/dev/null; then
  say "installing wrk (Debian package)"
  (apt-get install -y -qq wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)) || true
fi
HAVE_WRK=$(command -v wrk || true)
say "installing vegeta and hey from the Go module proxy"
GOBIN="$work" go install github.com/tsenart/vegeta/v12@v12.13.0 >/dev/null 2>&1 || true
GOBIN="$work" go install github.com/rakyll/hey@v0.1.4 >/dev/null 2>&1 || true
HAVE_VEGETA=$([ -x "$work/vegeta" ] && echo "$work/vegeta" || true)
HAVE_HEY=$([ -x "$work/hey" ] && echo "$work/hey" || true)

if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PIN_TARGET="taskset -c 0"
  PIN_GEN="taskset -c 1"
else
  PIN_TARGET=""
  PIN_GEN=""
fi

start_target() {
  [ -n "$target_pid" ] && kill "$target_pid" 2>/dev/null && wait "$target_pid" 2>/dev/null || true
  $PIN_TARGET "$work/benchtarget" --addr "127.0.0.1:$PORT" "$@" 2>>"$work/target.log" &
  target_pid=$!
  for _ in $(seq 50); do
    curl -s -o /dev/null "$URL" && return 0
    sleep 0.1
  done
  echo "bench: the target did not start" >&2
  exit 1
}

# timed NAME CMD...: runs CMD pinned to the generator core, recording its
# output and its wall, user and system time.
timed() {
  local name=$1
  shift
  /usr/bin/time -f "%e %U %S" -o "$work/$name.time" $PIN_GEN "$@" >"$work/$name.out" 2>"$work/$name.err" || {
    say "$name failed:"
    tail -5 "$work/$name.err" >&2
    return 1
  }
}

results="$work/results.tsv"
: >"$results"

# ---- 1. throughput ----
start_target --body-bytes 20480
say "throughput: ${ROUNDS} rounds of ${DUR}s per generator, $CONNS connections"
for round in $(seq "$ROUNDS"); do
  for gen in wrk loadlab loadlab-nethttp vegeta hey; do
    case $gen in
      wrk)
        [ -n "$HAVE_WRK" ] || continue
        timed $gen wrk -t1 -c"$CONNS" -d"${DUR}s" "$URL" || continue
        rps=$(awk '/Requests\/sec:/ {print $2}' "$work/$gen.out") ;;
      loadlab)
        timed $gen "$work/loadlab" run --concurrency "$CONNS" --duration "${DUR}s" --json "$work/$gen.json" "$URL" || continue
        rps=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['throughput_rps'])" "$work/$gen.json") ;;
      loadlab-nethttp)
        timed $gen "$work/loadlab" run --client nethttp --concurrency "$CONNS" --duration "${DUR}s" --json "$work/$gen.json" "$URL" || continue
        rps=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['throughput_rps'])" "$work/$gen.json") ;;
      vegeta)
        [ -n "$HAVE_VEGETA" ] || continue
        echo "GET $URL" >"$work/targets.txt"
        timed $gen "$HAVE_VEGETA" attack -targets "$work/targets.txt" -rate=0 -max-workers="$CONNS" -workers="$CONNS" \
          -duration="${DUR}s" -output "$work/vegeta.bin" || continue
        rps=$("$HAVE_VEGETA" report -type=json "$work/vegeta.bin" | python3 -c "import json,sys; print(json.load(sys.stdin)['throughput'])") ;;
      hey)
        [ -n "$HAVE_HEY" ] || continue
        timed $gen "$HAVE_HEY" -z "${DUR}s" -c "$CONNS" "$URL" || continue
        rps=$(awk '/Requests\/sec:/ {print $2}' "$work/$gen.out") ;;
    esac
    read -r wall user sys <"$work/$gen.time"
    printf 'throughput\t%s\t%s\t%s\t%s\t%s\n' "$gen" "$round" "$rps" "$wall" "$(python3 -c "print($user+$sys)")" >>"$results"
    say "  round $round $gen: $rps req/s"
  done
done

# ---- 2. accuracy ----
start_target --body-bytes 1024 --delay "$DELAY"
delay_ms=$(python3 -c "import re,sys; s=sys.argv[1]; m=re.fullmatch(r'([0-9.]+)(ms|s)', s); print(float(m[1])*(1000 if m[2]=='s' else 1))" "$DELAY")
# Closed-loop tools get as many connections as keep RATE going at DELAY.
conns=$(python3 -c "import math; print(max(1, math.ceil($RATE*$delay_ms/1000)))")
say "accuracy: $RATE req/s (or $conns connections) for ${DUR}s against a ${DELAY} delay"
for gen in wrk loadlab vegeta hey; do
  curl -s "${URL}__stats?reset=1" >/dev/null
  case $gen in
    wrk)
      [ -n "$HAVE_WRK" ] || continue
      timed $gen wrk -t1 -c"$conns" -d"${DUR}s" --latency "$URL" || continue
      read -r p50 p99 < <(python3 - "$work/$gen.out" <<'PY'
import re, sys
unit = {"us": 1e-3, "ms": 1, "s": 1e3}
vals = {}
for line in open(sys.argv[1]):
    m = re.match(r"\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$", line)
    if m:
        vals[m[1]] = float(m[2]) * unit[m[3]]
print(vals["50"], vals["99"])
PY
) ;;
    loadlab)
      timed $gen "$work/loadlab" run --rate "$RATE" --duration "${DUR}s" --json "$work/$gen.json" "$URL" || continue
      read -r p50 p99 < <(python3 -c "import json,sys; l=json.load(open(sys.argv[1]))['latency']; print(l['p50_ns']/1e6, l['p99_ns']/1e6)" "$work/$gen.json") ;;
    vegeta)
      [ -n "$HAVE_VEGETA" ] || continue
      echo "GET $URL" >"$work/targets.txt"
      timed $gen "$HAVE_VEGETA" attack -targets "$work/targets.txt" -rate="$RATE" -duration="${DUR}s" -output "$work/vegeta.bin" || continue
      read -r p50 p99 < <("$HAVE_VEGETA" report -type=json "$work/vegeta.bin" | python3 -c "import json,sys; l=json.load(sys.stdin)['latencies']; print(l['50th']/1e6, l['99th']/1e6)") ;;
    hey)
      [ -n "$HAVE_HEY" ] || continue
      per=$(python3 -c "print(max(1, round($RATE/$conns)))")
      timed $gen "$HAVE_HEY" -z "${DUR}s" -c "$conns" -q "$per" "$URL" || continue
      read -r p50 p99 < <(python3 - "$work/$gen.out" <<'PY'
import re, sys
vals = {}
for line in open(sys.argv[1]):
    m = re.match(r"\s+(50|99)%+ in ([0-9.]+) secs", line)
    if m:
        vals[m[1]] = float(m[2]) * 1000
print(vals["50"], vals["99"])
PY
) ;;
  esac
  read -r t50 t99 < <(curl -s "${URL}__stats" | python3 -c "import json,sys; s=json.load(sys.stdin); print(s['p50_ms'], s['p99_ms'])")
  printf 'accuracy\t%s\t%s\t%s\t%s\t%s\n' "$gen" "$p50" "$p99" "$t50" "$t99" >>"$results"
  say "  $gen: p50 $p50 ms p99 $p99 ms (server: $t50, $t99)"
done

# ---- 3. open loop at fixed rates ----
start_target --body-bytes 20480
say "open loop: ${OPEN_RATES} req/s for ${DUR}s each"
for rate in $OPEN_RATES; do
  for gen in loadlab vegeta; do
    case $gen in
      loadlab)
        timed $gen "$work/loadlab" run --rate "$rate" --duration "${DUR}s" --json "$work/$gen.json" "$URL" || continue
        read -r sent p50 p99 sat < <(python3 - "$work/$gen.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency"]
print(r["requests"] / (r["elapsed_ns"] / 1e9), l["p50_ns"] / 1e6, l["p99_ns"] / 1e6,
      ("yes: " + " / ".join(r.get("saturation_reasons") or [])).replace(" ", "_") if r["generator_saturated"] else "no")
PY
) ;;
      vegeta)
        [ -n "$HAVE_VEGETA" ] || continue
        echo "GET $URL" >"$work/targets.txt"
        timed $gen "$HAVE_VEGETA" attack -targets "$work/targets.txt" -rate="$rate" -duration="${DUR}s" -output "$work/vegeta.bin" || continue
        read -r sent p50 p99 sat < <("$HAVE_VEGETA" report -type=json "$work/vegeta.bin" |
          python3 -c "import json,sys; r=json.load(sys.stdin); l=r['latencies']; print(r['rate'], l['50th']/1e6, l['99th']/1e6, 'n/a')") ;;
    esac
    read -r wall user sys <"$work/$gen.time"
    printf 'open\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$gen" "$rate" "$sent" "$p50" "$p99" "$(python3 -c "print(($user+$sys)/$wall)")" "$sat" >>"$results"
    say "  $gen at $rate/s: sent $sent/s, p50 $p50 ms, p99 $p99 ms, saturated: $sat"
  done
done

python3 - "$results" "$DUR" "$CONNS" "$RATE" "$DELAY" "${PIN_GEN:-unpinned}" <<'PY'
import sys, statistics, collections
path, dur, conns, rate, delay, pin = sys.argv[1:]
tp = collections.defaultdict(list)
acc = {}
openrows = []
for line in open(path):
    f = line.rstrip("\n").split("\t")
    if f[0] == "throughput":
        tp[f[1]].append((float(f[3]), float(f[4]), float(f[5])))
    elif f[0] == "accuracy":
        acc[f[1]] = tuple(map(float, f[2:]))
    else:
        openrows.append(f[1:])
print(f"### Throughput: {conns} connections, {dur}s runs, 20 KB responses, generator {pin}\n")
print("| generator | req/s (mean of rounds) | generator CPU (cores) | req/s per core | per core vs wrk |")
print("| --- | ---: | ---: | ---: | ---: |")
rows = {}
for gen, runs in tp.items():
    rps = statistics.mean(r for r, _, _ in runs)
    cores = statistics.mean(c / w for _, w, c in runs)
    rows[gen] = (rps, cores, rps / cores if cores else float("nan"))
base = rows.get("wrk", (None, None, None))[2]
for gen, (rps, cores, per) in rows.items():
    rel = f"{per / base:.2f}x" if base else "n/a"
    print(f"| {gen} | {rps:,.0f} | {cores:.2f} | {per:,.0f} | {rel} |")
print(f"\n### Accuracy: {rate} req/s (closed-loop tools: enough connections for it), target delay {delay}\n")
print("| generator | p50 reported | p50 server | error | p99 reported | p99 server | error |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for gen, (p50, p99, t50, t99) in acc.items():
    e50, e99 = (p50 - t50) / t50 * 100, (p99 - t99) / t99 * 100
    print(f"| {gen} | {p50:.2f} ms | {t50:.2f} ms | {e50:+.1f}% | {p99:.2f} ms | {t99:.2f} ms | {e99:+.1f}% |")
if openrows:
    print(f"\n### Open loop at fixed rates: {dur}s runs, 20 KB responses, generator {pin}\n")
    print("| generator | rate asked | rate achieved | p50 | p99 | generator CPU (cores) | flagged itself saturated |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for gen, rate, sent, p50, p99, cores, sat in openrows:
        print(f"| {gen} | {int(rate):,} | {float(sent):,.0f} | {float(p50):.2f} ms | {float(p99):.2f} ms | {float(cores):.2f} | {sat.replace('_', ' ')} |")
PY
