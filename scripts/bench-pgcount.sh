#!/usr/bin/env bash
# Counts the instructions PostgreSQL spends on the service's cart change and
# checkout (scripts/pgbench-checkout.sql), a count that does not depend on
# the machine's load (perf's instruction counter is not available on every
# machine; callgrind is): docs/postgres.md, "The two levers counted".
#
# For each binary (the working tree's `shop`, and with a revision that
# revision's, built from `git archive`): a PostgreSQL 15 server of its own
# (initdb in a temporary directory, autovacuum off, shared_buffers 128MB),
# the schema by that binary's `shop migrate`, its catalog by one start of
# `shop --role api`; then ROUNDS times: the server restarted under
# `valgrind --tool=callgrind --trace-children=yes`, TURNS turns of
# scripts/pgbench-checkout.sql (that revision's) on one pgbench client (one backend), the
# server stopped. A turn's count is that backend's instructions, less the
# postmaster's at the fork (a forked child's count starts from its
# parent's), over TURNS; the connection's start is in it.
#
# Usage: scripts/bench-pgcount.sh [BEFORE-REVISION]
# Settings (environment): TURNS (200), ROUNDS (2), PORT (55437).
# Needs PostgreSQL 15's server binaries (/usr/lib/postgresql/15/bin),
# pgbench and psql, valgrind, and a user postgres to run the server as
# (initdb refuses root). Takes about 2 minutes a round on two busy cores.
# Exit status: 0 counted, 1 a step failed (one line says which).
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
TURNS=${TURNS:-200}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-55437}
BIN=/usr/lib/postgresql/15/bin
say() { echo "bench-pgcount: $*" >&2; }
fail() { say "$*"; exit 1; }
for v in TURNS ROUNDS PORT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || fail "$v must be a whole number above 0, got '${!v}'"
done
[ -x "$BIN/postgres" ] || fail "no PostgreSQL 15 server binaries in $BIN (Debian package postgresql-15)"
for c in pgbench psql valgrind runuser; do command -v "$c" >/dev/null || fail "$c is missing"; done
id postgres >/dev/null 2>&1 || fail "no user postgres to run the server as"

work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  [ ! -f "$work/data/postmaster.pid" ] || runuser -u postgres -- "$BIN/pg_ctl" -D "$work/data" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
URL="postgres://postgres@127.0.0.1:$PORT"

say "building"
mkdir -p "$work/after"
go build -o "$work/after/shop" ./cmd/shop
binaries=(after)
if [ -n "${1:-}" ]; then
  mkdir -p "$work/src-before" "$work/before"
  git archive "$1" | tar -x -C "$work/src-before"
  (cd "$work/src-before" && go build -o "$work/before/shop" ./cmd/shop)
  binaries=(before after)
fi

up() { # [valgrind command]
  runuser -u postgres -- bash -c "$* $BIN/postgres -D $work/data -p $PORT -k $work/sock -c listen_addresses=127.0.0.1 \
    -c autovacuum=off -c shared_buffers=128MB -c max_connections=20 >>$work/pg.log 2>&1 &"
  for _ in $(seq 1 600); do
    psql "$URL/postgres" -qAtXc 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail "the server did not start: $(tail -2 "$work/pg.log")"
}
down() { runuser -u postgres -- "$BIN/pg_ctl" -D "$work/data" stop -m fast >/dev/null; }
sql() { psql "$URL/shop" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }

printf '%-8s %5s %22s\n' binary round "instructions a turn"
for b in "${binaries[@]}"; do
  rm -rf "$work/data" "$work/cg"
  mkdir -p "$work/data" "$work/cg" "$work/sock"
  touch "$work/pg.log"
  chown postgres "$work/data" "$work/cg" "$work/sock" "$work/pg.log"
  runuser -u postgres -- "$BIN/initdb" -D "$work/data" -U postgres --auth=trust >/dev/null
  up
  psql "$URL/postgres" -qXc "CREATE DATABASE shop" >/dev/null
  "$work/$b/shop" migrate --db "$URL/shop" >/dev/null || fail "$b: shop migrate failed"
  api_port=$((20000 + RANDOM % 9000))
  "$work/$b/shop" --db "$URL/shop" --role api --addr "127.0.0.1:$api_port" --admin-addr 127.0.0.1:0 --log-level error >"$work/api.log" 2>&1 &
  api=$!
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$api_port/readyz" && break
    kill -0 "$api" 2>/dev/null || fail "$b: the service did not start: $(tail -1 "$work/api.log")"
    sleep 0.2
  done
  kill "$api"
  wait "$api" || true
  sql "UPDATE items SET stock = 1000000000" >/dev/null
  sql "INSERT INTO sessions (token_hash, created_at, expires_at) VALUES ('pgcount', 0, 9000000000000000)" >/dev/null
  first=$(sql "SELECT id - 1 FROM sessions WHERE token_hash = 'pgcount'")
  now_us=$(($(date +%s) * 1000000))
  down
  # Each binary's own revision of the script (it copies that revision's
  # statements).
  script=scripts/pgbench-checkout.sql
  [ "$b" = after ] || script=$work/src-before/scripts/pgbench-checkout.sql
  for r in $(seq 1 "$ROUNDS"); do
    rm -f "$work"/cg/*
    up "valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=$work/cg/cg.%p"
    pgbench -n -M prepared -c 1 -t "$TURNS" -D "first_session=$first" -D "now=$now_us" \
      -f "$script" "$URL/shop" >"$work/pgbench.log" 2>&1 \
      || fail "$b: pgbench failed: $(grep -m1 -i error "$work/pgbench.log")"
    grep -q "number of failed transactions: 0 " "$work/pgbench.log" || fail "$b: pgbench had failed transactions"
    down
    # The pgbench backend is the largest child; the postmaster's count at
    # the fork is the smallest child's (a process that did next to nothing).
    counts=$(grep -h -m1 '^summary:' "$work"/cg/cg.* | cut -d' ' -f2 | sort -n)
    small=$(head -1 <<<"$counts")
    big=$(tail -1 <<<"$counts")
    printf '%-8s %5d %22d\n' "$b" "$r" "$(((big - small) / TURNS))"
  done
done
