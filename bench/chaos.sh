#!/usr/bin/env bash
# Faults under load, counted: socket.io v4 and 0.9 clients doing acked round trips through the
# gateway, outbox inserts relayed to NATS, centrifuge-js clients subscribed; each fault alone,
# then all at once (tests/chaos/, an ignored test; bench/chaos/clients.js drives the npm
# clients). RabbitMQ, Redis and NATS are private servers of the run on free ports (the
# machine's shared ones are never touched); MongoDB is the wire-protocol test server of
# tests/mongo_wire. Writes bench/results/chaos.md and chaos.json (git-ignored); logs and server
# data stay in /tmp/chaos-<pid>/ (printed at the start).
#
# Usage: bench/chaos.sh [--seconds N] [--fault NAME|all|mixed|NAME,NAME...] [--v4 N]
#                       [--legacy N] [--realtime N] [--inserts PER_S] [--think MS]
#                       [--not-durable] [--verbose]
#   faults: none kill stop memory sighup rabbitmq redis nats relay mixed (all = every one)
#   defaults: --seconds 20 --fault all --v4 20 --legacy 10 --realtime 10 --inserts 20 --think 25
# Needs: node >= 18, redis-server, nats-server, rabbitmq-server (Debian packages; scripts/setup.sh
# installs them). Installs its npm packages (bench/chaos/package-lock.json) if missing. Runs
# under `nice -n 10`. A full run (all, 30 s each) takes about 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export CHAOS_SECONDS=20 CHAOS_FAULTS=all
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) CHAOS_SECONDS=$2; shift 2;;
    --fault|--faults) CHAOS_FAULTS=$2; shift 2;;
    --v4) export CHAOS_V4=$2; shift 2;;
    --legacy) export CHAOS_LEGACY=$2; shift 2;;
    --realtime) export CHAOS_REALTIME=$2; shift 2;;
    --inserts) export CHAOS_INSERTS=$2; shift 2;;
    --think) export CHAOS_THINK_MS=$2; shift 2;;
    --not-durable) export CHAOS_DURABLE=false; shift;;
    --verbose) export CHAOS_VERBOSE=1; shift;;
    -h|--help) sed -n 2,19p "$0"; exit 0;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2;;
  esac
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for bin in node redis-server redis-cli nats-server /usr/lib/rabbitmq/bin/rabbitmq-server; do
  command -v "$bin" >/dev/null || { echo "missing $bin (scripts/setup.sh installs it)" >&2; exit 1; }
done
[ -d bench/chaos/node_modules ] || (cd bench/chaos && npm ci --no-audit --no-fund)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
nice -n 10 cargo test --release --locked --test chaos -- --ignored --nocapture --test-threads 1 \
  faults_under_load
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "table: bench/results/chaos.md"
