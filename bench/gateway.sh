#!/usr/bin/env bash
# Gateway scale numbers: one worker, N idle socket.io clients (each with its RabbitMQ client
# queue and consumer), release build. Prints the connect time and the worker's RSS.
# Usage: bench/gateway.sh   (needs RabbitMQ on localhost:5672: scripts/setup.sh starts it)
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" || true
cargo nextest run --release --test gateway_scale --run-ignored all --no-capture 2>&1 \
  | grep -E "clients connected in|status: .* clients|PASS|FAIL"
