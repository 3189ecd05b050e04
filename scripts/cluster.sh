#!/usr/bin/env bash
# cluster.sh runs the ordering service on this machine the way it scales
# out: N stateless API replicas and one background worker behind nginx, on
# PostgreSQL servers of the cluster's own (one, or one per shard with
# --shards S), each replica and database server optionally in a cgroup of
# its own with a CPU quota.
#
#   scripts/cluster.sh up N [--shards S] [--db-replica] [--cpu C] [--db-cpu C] [--pg-url URL] [--prometheus]
#   scripts/cluster.sh status | kill-replica K|worker | start-replica K|worker
#   scripts/cluster.sh kill-db K | start-db K | add-shard | down
#
# The work is done by the Go command cmd/cluster (scripts/cluster.sh --help
# prints its verbs and flags; docs/cluster.md describes them): this script
# builds it once into ${TMPDIR:-/tmp}/perfscale-cluster-bin-*, again only
# when a Go file of the repository is newer than the binary, and runs it
# with the same arguments. PERFSCALE_CLUSTER_BIN names a cluster binary to
# use instead.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PERFSCALE_REPO=$repo

bin=${PERFSCALE_CLUSTER_BIN:-}
if [ -z "$bin" ]; then
  dir="${TMPDIR:-/tmp}/perfscale-cluster-bin-$(printf '%s' "$repo" | cksum | cut -d' ' -f1)"
  bin=$dir/cluster
  if [ ! -x "$bin" ] || [ -n "$(find "$repo" -path "$repo/.git" -prune -o \( -name '*.go' -o -name go.mod -o -name go.sum \) -newer "$bin" -print -quit)" ]; then
    mkdir -p "$dir"
    # Built beside and renamed: clusters starting together never run a
    # half-written binary.
    tmp=$(mktemp "$dir/cluster.XXXXXX")
    (cd "$repo" && go build -o "$tmp" ./cmd/cluster) || { rm -f "$tmp"; echo "cluster: go build ./cmd/cluster failed" >&2; exit 1; }
    mv -f "$tmp" "$bin"
  fi
fi
exec "$bin" "$@"
