#!/usr/bin/env bash
# scripts/pg-replica.sh start|stop|status
#
# A real streaming read replica of the local PostgreSQL cluster (Debian's
# "main" cluster on 127.0.0.1:5432), for trying and testing --db-replica:
#
#   start   pg_basebackup of the primary into a temporary directory, started
#           as a hot standby on another port (PG_REPLICA_PORT, default the
#           first free port from 5433); prints the replica's URL last.
#           Already running: prints the URL again.
#   stop    stops the replica, removes its directory and undoes what start
#           changed on the primary. Safe to run twice.
#   status  says whether it runs, and its URL.
#
# The primary needs wal_level replica (PostgreSQL's default) and a pg_hba
# line that lets 127.0.0.1 replicate; start adds that line (marked) when it
# is missing, reloads the primary, and stop removes it again once no other
# replica made by this script (another PG_REPLICA_DIR) runs. Run as root or
# as postgres; the replica runs as the postgres user.
#
# start and stop of every replica take one lock (LOCK below) for their whole
# run: a stop that looked for other replicas while another start was still in
# pg_basebackup (no postmaster of its own yet) removed the replication line
# under it, and that replica's standby, whose WAL receiver connects only after
# it has replayed the backup's WAL, was refused ("no pg_hba.conf entry for
# replication connection") and stayed at the segment the backup ended on
# until something added the line again.
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac

PRIMARY_PORT=${PG_PRIMARY_PORT:-5432}
STATE=${PG_REPLICA_DIR:-/tmp/perfscale-pg-replica}
VERSION=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
[ -n "$VERSION" ] || { echo "pg-replica: no PostgreSQL cluster in /etc/postgresql" >&2; exit 1; }
BIN=/usr/lib/postgresql/$VERSION/bin
HBA=/etc/postgresql/$VERSION/main/pg_hba.conf
MARK="# added by perfscale scripts/pg-replica.sh (removed by its stop)"
# A physical replication slot per replica directory: without one the primary
# may recycle WAL the standby has not streamed yet (seen under heavy load:
# "requested WAL segment ... has already been removed"), and the standby
# never catches up. stop drops it, so it holds no WAL once the replica goes.
SLOT=perfscale_replica_$(printf '%s' "$STATE" | md5sum | cut -c1-12)
LOCK=${PG_REPLICA_LOCK:-/tmp/perfscale-pg-replica.lock}

# serialize holds LOCK (shared by every replica of this script) until the
# script exits. Read-only is enough for flock, so a lock file root made
# serves a run as postgres too.
serialize() {
  [ -e "$LOCK" ] || : > "$LOCK"
  chmod 0666 "$LOCK" 2>/dev/null || true
  exec 9<"$LOCK"
  flock -w 600 9 || { echo "pg-replica: another start or stop held $LOCK for 10 minutes" >&2; exit 1; }
}

# as_pg closes LOCK's descriptor for what it runs: a postmaster that
# inherited it would hold the lock for as long as the replica runs.
as_pg() {
  if [ "$(id -un)" = postgres ]; then "$@" 9<&-; else runuser -u postgres -- "$@" 9<&-; fi
}
primary_sql() { psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -Atqc "$1"; }
replica_url() { echo "postgres://postgres@127.0.0.1:$(cat "$STATE/port")/postgres?sslmode=disable"; }
running() { [ -f "$STATE/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$STATE/data" status >/dev/null 2>&1; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# other_replicas lists the postmasters of other replicas this script made
# (another PG_REPLICA_DIR, e.g. scripts/cluster.sh's): while one runs, the
# replication line stays, whoever added it.
other_replicas() {
  local pid dir
  for pid in $(pgrep -f -- "bin/postgres -D " 2>/dev/null); do
    dir=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | sed -n 's/.* -D \([^ ]*\).*/\1/p')
    [ -n "$dir" ] && [ "$dir" != "$STATE/data" ] && grep -qs "^# perfscale pg-replica" "$dir/postgresql.conf" && echo "$pid"
  done
  return 0
}

# drop_slot waits a moment for the primary's walsender of a just-stopped
# replica to let go of the slot (an active slot cannot be dropped).
drop_slot() {
  local _
  for _ in $(seq 1 50); do
    [ "$(primary_sql "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SLOT'")" = 0 ] && return 0
    primary_sql "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$SLOT' AND NOT active" >/dev/null
    sleep 0.1
  done
  echo "pg-replica: replication slot $SLOT is still in use on the primary; drop it with pg_drop_replication_slot('$SLOT')" >&2
}

hba_restore() {
  if grep -qF "$MARK" "$HBA" && [ -z "$(other_replicas)" ]; then
    # The mark and the line after it.
    sed -i "\|^$MARK\$|,+1d" "$HBA"
    primary_sql "SELECT pg_reload_conf()" >/dev/null
    echo "pg-replica: removed the replication line from $HBA" >&2
  fi
}

start() {
  if running; then
    replica_url
    return
  fi
  # A directory left by a crash: its replica is not running, start afresh.
  if [ -d "$STATE" ]; then hba_restore; rm -rf "$STATE"; fi
  # So is a slot a crashed replica of this directory left holding WAL.
  drop_slot
  case "$(primary_sql 'SHOW wal_level')" in
    replica|logical) ;;
    *) echo "pg-replica: the primary's wal_level must be replica or logical (it needs a restart to change; not done here)" >&2; exit 1 ;;
  esac
  mkdir -p "$STATE"
  chown postgres: "$STATE" 2>/dev/null || true
  chmod 700 "$STATE"
  local port=${PG_REPLICA_PORT:-}
  if [ -z "$port" ]; then
    for p in $(seq 5433 5499); do
      if port_free "$p"; then port=$p; break; fi
    done
  fi
  [ -n "$port" ] && port_free "$port" || { echo "pg-replica: port ${port:-5433..5499} is taken" >&2; exit 1; }
  echo "$port" > "$STATE/port"

  if ! grep -qE '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$HBA"; then
    printf '%s\nhost replication all 127.0.0.1/32 trust\n' "$MARK" >> "$HBA"
    primary_sql "SELECT pg_reload_conf()" >/dev/null
    echo "pg-replica: added a replication line to $HBA" >&2
  fi

  echo "pg-replica: pg_basebackup of 127.0.0.1:$PRIMARY_PORT into $STATE/data" >&2
  as_pg "$BIN/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$STATE/data" \
    --write-recovery-conf --wal-method=stream --checkpoint=fast --create-slot --slot="$SLOT"
  echo "pg-replica: base backup done; starting the standby" >&2
  # Debian keeps the cluster's configuration in /etc, outside the data
  # directory that was copied: the replica gets a small one of its own.
  as_pg tee "$STATE/data/postgresql.conf" >/dev/null <<EOF
# perfscale pg-replica (scripts/pg-replica.sh)
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$STATE'
hot_standby = on
hot_standby_feedback = on
max_connections = 100
shared_buffers = 32MB
EOF
  as_pg tee "$STATE/data/pg_hba.conf" >/dev/null <<EOF
local all all trust
host all all 127.0.0.1/32 trust
EOF
  as_pg tee "$STATE/data/pg_ident.conf" >/dev/null </dev/null
  as_pg "$BIN/pg_ctl" -D "$STATE/data" -l "$STATE/replica.log" -w -t 60 start >/dev/null
  local url
  url=$(replica_url)
  if [ "$(psql "$url" -Atqc 'SELECT pg_is_in_recovery()')" != t ]; then
    echo "pg-replica: the server on port $port is not in recovery; see $STATE/replica.log" >&2
    exit 1
  fi
  echo "pg-replica: streaming replica of 127.0.0.1:$PRIMARY_PORT on 127.0.0.1:$port" >&2
  echo "$url"
}

stop() {
  if running; then
    as_pg "$BIN/pg_ctl" -D "$STATE/data" -m fast -w stop >/dev/null
    echo "pg-replica: stopped" >&2
  fi
  drop_slot
  if [ -d "$STATE" ]; then
    hba_restore
    rm -rf "$STATE"
  fi
}

case "${1:-}" in
  start) serialize; start ;;
  stop) serialize; stop ;;
  status)
    if running; then echo "pg-replica: running"; replica_url; else echo "pg-replica: not running"; fi ;;
  *) echo "usage: scripts/pg-replica.sh start|stop|status" >&2; exit 2 ;;
esac
