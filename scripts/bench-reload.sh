#!/usr/bin/env bash
# bench-reload.sh: nginx reloads during a PUT storm (docs/reliability.md).
# Starts a cluster of one replica (scripts/cluster.sh up 1, per-client
# limits off: one generator stands for many clients), makes a session,
# and for each of loadlab's clients (nethttp, fasthttp) offers
# PUT /v1/cart/items/1 open loop at RATE req/s (default 300) for 20 s
# while nginx is reloaded (SIGHUP) RELOADS times (default 30), every
# 0.5 s from +2 s. Prints loadlab's error counts per client: a connection
# error is a request nginx's old workers reset on a reused keep-alive
# connection that loadlab did not send again. LOADLAB_BEFORE=PATH runs
# another loadlab binary as well (say, one built before the retry), for
# comparison. Needs what scripts/cluster.sh needs.
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/perfscale-reload.XXXXXX")
state=$work/cluster
trap 'scripts/cluster.sh --state-dir "$state" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
go build -o "$work/loadlab" ./cmd/loadlab
rate=${RATE:-300}
reloads=${RELOADS:-30}
export PERFSCALE_CLUSTER_CLIENT_LIMITS=off SHOP_LOG_LEVEL=${SHOP_LOG_LEVEL:-warn} SHOP_SESSION_RATE=0
url=$(scripts/cluster.sh --state-dir "$state" up 1 | tail -n 1)
token=$(curl -fsS -X POST "$url/v1/sessions" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[[ -n "$token" ]] || { echo "bench-reload: no session token from $url" >&2; exit 3; }
nginx=$(cat "$state/nginx-own.pid")
echo "commit $(git rev-parse --short HEAD), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for bin in ${LOADLAB_BEFORE:+before} current; do
  loadlab=$work/loadlab
  [[ "$bin" == before ]] && loadlab=$LOADLAB_BEFORE
  for client in nethttp fasthttp; do
    ( sleep 2; for _ in $(seq 1 "$reloads"); do kill -HUP "$nginx"; sleep 0.5; done ) &
    reloader=$!
    "$loadlab" run --client "$client" --method PUT --body '{"quantity": 1}' \
      -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
      --rate "$rate" --duration 20s --max-errors 100% "$url/v1/cart/items/1" >"$work/$bin-$client.txt" 2>&1 || true
    wait "$reloader"
    echo "$bin loadlab, $client, $reloads reloads: $(grep -m1 '^  errors' "$work/$bin-$client.txt" | sed 's/^ *//')"
    grep -E '^    PUT ' "$work/$bin-$client.txt" | grep -v ' 503 ' || true
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
