#!/usr/bin/env bash
# Gateway scale numbers: one worker, N idle socket.io clients (each with its RabbitMQ client
# queue and consumer), release build. Prints the connect times and the worker's memory in three
# steps: idle, all socket.io sockets open (before the gateway's `connect`), and after every
# client's `connect` (queue declared and consumed); each `memory:` line gives the RSS and its
# anonymous part, and the bytes per client since the step before. The last line, `total`, is the
# number to compare: (RSS with N clients - RSS idle) / N.
# Each count then holds its clients through three socket.io heartbeat rounds (every client
# answers every ping; the worker must still count all of them) and round-trips one request per
# client through an echo agent.
# Usage: bench/gateway.sh [COUNT ...]   (default: 3000 19000; needs RabbitMQ on localhost:5672:
# scripts/setup.sh starts it). A count is bounded by `ulimit -Hn`: the worker holds one
# descriptor per client and so does the test process that plays the clients.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" || true
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(3000 19000)
for n in "${COUNTS[@]}"; do
  echo "== $n clients on one worker (ulimit -n $(ulimit -n))"
  GATEWAY_SCALE_CLIENTS=$n cargo nextest run --release --test gateway_scale --run-ignored ignored-only \
    --no-capture 2>&1 | grep -E "clients in|memory:|status: .* clients|holding|round trip|PASS|FAIL|panicked"
done
