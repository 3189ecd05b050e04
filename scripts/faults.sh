#!/usr/bin/env bash
# The fault matrix of docs/reliability.md (issue 19 part 5): runs
# TestFaultMatrix (scripts/clustertest/faults_test.go) with every fault,
# then puts its table, with the load average before and after, between the
# "faults" markers of docs/reliability.md. About 9 minutes on two cores.
# FAULTS="redis reset,kill -9 worker" runs a subset (the table is written
# all the same).
# --shards S runs it on a cluster of S shards instead (cluster.sh up 2
# --shards S, a --pg-url per shard): each shard's PostgreSQL, Redis and
# NATS behind Toxiproxy, the toxics on shard 1 only, kill -9 of each
# shard's server, a replica, the worker, Redis and NATS, an nginx reload;
# no disk full row; each row also counts every shard's sessions' tries
# apart; then add-shard (2 shards to 3) is killed with SIGKILL after each
# of its steps in turn and run again under a storm (FAULTS="add-shard
# killed" runs that alone). Its table goes between the "faults-shards"
# markers.
set -euo pipefail
cd "$(dirname "$0")/.."
shards=1
case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  --shards)
    [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "faults: --shards wants a number of shards, 1 or more" >&2; exit 2; }
    shards=$2 ;;
  *) echo "faults: unknown argument ${1}; usage: scripts/faults.sh [--shards S]" >&2; exit 2 ;;
esac
marker=faults tests='^(TestFaultMatrix|TestDiskFullOnTheEmbeddedDefault)$'
if (( shards > 1 )); then
  marker=faults-shards tests='^(TestFaultMatrix|TestAddShardKilledAtEachStepAndRunAgainLosesNoOrder)$'
fi
out=$(mktemp /tmp/faults.XXXXXX)
trap 'rm -f "$out"' EXIT
before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +"%Y-%m-%d %H:%M UTC")
# The commit tested: taken before the run, which the tree's HEAD may
# outlive.
commit=$(git rev-parse --short HEAD)
PERFSCALE_FAULTS="${FAULTS:-all}" PERFSCALE_FAULTS_OUT="$out" PERFSCALE_FAULTS_SHARDS="$shards" \
  go test ./scripts/clustertest/ -run "$tests" -count=1 -v -timeout 30m
after=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "<!-- $marker:begin (scripts/faults.sh writes this part) -->"
  echo "Run of $started at $commit; load average before $before, after $after."
  echo
  cat "$out"
  echo "<!-- $marker:end -->"
} >"$out.section"
grep -q "<!-- $marker:begin" docs/reliability.md || { echo "faults: docs/reliability.md has no $marker markers" >&2; exit 1; }
awk -v f="$out.section" -v begin="<!-- $marker:begin" -v end="<!-- $marker:end -->" '
  BEGIN { while ((getline line < f) > 0) section = section line "\n" }
  index($0, begin) == 1 { printf "%s", section; skip = 1 }
  !skip { print }
  index($0, end) == 1 { skip = 0 }
' docs/reliability.md >"$out.doc"
mv "$out.doc" docs/reliability.md
rm -f "$out.section"
echo "faults: docs/reliability.md updated"
