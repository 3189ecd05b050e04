#!/usr/bin/env bash
# scripts/bench-partitions.sh: does an order's cost stay flat as the orders
# grow? A checkout and a "my orders" page (p50, p99, rows read per
# operation) on databases of SIZES orders, taking turns in one run
# (shop/postgres TestOrderGrowth; docs/postgres.md "Orders partitioned by
# month"). Each size's database, shop_growth_<size> on the test server, is
# generated with set-based SQL over MONTHS months (10 M orders: about 25
# minutes on a loaded 2-core machine, several GB) and dropped at the end:
# a database that size on a shared server slows every test that copies
# the server (the replica tests' pg_basebackup). KEEP=1 keeps them for a
# later run, which then measures without generating. On a server that
# loads pg_stat_statements with track_io_timing on (the cluster's own), it
# also writes the page's time in the server and the part spent reading
# blocks from outside shared buffers.
#   SIZES=100000,10000000 MONTHS=12 ROUNDS=6 scripts/bench-partitions.sh
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
SIZES=${SIZES:-100000,10000000}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
if [ "${KEEP:-0}" != 1 ]; then
  trap 'for n in ${SIZES//,/ }; do psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS shop_growth_$n WITH (FORCE)" >/dev/null; done' EXIT
fi
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
SHOP_TEST_POSTGRES_URL="$PGURL/postgres" SHOP_GROWTH_SIZES=$SIZES SHOP_GROWTH_MONTHS=${MONTHS:-12} SHOP_GROWTH_ROUNDS=${ROUNDS:-6} \
  go test ./shop/postgres/ -run '^TestOrderGrowth$' -count=1 -v -timeout 4h | grep -E 'growth_test|^(ok|FAIL|---)'
