#!/usr/bin/env bash
# The fault matrix of docs/reliability.md (issue 19 part 5): runs
# TestFaultMatrix (scripts/clustertest/faults_test.go) with every fault,
# then puts its table, with the load average before and after, between the
# "faults" markers of docs/reliability.md. About 6 minutes on two cores.
# FAULTS="redis reset,kill -9 worker" runs a subset (the table is written
# all the same).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp /tmp/faults.XXXXXX)
trap 'rm -f "$out"' EXIT
before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +"%Y-%m-%d %H:%M UTC")
PERFSCALE_FAULTS="${FAULTS:-all}" PERFSCALE_FAULTS_OUT="$out" \
  go test ./scripts/clustertest/ -run '^(TestFaultMatrix|TestDiskFullOnTheEmbeddedDefault)$' -count=1 -v -timeout 30m
after=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$(git rev-parse --short HEAD)
{
  echo "<!-- faults:begin (scripts/faults.sh writes this part) -->"
  echo "Run of $started at $commit; load average before $before, after $after."
  echo
  cat "$out"
  echo "<!-- faults:end -->"
} >"$out.section"
grep -q '<!-- faults:begin' docs/reliability.md || { echo "faults: docs/reliability.md has no faults markers" >&2; exit 1; }
awk -v f="$out.section" '
  BEGIN { while ((getline line < f) > 0) section = section line "\n" }
  /<!-- faults:begin/ { printf "%s", section; skip = 1 }
  !skip { print }
  /<!-- faults:end -->/ { skip = 0 }
' docs/reliability.md >"$out.doc"
mv "$out.doc" docs/reliability.md
rm -f "$out.section"
echo "faults: docs/reliability.md updated"
