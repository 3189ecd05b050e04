#!/usr/bin/env bash
# overload.sh [OUT_DIR] measures the embedded default under overload, with
# admission control on and off side by side (docs/reliability.md). The
# shop runs held to SHOP_CPU cores (default 0.1, GOMAXPROCS 1) in a cgroup
# of its own (scripts/cpuquota: root and the cgroup cpu controller
# needed; SHOP_CPU=0 runs it unheld), its quota enforced every
# SHOP_CPU_PERIOD (default 10ms: over the kernel's usual 100 ms, 0.1 core
# is 10 ms of CPU and then a 90 ms stall, whatever the load), so that
# loadlab, on the rest of the machine, can offer it ten times what it
# serves. The arithmetic, on a 2-core machine (AMD EPYC, the quiet run of
# 2026-12-07 08:07 UTC): the shop serves about 6,200 journey req/s per
# core (0.5 core: 3,087 at p99 50 ms), loadlab spends 50 to 115 us of CPU
# a request (0.32 core at 3,086 req/s); so 0.1 core is about 620 req/s,
# 10x about 6,200 req/s, which costs the generator at most about 0.7 core
# beside the shop's 0.1 (0.5 core: 30,900 req/s, about 3.5 cores: it did
# not fit). In-flight slots (Little's law): 1,000 slots at 6,200 req/s
# hold while an answer, refusals included, takes under 160 ms on average
# (at 3x, under 540 ms). Admission off queues whatever exceeds the
# capacity (at 3x, 1,240 more a second), so its 3x and 10x rows fill the
# slots within a second and are flagged by construction: it would take
# the excess times the 10 s timeout (55,800 slots at 10x) to offer it.
# And the shop must refuse nine requests per one it serves at 10x: a
# refusal has to cost under a ninth of a served request's CPU (about 18
# us of 162) for the shop to keep reading its requests at all.
#
# It finds the capacity with loadlab diagnose
# (the built-in shop journey, p99 50 ms, admission off), then for each mode
# (off, on) measures one user's journey for 10 s (the unloaded checkout
# p99 the 3x goal is against), and for each multiple of the capacity
# (0.5 1 2 3 10) starts a fresh shop and offers the journey open loop:
# a pool of USERS users (default: as many as in-flight slots) make their
# sessions in a warm-up (a ramp to a quarter of the capacity that sends
# one request a user: 8 x USERS / capacity seconds), then the multiple for
# 20 s (60 s at 10x). A second loadlab, started with it and silent until then,
# offers half the capacity for 10 s from the instant the overload ends, so
# the load drops without a pause, and its per-second series says how long
# latency took to come back. It scrapes the shop's metrics at the end of
# the warm-up and at the drop (with the process's user and system CPU,
# system calls and context switches from procfs: NAME.m0.proc.K and
# NAME.m1.proc.K, which the report divides by the answers between the
# scrapes), and its resident memory (procfs) every half second. Prints the tables and the goals' verdicts
# (scripts/overloadreport) and leaves the raw results in OUT_DIR (default:
# a temporary directory, removed). Takes about 10 minutes at the default
# quota (MULTS="0.5 1 3 10": about 9; the warm-ups are longer the smaller
# the capacity). CAPACITY=N skips
# the diagnosis and uses N req/s; MODES="on" and MULTS="1 3" run a subset.
# MODES names any --admission values (off, on, adaptive, split); ROUNDS=K
# repeats every multiple K times, the modes side by side in each round
# (their order reversed every other round, so a drift of the machine
# does not favour one), and the report adds the medians over the rounds:
# MODES="adaptive split" MULTS="1 3" ROUNDS=3 compares two policies (about
# 12 minutes with the diagnosis). MAX_INFLIGHT=N gives loadlab N in-flight
# slots instead of 1,000 (a user whose new session is refused waits
# Retry-After holding its slot, so refused sessions can saturate the
# generator at 2x and above; loadlab then flags the run). SECS=S and
# SECS_10X=S set the load's length (20 and 60 s), for a quick try.
# PORT=N serves the embedded shop on N and its admin on N+1 (default
# 18480), for two runs on one machine.
# TARGET=cluster measures the cluster instead (scripts/cluster.sh up
# REPLICAS, default 2, a fresh cluster per mode (so per run with ROUNDS and
# two modes) with --admission MODE on every replica, the edge cache and
# nginx's per-client limits off: one generator stands for many clients,
# and the replicas' admission control is what is measured; every replica
# restarted before each run, metrics summed and resident memory added up
# over the replicas; SHOP_CPU does not apply; about 12 minutes).
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
keep=${1:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/perfscale-overload.XXXXXX")
out=${keep:-$work/out}
mkdir -p "$out"
target=${TARGET:-embedded}
case "$target" in embedded|cluster) ;; *) echo "overload: TARGET must be embedded or cluster, got '$target'" >&2; exit 2 ;; esac
replicas=${REPLICAS:-2}
[[ "$replicas" =~ ^[1-9][0-9]?$ ]] || { echo "overload: REPLICAS must be a whole number from 1 to 99, got '$replicas'" >&2; exit 2; }
modes=(${MODES:-off on})
for mode in "${modes[@]}"; do
  case "$mode" in off|on|adaptive|split) ;; *) echo "overload: MODES takes off, on, adaptive and split, got '$mode'" >&2; exit 2 ;; esac
done
rounds=${ROUNDS:-1}
[[ "$rounds" =~ ^[1-9][0-9]?$ ]] || { echo "overload: ROUNDS must be a whole number from 1 to 99, got '$rounds'" >&2; exit 2; }
inflight=${MAX_INFLIGHT:-1000}
[[ "$inflight" =~ ^[1-9][0-9]{0,5}$ ]] || { echo "overload: MAX_INFLIGHT must be a whole number from 1 to 999999, got '$inflight'" >&2; exit 2; }
users=${USERS:-$inflight}
[[ "$users" =~ ^[1-9][0-9]{0,5}$ ]] || { echo "overload: USERS must be a whole number from 1 to 999999, got '$users'" >&2; exit 2; }
load_secs=${SECS:-20}
load_secs_10x=${SECS_10X:-60}
for v in "$load_secs" "$load_secs_10x"; do
  [[ "$v" =~ ^[1-9][0-9]{0,3}$ ]] || { echo "overload: SECS and SECS_10X must be whole numbers of seconds from 1 to 9999, got '$v'" >&2; exit 2; }
done
shop_cpu=${SHOP_CPU:-0.1}
[[ "$shop_cpu" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "overload: SHOP_CPU must be a number of cores (0: no quota), got '$shop_cpu'" >&2; exit 2; }
shop_period=${SHOP_CPU_PERIOD:-10ms}
[[ "$shop_period" =~ ^[1-9][0-9]*ms$ ]] || { echo "overload: SHOP_CPU_PERIOD must be a whole number of milliseconds from 1ms to 1000ms, such as 10ms, got '$shop_period'" >&2; exit 2; }
(( ${shop_period%ms} <= 1000 )) || { echo "overload: SHOP_CPU_PERIOD must be a whole number of milliseconds from 1ms to 1000ms, such as 10ms, got '$shop_period'" >&2; exit 2; }
[[ "$target" == cluster ]] && shop_cpu=0
quota=$(awk -v c="$shop_cpu" 'BEGIN { print (c > 0) ? "yes" : "" }')
# The shop's cgroup (under the machine's CPU hierarchy), removed at exit.
cgroup=perfscale-overload-$$
cs="scripts/cluster.sh --state-dir $work/cluster"
shop_pid=
pids=()
admins=()
cluster_mode=
stop_shop() {
  if [[ -n "$shop_pid" ]]; then kill "$shop_pid" 2>/dev/null || true; wait "$shop_pid" 2>/dev/null || true; shop_pid=; fi
}
stop_cluster() {
  if [[ -n "$cluster_mode" ]]; then $cs down >>"$out/cluster.log" 2>&1 || true; cluster_mode=; fi
}
remove_cgroup() {
  if [[ -n "$quota" && -x "$work/cpuquota" ]]; then "$work/cpuquota" remove "$cgroup" 2>/dev/null || true; fi
}
trap 'stop_shop; stop_cluster; remove_cgroup; rm -rf "$work"' EXIT
go build -o "$work/loadlab" ./cmd/loadlab
go build -o "$work/cpuquota" ./scripts/cpuquota
go build -o "$work/shop" ./cmd/shop
go build -o "$work/report" ./scripts/overloadreport

port=${PORT:-18480}
[[ "$port" =~ ^[1-9][0-9]{3,4}$ ]] && (( port < 65535 )) || { echo "overload: PORT must be a port number from 1000 to 65534, got '$port'" >&2; exit 2; }
admin=$((port + 1))
base=http://127.0.0.1:$port

# start_cluster MODE: the cluster with --admission MODE (a fresh one when
# the mode changes; else each replica restarted), its replicas' pids and
# admin addresses in pids and admins.
start_cluster() {
  export SHOP_ADMISSION=$1 SHOP_SESSION_RATE=0 SHOP_LOG_LEVEL=warn PERFSCALE_CLUSTER_CLIENT_LIMITS=off PERFSCALE_CLUSTER_EDGE_CACHE=off
  if [[ "$cluster_mode" != "$1" ]]; then
    stop_cluster
    cluster_mode=$1
    base=$($cs up "$replicas" 2>>"$out/cluster.log" | tail -n 1)
    [[ "$base" == http://* ]] || { echo "overload: cluster.sh up $replicas failed; see $out/cluster.log" >&2; exit 3; }
  else
    for i in $(seq 1 "$replicas"); do
      { $cs kill-replica "$i" && $cs start-replica "$i"; } >>"$out/cluster.log" 2>&1 || { echo "overload: could not restart replica $i; see $out/cluster.log" >&2; exit 3; }
    done
  fi
  pids=() admins=()
  local row _role pid _url adm
  while read -r row _role pid _url adm _; do
    [[ "$row" == replica-* ]] || continue
    pids+=("$pid")
    admins+=("${adm#http://}")
  done < <($cs status)
  [[ ${#pids[@]} -eq "$replicas" ]] || { echo "overload: cluster.sh status lists ${#pids[@]} replicas, want $replicas" >&2; exit 3; }
}

# start MODE: the target, fresh, ready.
start() {
  if [[ "$target" == cluster ]]; then start_cluster "$1"; else start_shop "$1"; pids=("$shop_pid"); admins=("127.0.0.1:$admin"); fi
}
stop() {
  [[ "$target" == cluster ]] || stop_shop
}
alive() {
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
}
# scrape NAME: each replica's metrics into NAME.REPLICA (the report sums
# them), and the moment into NAME.at (seconds since the epoch).
scrape() {
  local k=0
  echo "$EPOCHREALTIME" >"$1.at"
  for a in "${admins[@]}"; do
    k=$((k + 1))
    curl -fs "http://$a/metrics" >"$1.$k" || echo "the shop did not answer /metrics" >"$1.$k"
  done
  k=0
  for p in "${pids[@]}"; do
    k=$((k + 1))
    proc_counts "$p" >"$1.proc.$k"
  done
}
# proc_counts PID: the process's CPU split and its kernel crossings so far,
# one "name value" a line: user and system CPU in clock ticks (procfs
# stat), read and write system calls (procfs io: syscr, syscw, which count
# recvs and sends on sockets too), and the context switches of all its
# threads (voluntary: a thread blocked, in epoll_wait or a futex;
# involuntary: preempted, as the CPU quota's throttling does). What a
# refusal or an answer costs in the kernel as well as in Go, where
# callgrind sees only user space.
proc_counts() {
  local f
  read -r -a f <"/proc/$1/stat" 2>/dev/null || return 0
  # Fields 14 and 15 (utime, stime) counted past the command's
  # parenthesis, which holds no space for the shop.
  echo "utime_ticks ${f[13]}"
  echo "stime_ticks ${f[14]}"
  echo "clk_tck $(getconf CLK_TCK)"
  awk '$1 == "syscr:" || $1 == "syscw:" { sub(":", "", $1); print }' "/proc/$1/io" 2>/dev/null || true
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '$1 == "voluntary_ctxt_switches:" { v += $2 } $1 == "nonvoluntary_ctxt_switches:" { n += $2 } END { print "voluntary_ctxt_switches", v + 0; print "nonvoluntary_ctxt_switches", n + 0 }'
}

# start_shop MODE: a fresh embedded shop (its own data directory), ready.
start_shop() {
  rm -rf "$work/data"
  local held=()
  [[ -n "$quota" ]] && held=("$work/cpuquota" run --period "$shop_period" "$shop_cpu" "$cgroup/shop")
  SHOP_SESSION_RATE=0 SHOP_LOG_LEVEL=warn "${held[@]}" "$work/shop" --addr 127.0.0.1:$port --admin-addr 127.0.0.1:$admin \
    --data-dir "$work/data" --admission "$1" >>"$out/shop.log" 2>&1 &
  shop_pid=$!
  for _ in $(seq 1 300); do
    # Ready, and this run's shop: another run's on the same port answered
    # /readyz while this one had exited (bind: address already in use).
    kill -0 "$shop_pid" 2>/dev/null || { echo "overload: the shop exited at its start (port $port or $admin taken? PORT=N picks others); see $out/shop.log" >&2; exit 3; }
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
  echo "target: $target$([[ "$target" == cluster ]] && echo " ($replicas replicas behind nginx, edge cache and per-client limits off)")"
  echo "generator in-flight slots: $inflight; users: $users, their sessions made in a warm-up (a ramp to a quarter of the capacity that sends one request a user)"
  if [[ "$target" == embedded ]]; then
    if [[ -n "$quota" ]]; then echo "shop: held to $shop_cpu cores in a cgroup (scripts/cpuquota, period $shop_period), GOMAXPROCS $(awk -v c="$shop_cpu" 'BEGIN { n = int(c); if (n < c) n++; if (n < 1) n = 1; print n }')"; else echo "shop: no CPU quota"; fi
  fi
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/meta.txt"

if [[ -n "${CAPACITY:-}" ]]; then
  [[ "$CAPACITY" =~ ^[1-9][0-9]*$ ]] || { echo "overload: CAPACITY must be a positive whole number of req/s, got '$CAPACITY'" >&2; exit 2; }
  echo "{\"capacity_rps\": $CAPACITY}" >"$out/capacity.json"
else
start off
"$work/loadlab" diagnose --scenario shop --slo 50ms --max-concurrency 64 --step-duration 3s \
  --json "$out/capacity.json" "$base" >"$out/capacity.txt" 2>&1 || true
stop
fi
capacity=$("$work/report" capacity "$out/capacity.json")
echo "capacity at p99 50 ms: $capacity req/s" >&2

# runs: "mode mult name" lines, in the order they run.
runs=()
for round in $(seq 1 "$rounds"); do
  order=("${modes[@]}")
  if (( round % 2 == 0 )); then
    order=(); for ((i = ${#modes[@]} - 1; i >= 0; i--)); do order+=("${modes[$i]}"); done
  fi
  for mult in 1user ${MULTS:-0.5 1 2 3 10}; do
    for mode in "${order[@]}"; do
      if (( rounds == 1 )); then runs+=("$mode $mult $mode-$mult"); else runs+=("$mode $mult $mode-$mult-r$round"); fi
    done
  done
done
for run in "${runs[@]}"; do
  read -r mode mult name <<<"$run"
  start "$mode"
  if [[ "$mult" == 1user ]]; then
    # One user walking the journey: the unloaded latencies.
    "$work/loadlab" run --scenario shop --base "$base" --concurrency 1 --duration 10s --timeout 10s \
      --json "$out/$name.json" >"$out/$name.txt" 2>&1 || true
    stop
    echo "$name done (one user)" >&2
    continue
  fi
  rate=$(awk -v c="$capacity" -v m="$mult" 'BEGIN { printf "%d", c * m }')
  half=$(awk -v c="$capacity" 'BEGIN { printf "%d", c / 2 }')
  secs=$load_secs
  # The warm-up: a ramp to a quarter of the capacity that sends as many
  # requests as there are users (capacity x warm / 8), each a new user's
  # session; no journey request.
  warm=$(awk -v c="$capacity" -v u="$users" 'BEGIN { printf "%.3f", 8 * u / c }')
  quarter=$(awk -v c="$capacity" 'BEGIN { printf "%.3f", c / 4 }')
  [[ "$mult" == 10 ]] && secs=$load_secs_10x
  # Resident memory, summed over the replicas, every half second, with
  # the moment (seconds since the epoch).
  ( while alive; do
      kb=0
      for p in "${pids[@]}"; do
        while read -r key value _; do [[ "$key" == VmRSS: ]] && kb=$((kb + value)); done 2>/dev/null <"/proc/$p/status" || true
      done
      echo "$EPOCHREALTIME $kb"
      sleep 0.5
    done ) >"$out/$name.rss" &
  sampler=$!
  # The overload: a pool of USERS users, who make their sessions in the
  # warm-up, then the multiple; a user is
  # made past the pool only when every one is busy (so, by default, only
  # when every in-flight slot is: a run loadlab flags). Beside it the drop: silent for as long, then half the
  # capacity for 10 s. The metrics are scraped at the end of the warm-up
  # and at the drop (the report divides by the time between the scrapes).
  "$work/loadlab" run --scenario shop --base "$base" --users "$users" \
    --stages "${warm}s:$quarter,1ms:$rate,${secs}s:$rate" --timeout 10s \
    --max-inflight "$inflight" --max-errors 100% --json "$out/$name.json" >"$out/$name.txt" 2>&1 &
  overload=$!
  "$work/loadlab" run --scenario shop --base "$base" --stages "${warm}s:0,1ms:0,${secs}s:0,1ms:$half,10s:$half" --timeout 10s \
    --max-inflight "$inflight" --max-errors 100% --json "$out/$name.after.json" >"$out/$name.after.txt" 2>&1 &
  drop=$!
  sleep "$warm"
  scrape "$out/$name.m0"
  sleep "$secs"
  scrape "$out/$name.m1"
  wait "$overload" || true
  wait "$drop" || true
  alive && echo alive >"$out/$name.alive" || echo crashed >"$out/$name.alive"
  echo "$(cut -d' ' -f1-3 /proc/loadavg)" >"$out/$name.loadavg"
  stop
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  echo "$name done ($rate req/s)" >&2
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/meta.txt"
"$work/report" table "$out"
