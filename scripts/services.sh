#!/usr/bin/env bash
# Makes sure the services the integration tests talk to (PostgreSQL, Redis,
# NATS JetStream) are running on their standard local ports, starting the
# ones that are not. Used by .ci/run; safe to run by hand.
set -u
case "${1:-}" in -h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac

up() { timeout 1 bash -c ">/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_port() { # name port
  for _ in $(seq 1 50); do up "$2" && return 0; sleep 0.2; done
  echo "services: $1 did not come up on 127.0.0.1:$2" >&2
  return 1
}

status=0
if ! up 5432; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  wait_port PostgreSQL 5432 || status=1
fi
if ! up 6379; then
  echo "services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  wait_port Redis 6379 || status=1
fi
if ! up 4222; then
  echo "services: starting NATS"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
  wait_port NATS 4222 || status=1
fi
exit $status
