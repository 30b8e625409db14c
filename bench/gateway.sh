#!/usr/bin/env bash
# Gateway scale numbers: one worker, N idle socket.io clients (each with its RabbitMQ client
# queue and consumer), release build. Prints the connect times and the worker's memory in three
# steps: idle, all socket.io sockets open (before the gateway's `connect`), and after every
# client's `connect` (queue declared and consumed); each `memory:` line gives the RSS and its
# anonymous part, and the bytes per client since the step before. The last line, `total`, is the
# number to compare: (RSS with N clients - RSS idle) / N.
# Usage: bench/gateway.sh   (needs RabbitMQ on localhost:5672: scripts/setup.sh starts it)
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" || true
cargo nextest run --release --test gateway_scale --run-ignored ignored-only --no-capture 2>&1 \
  | grep -E "clients in|memory:|status: .* clients|PASS|FAIL"
