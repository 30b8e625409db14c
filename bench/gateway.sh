#!/usr/bin/env bash
# Gateway scale numbers: one worker, N idle socket.io clients (each with its RabbitMQ client
# queue and consumer), release build. Prints the connect times and the worker's memory in three
# steps: idle, all socket.io sockets open (before the gateway's `connect`), and after every
# client's `connect` (queue declared and consumed); each `memory:` line gives the RSS and its
# anonymous part, and the bytes per client since the step before. The last line, `total`, is the
# number to compare: (RSS with N clients - RSS idle) / N.
# `--protocol 0.9` holds socket.io 0.9 clients (handshake, then the websocket; what the
# ActiveStack SDKs speak) instead of socket.io v5 ones: tests/legacy_scale.rs, not
# tests/gateway_scale.rs.
# Each count then holds its clients through three socket.io heartbeat rounds (every client
# answers every heartbeat; the worker must still count all of them) and round-trips one request
# per client through an echo agent.
# Usage: bench/gateway.sh [--protocol v4|0.9] [COUNT ...]   (default counts: 3000 19000)
#        (needs RabbitMQ on localhost:5672: scripts/setup.sh starts it). A count is bounded by
#        `ulimit -Hn`: the worker holds one descriptor per client and so does the test process.
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOCOL=v4
COUNTS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --protocol) PROTOCOL=$2; shift 2;;
    -h|--help) sed -n 2,17p "$0"; exit 0;;
    [0-9]*) COUNTS+=("$1"); shift;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
case "$PROTOCOL" in
  v4) TEST=gateway_scale;;
  0.9) TEST=legacy_scale;;
  *) echo "--protocol is v4 or 0.9, not $PROTOCOL" >&2; exit 2;;
esac
ulimit -n "$(ulimit -Hn)" || true
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(3000 19000)
for n in "${COUNTS[@]}"; do
  echo "== $PROTOCOL: $n clients on one worker (ulimit -n $(ulimit -n))"
  GATEWAY_SCALE_CLIENTS=$n cargo nextest run --release --test "$TEST" --run-ignored ignored-only \
    --no-capture 2>&1 | grep -E "clients in|memory:|status: .* clients|holding|round trip|PASS|FAIL|panicked"
done
