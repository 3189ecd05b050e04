#!/usr/bin/env bash
# refusalcost.sh counts what a refused request costs the shop beside an
# answered one, in instructions (valgrind's callgrind), which stand
# whatever else the machine runs, unlike CPU time. It runs each case of
# BenchmarkLoopback (shop/httpapi: the real handler behind httpapi.Server,
# one HTTP/1.1 keep-alive connection over loopback, a client that
# allocates nothing) under callgrind twice, with N1 and N2 requests
# (default 100 and 600), GOMAXPROCS 1 as a replica under overload.sh's
# quota (and Go's asynchronous preemption off: callgrind 3.19 aborts on
# its signals); the difference over N2 - N1 is one request's
# instructions, the process's set-up (the SQLite store, its seed) counted
# in both runs cancelling out. They are the process's, the client's few
# included (it writes prepared bytes and reads the answer in place; in
# refusal-menu-new-connection, which dials a new connection for each
# request as a client does when the server closes it after a refusal,
# its dial too); the kernel's work is not counted. The *-fast cases are
# the same refusals on the fast path (shop/httpapi/fastpath.go: the
# connection handed over at the first refusal, the rest refused before
# net/http parses them). refusal-then-admitted-fast is a pair on one
# connection, as a journey's user alternates refused browsing and a
# request of a class kept: net/http refuses the menu and hands the
# connection to the fast path, which reads the next request (health,
# never shed) and hands it back to net/http; less refusal-menu and
# answer-health, it is what that round trip costs, printed as "fast-path
# round trip". Prints instructions per request for each case, the
# journey's answers weighted as in loadlab's built-in shop scenario
# (checkout left out: it is the costliest, so the ratio is conservative),
# and each refusal's share of that. A replica at ten times its capacity
# refuses nine requests for each one it answers: a refusal must cost under
# a ninth of an answer for the answers to keep any CPU
# (docs/reliability.md). CASES="refusal-menu answer-menu" runs a subset
# (the weighted figure then needs every answer-* case). Takes about 6
# minutes on a quiet machine (valgrind runs the process some 50 times
# slower).
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "refusalcost: valgrind is needed (apt-get install valgrind)" >&2; exit 3; }
n1=${N1:-100}
n2=${N2:-600}
for v in "$n1" "$n2"; do
  [[ "$v" =~ ^[1-9][0-9]{0,5}$ ]] || { echo "refusalcost: N1 and N2 must be whole numbers from 1 to 999999, got '$v'" >&2; exit 2; }
done
(( n2 > n1 )) || { echo "refusalcost: N2 ($n2) must be larger than N1 ($n1)" >&2; exit 2; }
cases=(${CASES:-refusal-menu refusal-cart-update refusal-menu-fast refusal-cart-update-fast refusal-menu-new-connection refusal-then-admitted-fast answer-health answer-menu answer-list answer-item answer-cart-update answer-cart answer-orders})
work=$(mktemp -d "${TMPDIR:-/tmp}/perfscale-refusalcost.XXXXXX")
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/httpapi.test" ./shop/httpapi

# instructions CASE N: the process's instructions for N requests of CASE.
instructions() {
  local out=$work/$1.$2.callgrind
  GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$work/httpapi.test" -test.run='^$' -test.bench="^BenchmarkLoopback\$/^$1\$" -test.benchtime="${2}x" \
    >"$work/$1.$2.log" 2>&1 || { echo "refusalcost: $1 with $2 requests failed:" >&2; tail -n 20 "$work/$1.$2.log" >&2; exit 1; }
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

declare -A per
printf '%-22s %14s\n' case instructions/request
for c in "${cases[@]}"; do
  a=$(instructions "$c" "$n1")
  b=$(instructions "$c" "$n2")
  per[$c]=$(( (b - a) / (n2 - n1) ))
  printf '%-22s %14d\n' "$c" "${per[$c]}"
done
if [[ -n "${per[refusal-then-admitted-fast]:-}" && -n "${per[refusal-menu]:-}" && -n "${per[answer-health]:-}" ]]; then
  printf '%-22s %14d\n' "fast-path round trip" $(( per[refusal-then-admitted-fast] - per[refusal-menu] - per[answer-health] ))
fi
# The built-in journey's weights (loadlab/scenario/shop.yaml), checkout
# left out.
declare -A weight=([answer-menu]=10 [answer-list]=3 [answer-item]=4 [answer-cart-update]=2 [answer-cart]=1 [answer-orders]=1)
sum=0 total=0
for c in "${!weight[@]}"; do
  [[ -n "${per[$c]:-}" ]] || { echo "(the journey's weighted answer needs every answer-* case)"; exit 0; }
  sum=$(( sum + weight[$c] * per[$c] )) total=$(( total + weight[$c] ))
done
answer=$(( sum / total ))
printf '%-22s %14d\n' "journey answer" "$answer"
for c in "${cases[@]}"; do
  [[ "$c" == refusal-* && "$c" != refusal-then-* ]] || continue
  awk -v c="$c" -v r="${per[$c]}" -v a="$answer" 'BEGIN { printf "%s / journey answer: %.3f (1/%.1f)\n", c, r / a, a / r }'
done
