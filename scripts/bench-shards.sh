#!/usr/bin/env bash
# bench-shards.sh: issue 20's table. Two `loadlab scaleout` runs of the
# built-in shop journey, one after the other, on clusters of this machine
# (scripts/cluster.sh):
#   shards    {n} API replicas of C cores and {n} shards, each its own
#             PostgreSQL server of D cores (up {n} --shards {n})
#   replicas  {n} API replicas of C cores on one PostgreSQL server of D
#             cores (the same size as one shard)
# Each count starts a fresh cluster (down, then up), in both runs alike.
# At 1 the two runs start the same system (up 1 --shards 1 is up 1), so
# their first rows are two measurements of one capacity: ROUNDS=2 runs
# them again in the other order (shards, replicas, replicas, shards), for
# four, since every efficiency rests on that row.
# The load is spread over USERS (512) simulated users (loadlab scaleout
# --users): with a user a request in flight, as before, a probe had a few
# dozen sessions and the shard that drew the most of them carried up to
# 1.4 times its share (docs/scaleout.md, "What does not scale with n").
# Environment: C (0.1), D (0.15), SLO (100ms), USERS (512), COUNTS (1,2,4), RUNS
# ("shards replicas"), ROUNDS (1; with more, round 2 runs RUNS in reverse,
# and the logs and JSON are RUN-ROUND.log, .json), OUT (a directory for the logs and JSON, default a
# new one under ${TMPDIR:-/tmp}, kept), SHOP (a shop binary to run instead
# of building ./cmd/shop). Prints the load average before and
# after each run; docs/scaleout.md says why C and D are what they are.
# Beside each run scripts/dbtimeline records every second's throttled
# quota periods of each replica and database server and the servers'
# autovacuum runs and checkpoints (RUN.timeline); the search's progress
# lines in RUN.log carry the time they were written, and each probe that
# failed is written with the seconds it ran to RUN.failed.
# Needs what scripts/cluster.sh needs.
#
# RUNS=checkout measures issue 20's other goal instead: a checkout on
# SHARDS (3) shards against one on one database, p50 at one user, in 10
# alternating rounds of N (30) checkouts each way, on databases of the
# PostgreSQL server at PGHOST/PGPORT (TestCheckoutCostOnShardsAgainstOneDatabase
# in shop/sharded; each round's load average is printed, and a run with a
# round above twice the cores is flagged, not a result).
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
if [ "${RUNS:-}" = checkout ]; then
  echo "date $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), load average before $(cut -d' ' -f1-3 /proc/loadavg)"
  SHOP_CHECKOUT_ROUNDS=${N:-30} SHOP_CHECKOUT_SHARDS=${SHARDS:-3} \
    go test ./shop/sharded/ -run '^TestCheckoutCostOnShardsAgainstOneDatabase$' -count=1 -v \
    | sed -n 's/^ *cost_test.go:[0-9]*: //p'
  echo "load average after $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0 # a failed test has ended the script already (set -e, pipefail)
fi
c=${C:-0.1}
d=${D:-0.15}
slo=${SLO:-100ms}
counts=${COUNTS:-1,2,4}
users=${USERS:-512}
case $users in
  '' | *[!0-9]*) echo "bench-shards: USERS takes a whole number (0: a user a request in flight), got '$users'" >&2; exit 2 ;;
esac
runs=${RUNS:-shards replicas}
rounds=${ROUNDS:-1}
case $rounds in
  '' | *[!0-9]* | 0) echo "bench-shards: ROUNDS takes a whole number from 1, got '$rounds'" >&2; exit 2 ;;
esac
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/perfscale-bench-shards.XXXXXX")}
mkdir -p "$out"
chmod 755 "$out"
state="$out/cluster"
watcher=
trap '[ -z "$watcher" ] || kill "$watcher" 2>/dev/null; scripts/cluster.sh --state-dir "$state" down >/dev/null 2>&1 || true' EXIT
go build -o "$out/loadlab" ./cmd/loadlab
go build -o "$out/dbtimeline" ./scripts/dbtimeline
probe=3s # each probe's length, passed to the search and to dbtimeline
if [ -n "${SHOP:-}" ]; then
  cp "$SHOP" "$out/shop"
else
  go build -o "$out/shop" ./cmd/shop
fi
echo "date $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), C=$c D=$d SLO=$slo users $users counts $counts; logs in $out"
# What the quotas take at the largest count, beside the machine's CPUs:
# the rest (nginx, the worker, Redis, NATS, loadlab) has no quota and needs
# about 0.5 ms of CPU a request (docs/scaleout.md, "Does four fit").
top=$(printf '%s\n' ${counts//,/ } | sort -n | tail -n 1)
awk -v n="$top" -v c="$c" -v d="$d" -v cpus="$(nproc)" 'BEGIN {
  q = n * (c + d); printf "quotas at %d: %d x (%s + %s) = %.2f of %d cores, %.2f left for what has none\n", n, n, c, d, q, cpus, cpus - q }'
for round in $(seq 1 "$rounds"); do
  order=$runs
  if [ $((round % 2)) = 0 ]; then
    order=$(printf '%s\n' $runs | tac | tr '\n' ' ')
  fi
  for run in $order; do
    case $run in
      shards) extra='--shards {n}' ;;
      replicas) extra='' ;;
      *) echo "bench-shards: RUNS takes shards and replicas, got '$run'" >&2; exit 2 ;;
    esac
    name=$run
    [ "$rounds" = 1 ] || name=$run-$round
    echo "== $name: load average before $(cut -d' ' -f1-3 /proc/loadavg)"
    "$out/dbtimeline" watch "$state" "$out/$name.timeline" &
    watcher=$!
    # No session rate limit: loadlab's users all come from one address.
    # Each line of the log starts with the second it was written.
    PERFSCALE_CLUSTER_SHOP="$out/shop" SHOP_SESSION_RATE=0 SHOP_LOG_LEVEL=warn "$out/loadlab" scaleout \
      --scale-cmd "scripts/cluster.sh --state-dir $state down >/dev/null 2>&1; PERFSCALE_CLUSTER_CLIENT_LIMITS=off scripts/cluster.sh --state-dir $state up {n} $extra --cpu $c --db-cpu $d" \
      --down-cmd "scripts/cluster.sh --state-dir $state down" --probe-duration "$probe" \
      --replicas "$counts" --scenario shop --users "$users" --slo "$slo" --json "$out/$name.json" 2>&1 \
      | while IFS= read -r line; do TZ=UTC printf '%(%Y-%m-%dT%H:%M:%SZ)T %s\n' -1 "$line"; done >"$out/$name.log" \
      || { kill "$watcher"; tail -n 20 "$out/$name.log" >&2; exit 1; }
    kill "$watcher"
    wait "$watcher" || true
    watcher=
    echo "== $name: load average after $(cut -d' ' -f1-3 /proc/loadavg)"
    # The table, the USL fit and any warning; not each probe.
    sed 's/^[^ ]* //' "$out/$name.log" | grep -v -e '^  [0-9]* replicas\?: ' -e '^cluster: ' -e '^http://' || true
    "$out/dbtimeline" failed "$probe" "$out/$name.timeline" <"$out/$name.log" >"$out/$name.failed"
    echo "== $name: $(grep -c '^[0-9]' "$out/$name.failed" || true) probes failed; each with its seconds (throttled periods of the second's, autovacuum runs, checkpoints) in $out/$name.failed"
  done
done
