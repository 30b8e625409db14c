#!/usr/bin/env bash
# Installs (from Debian's packages) and starts, if stopped, the local services the cluster and its
# tests talk to: Redis 127.0.0.1:6379, RabbitMQ 127.0.0.1:5672, NATS with JetStream 127.0.0.1:4222.
# Idempotent: does nothing that is already done.
set -euo pipefail

# --- gateway: Redis and RabbitMQ ---
if ! command -v redis-server >/dev/null 2>&1 || ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "== installing redis-server and rabbitmq-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server rabbitmq-server
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "== starting redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
rabbit_up() { rabbitmq-diagnostics -q ping >/dev/null 2>&1 || (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ! rabbit_up; then
  echo "== starting rabbitmq"
  rabbitmq-server -detached
  for _ in $(seq 1 120); do
    rabbit_up && break
    sleep 1
  done
  rabbit_up || { echo "rabbitmq did not start within 120 s" >&2; exit 1; }
fi
# --- relay: NATS with JetStream on 127.0.0.1:4222 ---
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "== installing nats-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  echo "== starting nats-server (JetStream)"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break; sleep 0.1; done
fi
