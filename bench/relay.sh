#!/usr/bin/env bash
# Relay numbers: insert-to-publish latency percentiles (200 single inserts) and the inserts per
# second it sustains into JetStream (4000 inserts from 4 tasks), release build, against our
# MongoDB wire-protocol test server or, with MONGODB_URL set, a real MongoDB; NATS is the local
# server (scripts/setup.sh starts it). The insert side, not the relay, limits the rate with the
# test server: read the "relayed everything N ms after the last insert" line for the relay's lag.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo nextest run --release --test relay --run-ignored only --no-capture relay_throughput 2>&1 \
  | grep -vE "^\s*$" | grep -iE "latency|insert|relayed|PASS|FAIL"
