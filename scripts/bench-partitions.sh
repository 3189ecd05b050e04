#!/usr/bin/env bash
# scripts/bench-partitions.sh: does an order's cost stay flat as the orders
# grow? A checkout and a "my orders" page (p50, p99, rows read per
# operation) on databases of SIZES orders, taking turns in one run
# (shop/postgres TestOrderGrowth; docs/postgres.md "Orders partitioned by
# month"). Each size's database, shop_growth_<size> on the test server, is
# generated once with set-based SQL over MONTHS months and kept: 10 M
# orders take about half an hour on a loaded 2-core machine and 8 GB.
# Drop them with: psql -c 'DROP DATABASE shop_growth_<size>'.
#   SIZES=100000,10000000 MONTHS=12 ROUNDS=6 scripts/bench-partitions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
SHOP_GROWTH_SIZES=${SIZES:-100000,10000000} SHOP_GROWTH_MONTHS=${MONTHS:-12} SHOP_GROWTH_ROUNDS=${ROUNDS:-6} \
  go test ./shop/postgres/ -run '^TestOrderGrowth$' -count=1 -v -timeout 4h | grep -E 'growth_test|^(ok|FAIL|---)'
