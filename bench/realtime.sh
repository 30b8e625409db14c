#!/usr/bin/env bash
# Realtime numbers: publish-to-client latency p50/p99 with 1k and 10k connected websocket
# clients at 1k and 5k events/s (commands published into the JetStream stream, as the relay
# does), and the workers' memory per connected client. Release build, 2 workers, the machine's
# Redis and NATS. Writes bench/results/realtime.{json,md} and, with matplotlib, realtime.png.
# Usage: bench/realtime.sh   (scripts/setup.sh starts Redis, RabbitMQ and NATS)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ulimit -n "$(ulimit -Hn)" || true
uptime
cargo nextest run --release --test realtime_bench --run-ignored ignored-only --no-capture 2>&1 \
  | grep -E "clients|rate|\||load average|PASS|FAIL"
uptime
plot bench/realtime_plot.py bench/results/realtime.json bench/results/realtime.png
