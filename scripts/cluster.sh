#!/usr/bin/env bash
# cluster.sh runs the ordering service on this machine the way it scales out:
# N stateless API replicas and one background worker on a fresh PostgreSQL
# database, behind nginx, each replica optionally in a cgroup of its own
# with a CPU quota.
#
#   scripts/cluster.sh up N [--db-replica] [--cpu C]   start, or rescale a running cluster to N replicas
#                                                      (of C cores); the last line printed is the URL
#   scripts/cluster.sh status                          what runs: pids, ports, quotas, alive or not
#   scripts/cluster.sh kill-replica K|worker           SIGKILL API replica K (1..N) or the worker
#   scripts/cluster.sh start-replica K|worker          start a stopped one again on its old port
#   scripts/cluster.sh down                            stop what up started, drop the database
#
# Every command takes --state-dir DIR (or PERFSCALE_CLUSTER_DIR); the
# default is ${TMPDIR:-/tmp}/perfscale-cluster, so clusters in different
# state directories run side by side. The replicas and the worker inherit
# this script's environment (SHOP_ADMIN_TOKEN, SHOP_PREP_TIME, ...), as a
# single process would; PGHOST, PGPORT and PGUSER select the PostgreSQL
# server (default 127.0.0.1, 5432, postgres); PERFSCALE_CLUSTER_SHOP names a
# shop binary to use instead of building one.
#
# Processes are stopped by the pids up recorded, checked against their
# start time so a recycled pid is never signalled; never by name.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prog=cluster

die() { echo "$prog: $*" >&2; exit 1; }
usage_error() { echo "$prog: $*" >&2; echo "usage: scripts/cluster.sh [--state-dir DIR] up N [--db-replica] [--cpu C] | status | kill-replica K | start-replica K | down" >&2; exit 2; }
log() { echo "$prog: $*" >&2; }

# --- arguments ---------------------------------------------------------------

state=${PERFSCALE_CLUSTER_DIR:-${TMPDIR:-/tmp}/perfscale-cluster}
cmd="" ; arg="" ; db_replica=false ; cpu=""
while [ $# -gt 0 ]; do
  case "$1" in
    --state-dir) [ $# -ge 2 ] && [ -n "$2" ] || usage_error "--state-dir needs a directory"; state=$2; shift 2 ;;
    --state-dir=*) state=${1#*=}; [ -n "$state" ] || usage_error "--state-dir needs a directory"; shift ;;
    --db-replica) db_replica=true; shift ;;
    --cpu) [ $# -ge 2 ] || usage_error "--cpu needs a number of cores, such as 0.5"; cpu=$2; shift 2 ;;
    --cpu=*) cpu=${1#*=}; shift ;;
    -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) usage_error "unknown option $1" ;;
    *)
      if [ -z "$cmd" ]; then cmd=$1
      elif [ -z "$arg" ]; then arg=$1
      else usage_error "unexpected argument $1"
      fi
      shift ;;
  esac
done
[ -n "$cmd" ] || usage_error "no command given"
case "$cmd" in
  up)
    [[ "$arg" =~ ^[0-9]+$ ]] && [ "$arg" -ge 1 ] && [ "$arg" -le 64 ] \
      || usage_error "up needs the number of API replicas, a whole number from 1 to 64, got '${arg}'"
    if [ -n "$cpu" ]; then
      [[ "$cpu" =~ ^[0-9]*\.?[0-9]+$ ]] || usage_error "--cpu must be a number of cores such as 0.25 or 1, got '$cpu'"
      # the quota in microseconds per 100 ms period; at least 1 ms (the kernel's minimum)
      quota_us=$(awk -v c="$cpu" 'BEGIN { printf "%d", c * 100000 + 0.5 }')
      [ "$quota_us" -ge 1000 ] || usage_error "--cpu must be at least 0.01 cores, got '$cpu'"
    fi ;;
  kill-replica|start-replica)
    [[ "$arg" =~ ^([0-9]+|worker)$ ]] || usage_error "$cmd needs a replica number (1..N) or 'worker', got '${arg}'"
    { [ -z "$cpu" ] && [ "$db_replica" = false ]; } || usage_error "--cpu and --db-replica belong to up" ;;
  status|down)
    [ -z "$arg" ] || usage_error "$cmd takes no argument, got '$arg'"
    { [ -z "$cpu" ] && [ "$db_replica" = false ]; } || usage_error "--cpu and --db-replica belong to up" ;;
  *) usage_error "unknown command '$cmd'" ;;
esac

# --- process bookkeeping -------------------------------------------------------
# Each process has state/NAME.pid holding "PID STARTTIME": the start time
# (field 22 of /proc/PID/stat) tells the recorded process from a later one
# that got the same pid.

starttime() { # pid -> start time in clock ticks, empty if no such process
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }           # the command name may hold spaces: cut after it
  set -- $stat
  case $1 in Z|X) return 0 ;; esac # a zombie is dead, whether reaped yet or not
  echo "${20}"
}

record() { # name pid
  local t
  t=$(starttime "$2")
  [ -n "$t" ] || die "$1 (pid $2) exited at once; see $state/$1.log"
  echo "$2 $t" >"$state/$1.pid"
}

recorded_pid() { # name -> pid if it still runs as recorded, else nothing
  local pid t
  [ -f "$state/$1.pid" ] || return 0
  read -r pid t <"$state/$1.pid" || return 0
  [ -n "$pid" ] && [ "$(starttime "$pid")" = "$t" ] && echo "$pid"
  return 0
}

stop_process() { # name: SIGTERM, repeated every half second (a second one
  # cuts a replica's drain delay short), SIGKILL after 30 s
  local name=$1 pid i
  pid=$(recorded_pid "$name")
  [ -n "$pid" ] || return 0
  for i in $(seq 1 300); do # the service's shutdown timeout is 15 s
    [ $((i % 5)) = 1 ] && { kill -TERM "$pid" 2>/dev/null || true; }
    [ -n "$(recorded_pid "$name")" ] || return 0
    sleep 0.1
  done
  log "$name (pid $pid) still runs 30s after SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  while [ -n "$(recorded_pid "$name")" ]; do sleep 0.1; done
}

# --- cgroups -----------------------------------------------------------------

# cgroup_root prints where a CPU-limited cgroup can be made: the cgroup v2
# root when its cpu controller is available, else the cgroup v1 cpu
# controller's mount point.
cgroup_root() {
  if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    echo "v2 /sys/fs/cgroup"
    return
  fi
  local mnt
  mnt=$(awk '$3 == "cgroup" { n = split($4, o, ","); for (i = 1; i <= n; i++) if (o[i] == "cpu") { print $2; exit } }' /proc/mounts)
  [ -n "$mnt" ] && echo "v1 $mnt"
  return 0
}

make_cgroup() { # name -> path, with the quota set
  local dir="$cg_parent/$1"
  mkdir -p "$dir" || die "cannot create cgroup $dir (root needed)"
  if [ "$cg_version" = v2 ]; then
    echo "$quota_us 100000" >"$dir/cpu.max"
  else
    echo 100000 >"$dir/cpu.cfs_period_us"
    echo "$quota_us" >"$dir/cpu.cfs_quota_us"
  fi
  echo "$dir"
}

cgroup_quota() { # path -> cores, as the kernel holds them
  local q p
  if [ -f "$1/cpu.max" ]; then read -r q p <"$1/cpu.max"
  elif [ -f "$1/cpu.cfs_quota_us" ]; then q=$(cat "$1/cpu.cfs_quota_us"); p=$(cat "$1/cpu.cfs_period_us")
  else echo "-"; return; fi
  if [ "$q" = max ] || [ "$q" = -1 ]; then echo none; else awk -v q="$q" -v p="$p" 'BEGIN { printf "%.2f", q / p }'; fi
}

remove_cgroups() {
  [ -f "$state/cgroup" ] || return 0
  local parent dir
  read -r _ parent <"$state/cgroup"
  # A killed replica stays in its cgroup until it is reaped, so the
  # directories may be busy for a moment: try for up to five seconds.
  for dir in "$parent"/*/ "$parent"; do
    [ -d "$dir" ] || continue
    for _ in $(seq 1 50); do rmdir "$dir" 2>/dev/null && break; sleep 0.1; done
  done
  [ -d "$parent" ] && log "could not remove cgroup $parent"
  rm -f "$state/cgroup"
}

# --- the service -------------------------------------------------------------

# start_shop name role [flags...]: starts the binary in the background,
# detached from this terminal, inside the process's cgroup if there is one,
# on the ports recorded for it (new free ones the first time), and records
# its pid. The service's own settings come from the environment.
start_shop() {
  local name=$1 role=$2 cg="" port admin replica_flags=() shared_flags=()
  shift 2
  # Only the API replicas read from the read replica; the worker's reads
  # decide what it does next and go to the primary.
  if [ "$role" = api ] && [ -f "$state/db-replica-url" ]; then replica_flags=(--db-replica "$(cat "$state/db-replica-url")"); fi
  # nginx (on 127.0.0.1) names the client in X-Forwarded-For: trust it, so
  # per-client rules (the session rate limit) see clients, not nginx.
  if [ "$role" = api ]; then replica_flags+=(--trusted-proxies "127.0.0.1${SHOP_TRUSTED_PROXIES:+,$SHOP_TRUSTED_PROXIES}"); fi
  [ -f "$state/$name.cgroup" ] && cg=$(cat "$state/$name.cgroup")
  # Redis and NATS on their standard ports by default (SHOP_REDIS_URL= or
  # SHOP_NATS_URL= turns one off), with keys and a stream of this cluster's
  # own: clusters on other databases share the servers without mixing
  # carts or order events.
  local dbname
  read -r dbname _ <"$state/database"
  shared_flags=(--redis "${SHOP_REDIS_URL-redis://127.0.0.1:6379/0}" --redis-prefix "shop:$dbname:"
    --nats "${SHOP_NATS_URL-nats://127.0.0.1:4222}" --nats-stream "${dbname^^}_ORDERS")
  [ -f "$state/$name.url" ] || echo "http://127.0.0.1:$(free_port)" >"$state/$name.url"
  [ -f "$state/$name.admin" ] || echo "http://127.0.0.1:$(free_port)" >"$state/$name.admin"
  port=$(cat "$state/$name.url") admin=$(cat "$state/$name.admin")
  : >"$state/$name.log"
  (
    # Join the cgroup before exec, so nothing of the replica ever runs
    # outside its quota.
    [ -z "$cg" ] || echo "$BASHPID" >"$cg/cgroup.procs"
    exec setsid "$state/shop" --role "$role" --addr "${port#http://}" --admin-addr "${admin#http://}" \
      --replica-name "$name" "$@" "${db_flags[@]}" "${replica_flags[@]}" "${shared_flags[@]}" </dev/null >>"$state/$name.log" 2>&1
  ) &
  record "$name" $!
}

# wait_ready name [role flags...]: waits for a 200 from the process's
# /readyz. Given how it was started, it starts it again on new ports when
# another process took one of its ports between free_port and the bind
# (clusters starting side by side, as the tests run them), up to 3 times.
wait_ready() {
  local name=$1 url tries=0
  for _ in $(seq 1 300); do # at least 60 s
    url=$(cat "$state/$name.url")
    if [ -z "$(recorded_pid "$name")" ]; then
      if [ $# -gt 1 ] && [ "$tries" -lt 3 ] && grep -q 'address already in use' "$state/$name.log"; then
        tries=$((tries + 1))
        log "$name: a port was taken meanwhile; starting it again on new ports"
        rm -f "$state/$name.url" "$state/$name.admin"
        start_shop "${@:2}"
        continue
      fi
      die "$name exited while starting: $(tail -n 3 "$state/$name.log" | tr '\n' ' ')"
    fi
    curl -fsS -o /dev/null --max-time 1 "$url/readyz" 2>/dev/null && return 0
    sleep 0.2
  done
  die "$name not ready after 60s; see $state/$name.log"
}

db_flags=()
load_db_flags() {
  db_flags=(--data-dir "$state/data")
  if [ -f "$state/database" ]; then
    local name url
    read -r name url <"$state/database"
    db_flags+=(--db "$url")
  fi
}

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" -U "${PGUSER:-postgres}" -d postgres "$@"; }

# --- nginx -------------------------------------------------------------------

ensure_nginx() {
  command -v nginx >/dev/null 2>&1 && return 0
  [ -x /usr/sbin/nginx ] && { PATH=$PATH:/usr/sbin; return 0; }
  log "nginx is not installed; installing it from Debian's packages"
  # This cluster runs an nginx of its own (own config, pid file, port);
  # a system nginx the package may start is not used.
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; } \
    || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; } \
    || die "nginx is missing and could not be installed (apt-get install nginx-light)"
  PATH=$PATH:/usr/sbin
  command -v nginx >/dev/null 2>&1 || die "nginx was installed but is not on PATH"
}

# free_port prints a port nothing listens on, from 20000-29999 (below the
# kernel's ephemeral range, so no outgoing connection holds it), and not one
# already handed out for this cluster.
free_port() {
  local used port
  used=$(ss -Htln | awk '{ n = split($4, a, ":"); print a[n] }'; cat "$state"/*.url "$state"/*.admin 2>/dev/null | sed 's/.*://')
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 10000))
    grep -qx "$port" <<<"$used" || { echo "$port"; return; }
  done
  die "no free port found in 20000-29999"
}

write_nginx_conf() { # port
  local upstreams="" i url
  for ((i = 1; i <= replicas; i++)); do
    url=$(cat "$state/replica-$i.url")
    # Passive health checks: two failed attempts (connection refused or
    # reset, or a timeout; see proxy_next_upstream) take a replica out of
    # the rotation for 5 s, then one request probes it again.
    upstreams+="    server ${url#http://} max_fails=2 fail_timeout=5s;"$'\n'
  done
  mkdir -p "$state/nginx-temp"
  cat >"$state/nginx.conf" <<EOF
# Generated by scripts/cluster.sh for the cluster in $state.
worker_processes auto;
pid $state/nginx-own.pid; # nginx's own; nginx.pid is this script's record
error_log $state/nginx-error.log warn;

events {
    worker_connections 4096;
}

http {
    # Which replicas each request tried, in order, and what each answered.
    log_format shop '\$remote_addr [\$time_local] "\$request" \$status \$body_bytes_sent '
                    'rt=\$request_time upstream="\$upstream_addr" upstream_status="\$upstream_status" '
                    'rid=\$shop_request_id';
    access_log $state/nginx-access.log shop buffer=64k flush=1s;
    client_body_temp_path $state/nginx-temp/body;
    proxy_temp_path $state/nginx-temp/proxy;
    fastcgi_temp_path $state/nginx-temp/fastcgi;
    uwsgi_temp_path $state/nginx-temp/uwsgi;
    scgi_temp_path $state/nginx-temp/scgi;
    client_max_body_size 64k;
    server_tokens off;

    # Keep the client's request id, or give the request nginx's own, so
    # one id follows a request through nginx and the replica's logs.
    map \$http_x_request_id \$shop_request_id {
        default \$http_x_request_id;
        ""      \$request_id;
    }

    upstream shop {
        least_conn;
$upstreams
        # Keep-alive connections to the replicas, closed by nginx before
        # the service's 2-minute idle timeout would close them under it.
        keepalive 64;
        keepalive_timeout 60s;
        keepalive_requests 10000;
    }

    server {
        listen 127.0.0.1:$1;

        # An order's Server-Sent Events: passed through as they come
        # (no buffering), and open for as long as the stream lasts (the
        # service sends a heartbeat every 15 s and ends a stream after
        # 15 min; the client resumes with Last-Event-ID).
        location ~ ^/v1/orders/[0-9]+/events\$ {
            proxy_pass http://shop;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Request-Id \$shop_request_id;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_cache off;
            proxy_connect_timeout 2s;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
        }

        location / {
            proxy_pass http://shop;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Request-Id \$shop_request_id;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            proxy_send_timeout 30s;

            # Retry on another replica when this one could not be reached or
            # broke the connection before answering. Without non_idempotent,
            # nginx retries a POST (a session, a checkout) only when it could
            # not send it at all (connection refused, connect timeout): once
            # a checkout was sent, only the client may retry it, with the
            # same Idempotency-Key, which the service answers with the same
            # order. A 503 from the service (overload, database down) is an
            # answer, passed to the client with its Retry-After, and does
            # not count against the replica.
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 10s;
        }
    }
}
EOF
}

start_nginx() {
  local port
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    write_nginx_conf "$port"
    : >"$state/nginx-error.log"
    (exec setsid nginx -e "$state/nginx-error.log" -c "$state/nginx.conf" -p "$state" -g 'daemon off;' </dev/null >>"$state/nginx.log" 2>&1) &
    record nginx $!
    for _ in $(seq 1 100); do
      if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/readyz" 2>/dev/null; then
        echo "http://127.0.0.1:$port" >"$state/nginx.url"
        return 0
      fi
      [ -n "$(recorded_pid nginx)" ] || break
      sleep 0.1
    done
    grep -q "Address already in use" "$state/nginx-error.log" "$state/nginx.log" 2>/dev/null \
      || die "nginx did not answer on port $port: $(tail -n 2 "$state/nginx-error.log" | tr '\n' ' ')"
    stop_process nginx
    log "port $port was taken meanwhile; trying another"
  done
  die "nginx could not find a free port"
}

# --- commands ----------------------------------------------------------------

# make_cgroup_parent creates the cluster's parent cgroup for --cpu and
# records it; cg_version and cg_parent name it for make_cgroup.
make_cgroup_parent() {
  local root
  root=$(cgroup_root)
  [ -n "$root" ] || die "--cpu needs the cgroup cpu controller, which this machine does not offer"
  read -r cg_version cg_root <<<"$root"
  cg_parent="$cg_root/perfscale-$(basename "$state")-$$"
  if [ "$cg_version" = v2 ]; then
    grep -qw cpu "$cg_root/cgroup.subtree_control" || echo +cpu >"$cg_root/cgroup.subtree_control" \
      || die "cannot enable the cpu controller in $cg_root"
    mkdir -p "$cg_parent" && echo +cpu >"$cg_parent/cgroup.subtree_control"
  else
    mkdir -p "$cg_parent"
  fi || die "cannot create cgroup $cg_parent (root needed)"
  echo "$cg_version $cg_parent" >"$state/cgroup"
}

# remove_replica K: stops replica K and forgets it: its ports, its cgroup.
remove_replica() {
  local name="replica-$1" cg=""
  stop_process "$name"
  [ -f "$state/$name.cgroup" ] && cg=$(cat "$state/$name.cgroup")
  if [ -n "$cg" ]; then
    for _ in $(seq 1 50); do rmdir "$cg" 2>/dev/null && break; [ -d "$cg" ] || break; sleep 0.1; done
  fi
  rm -f "$state/$name".{pid,url,admin,cgroup,log}
}

# cmd_rescale: up on a running cluster brings it to N replicas on the same
# database, worker, nginx and shop binary (nothing is rebuilt): replicas
# past N stop, missing ones start, and nginx reloads its upstreams. A new
# --cpu restarts every replica under the new quota; --db-replica cannot
# change on a running cluster.
cmd_rescale() {
  local kv old_replicas=0 old_cpu="" old_db=false i from pids=()
  for kv in $(cat "$state/cluster"); do
    case $kv in
      replicas=*) old_replicas=${kv#*=} ;;
      cpu=*) old_cpu=${kv#*=}; [ "$old_cpu" != none ] || old_cpu="" ;;
      db_replica=*) old_db=${kv#*=} ;;
    esac
  done
  [ "$old_db" = "$db_replica" ] \
    || die "the cluster in $state runs with db_replica=$old_db; --db-replica cannot change on a running cluster: run 'scripts/cluster.sh --state-dir $state down' first"
  [ -n "$(recorded_pid nginx)" ] \
    || die "the cluster in $state is recorded but its nginx is not running; run 'scripts/cluster.sh --state-dir $state down' first"
  load_db_flags
  from=$((old_replicas + 1))
  if [ "$cpu" != "$old_cpu" ]; then
    # Every replica restarts under the new quota.
    for ((i = 1; i <= old_replicas; i++)); do remove_replica "$i" & pids+=($!); done
    for i in "${pids[@]}"; do wait "$i" || true; done
    from=1
  fi
  if [ -n "$cpu" ]; then
    if [ -f "$state/cgroup" ]; then read -r cg_version cg_parent <"$state/cgroup"; else make_cgroup_parent; fi
  fi
  for ((i = from; i <= replicas; i++)); do
    [ -z "$cpu" ] || make_cgroup "replica-$i" >"$state/replica-$i.cgroup"
    start_shop "replica-$i" api
  done
  for ((i = from; i <= replicas; i++)); do wait_ready "replica-$i" "replica-$i" api; done
  echo "replicas=$replicas cpu=${cpu:-none} db_replica=$db_replica" >"$state/cluster"
  # nginx reads its new upstreams on SIGHUP (its old workers finish what
  # they hold); the replicas past N stop after that, so none is sent new
  # requests while it stops.
  local url
  url=$(cat "$state/nginx.url")
  write_nginx_conf "${url##*:}"
  kill -HUP "$(recorded_pid nginx)"
  for ((i = replicas + 1; i <= old_replicas; i++)); do remove_replica "$i" & pids+=($!); done
  for i in "${pids[@]}"; do wait "$i" || true; done
  curl -fsS -o /dev/null --max-time 5 --retry 10 --retry-delay 0 --retry-all-errors "$url/readyz" \
    || die "nginx does not answer at $url after the reload: $(tail -n 2 "$state/nginx-error.log" | tr '\n' ' ')"
  log "rescaled from $old_replicas to $replicas API replicas${cpu:+ of $cpu cores each} on the same database, worker and nginx"
  echo "$url"
}

cmd_up() {
  replicas=$arg
  if [ -f "$state/cluster" ]; then
    cmd_rescale
    return
  fi
  command -v curl >/dev/null 2>&1 || die "curl is needed to wait for readiness"
  command -v psql >/dev/null 2>&1 || die "psql is needed to create the database (apt-get install postgresql-client)"
  ensure_nginx
  pg_isready -q -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" 2>/dev/null \
    || die "PostgreSQL is not reachable at ${PGHOST:-127.0.0.1}:${PGPORT:-5432} (scripts/services.sh starts it)"

  mkdir -p "$state"
  chmod 755 "$state" # nginx's workers run as nobody and need its temp directory
  # From here on, a failure stops whatever was started.
  trap 'status=$?; if [ $status -ne 0 ]; then log "up failed; stopping what it started"; cmd_down >/dev/null 2>&1 || true; fi' EXIT
  echo "replicas=$replicas cpu=${cpu:-none} db_replica=$db_replica" >"$state/cluster"

  if [ -n "${PERFSCALE_CLUSTER_SHOP:-}" ]; then
    # A binary built already (the tests build one for all their clusters).
    cp "$PERFSCALE_CLUSTER_SHOP" "$state/shop" || die "cannot copy PERFSCALE_CLUSTER_SHOP=$PERFSCALE_CLUSTER_SHOP"
  else
    log "building shop"
    (cd "$repo" && go build -o "$state/shop" ./cmd/shop) || die "go build ./cmd/shop failed"
  fi

  local name url
  name="perfscale_cluster_$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
  url="postgres://${PGUSER:-postgres}@${PGHOST:-127.0.0.1}:${PGPORT:-5432}/$name?sslmode=disable"
  psql_admin -c "CREATE DATABASE $name" || die "could not create database $name"
  echo "$name $url" >"$state/database"
  log "database $name created"
  load_db_flags
  "$state/shop" migrate "${db_flags[@]}" >"$state/migrate.log" 2>&1 \
    || die "shop migrate failed: $(tail -n 1 "$state/migrate.log")"

  if [ "$db_replica" = true ]; then
    local out rurl lsn
    # The replica's data lives where the postgres user can reach it (the
    # state directory may sit under a private one). Recorded first: down
    # stops whatever part of the replica start made.
    mktemp -d "${TMPDIR:-/tmp}/perfscale-cluster-pg-replica.XXXXXX" >"$state/pg-replica-dir"
    # A port of this cluster's own, so replicas started at the same time
    # (another cluster, a test) do not both pick the first free one.
    out=$(PG_REPLICA_DIR="$(cat "$state/pg-replica-dir")" PG_REPLICA_PORT=$(free_port) "$repo/scripts/pg-replica.sh" start) \
      || die "scripts/pg-replica.sh start failed"
    # pg-replica.sh prints the replica's connection URL last; point it at this database
    rurl=$(tail -n 1 <<<"$out")
    rurl="${rurl%%\?*}"
    rurl="${rurl%/*}/$name?sslmode=disable"
    echo "$rurl" >"$state/db-replica-url"
    # The replica must stream: wait until it has replayed the migrations.
    lsn=$(psql_admin -Atc "SELECT pg_current_wal_lsn()")
    for _ in $(seq 1 300); do
      [ "$(psql -X -Atq "$rurl" -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn" 2>/dev/null)" = t ] && break
      sleep 0.2
    done
    [ "$(psql -X -Atq "$rurl" -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn" 2>/dev/null)" = t ] \
      || die "the read replica has not replayed the primary's WAL up to $lsn within 60s: it is not streaming (see $(cat "$state/pg-replica-dir")/replica.log)"
    log "streaming read replica at $rurl"
  fi

  [ -z "$cpu" ] || make_cgroup_parent

  local i
  for ((i = 1; i <= replicas; i++)); do
    [ -z "$cpu" ] || make_cgroup "replica-$i" >"$state/replica-$i.cgroup"
    start_shop "replica-$i" api
  done
  start_shop worker worker --drain-delay 0s
  for ((i = 1; i <= replicas; i++)); do wait_ready "replica-$i" "replica-$i" api; done
  wait_ready worker worker worker --drain-delay 0s
  start_nginx
  trap - EXIT
  log "$replicas API replicas and a worker on database $name${cpu:+, $cpu cores each}; scripts/cluster.sh status shows them"
  cat "$state/nginx.url"
}

cmd_status() {
  if [ ! -f "$state/cluster" ]; then
    echo "no cluster in $state"
    return 0
  fi
  local replicas=0 name url admin cgroup quota pid alive f
  replicas=$(sed -n 's/^replicas=\([0-9]*\).*/\1/p' "$state/cluster")
  echo "cluster in $state: $(cat "$state/cluster")"
  if [ -f "$state/database" ]; then echo "database: $(cut -d' ' -f1 "$state/database") ($(cut -d' ' -f2 "$state/database"))"; fi
  if [ -f "$state/db-replica-url" ]; then echo "read replica: $(cat "$state/db-replica-url")"; fi
  if [ -f "$state/cgroup" ]; then echo "cgroups: $(cat "$state/cgroup")"; fi
  printf '%-11s %-8s %-8s %-24s %-24s %-6s %s\n' NAME ROLE PID URL ADMIN CPU STATE
  for f in nginx $(seq -f 'replica-%g' 1 "$replicas") worker; do
    [ -f "$state/$f.pid" ] || continue
    read -r pid _ <"$state/$f.pid"
    url=$(cat "$state/$f.url" 2>/dev/null || echo -)
    admin=$(cat "$state/$f.admin" 2>/dev/null || echo -)
    quota=-
    if [ -f "$state/$f.cgroup" ]; then
      cgroup=$(cat "$state/$f.cgroup")
      quota=$(cgroup_quota "$cgroup")
    fi
    alive=dead
    [ -n "$(recorded_pid "$f")" ] && alive=alive
    case $f in nginx) name=balancer ;; worker) name=worker ;; *) name=api ;; esac
    printf '%-11s %-8s %-8s %-24s %-24s %-6s %s\n' "$f" "$name" "$pid" "$url" "$admin" "$quota" "$alive"
  done
}

target_name() {
  [ -f "$state/cluster" ] || die "no cluster in $state"
  if [ "$arg" = worker ]; then echo worker; return; fi
  local n
  n=$(sed -n 's/^replicas=\([0-9]*\).*/\1/p' "$state/cluster")
  [ "$arg" -ge 1 ] && [ "$arg" -le "$n" ] || die "no replica $arg: the cluster has replicas 1 to $n"
  echo "replica-$arg"
}

cmd_kill_replica() {
  local name pid
  name=$(target_name)
  pid=$(recorded_pid "$name")
  [ -n "$pid" ] || die "$name is not running"
  kill -KILL "$pid"
  while [ -n "$(recorded_pid "$name")" ]; do sleep 0.05; done
  log "$name (pid $pid) killed"
}

cmd_start_replica() {
  local name role=api extra=()
  name=$(target_name)
  [ -z "$(recorded_pid "$name")" ] || die "$name is already running"
  [ "$name" = worker ] && { role=worker; extra=(--drain-delay 0s); }
  load_db_flags
  start_shop "$name" "$role" "${extra[@]}"
  wait_ready "$name"
  log "$name started again at $(cat "$state/$name.url")"
}

cmd_down() {
  if [ ! -f "$state/cluster" ] && [ ! -f "$state/database" ] && ! ls "$state"/*.pid >/dev/null 2>&1; then
    echo "no cluster in $state"
    return 0
  fi
  # The balancer first, so no new work arrives; then every replica at once:
  # a second SIGTERM cuts the drain delay short, since nothing routes here.
  stop_process nginx
  local f pids=()
  for f in "$state"/*.pid; do
    [ -e "$f" ] || continue
    f=$(basename "$f" .pid)
    [ "$f" = nginx ] && continue
    stop_process "$f" &
    pids+=($!)
  done
  for f in "${pids[@]}"; do wait "$f" || true; done
  remove_cgroups
  if [ -f "$state/pg-replica-dir" ]; then
    PG_REPLICA_DIR="$(cat "$state/pg-replica-dir")" "$repo/scripts/pg-replica.sh" stop >/dev/null 2>&1 \
      || log "scripts/pg-replica.sh stop failed"
  fi
  if [ -f "$state/database" ]; then
    local name
    read -r name _ <"$state/database"
    # The cluster's order events stream: JetStream reserves its storage
    # (1 GiB) until it is deleted, and a shared server refuses new streams
    # once the reservations reach its limit (59 leftover clusters did).
    if [ -n "${SHOP_NATS_URL-nats://127.0.0.1:4222}" ] && [ -x "$state/shop" ]; then
      "$state/shop" drop-events --nats "${SHOP_NATS_URL-nats://127.0.0.1:4222}" --nats-stream "${name^^}_ORDERS" \
        --log-level warn >/dev/null 2>>"$state/down.log" || log "could not delete NATS stream ${name^^}_ORDERS: $(tail -n 1 "$state/down.log")"
    fi
    psql_admin -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" || die "could not drop database $name; $state kept"
  fi
  rm -rf "$state"
  echo "cluster in $state stopped and removed"
}

case "$cmd" in
  up) cmd_up ;;
  status) cmd_status ;;
  kill-replica) cmd_kill_replica ;;
  start-replica) cmd_start_replica ;;
  down) cmd_down ;;
esac
