#!/usr/bin/env bash
# Profiles one gateway worker under the round-trip load of bench/roundtrip.sh: a 1-worker
# cluster (release build), N socket.io clients round-tripping `testCall` through the echo agent,
# `perf record` on the worker for the measure window. Prints the CPU per round trip and the
# profile's top entries (self time by symbol, and by thread).
# Usage: bench/profile.sh [CLIENTS] [SECONDS]     (default 100 clients, 10 s)
#        SKIP_BUILD=1 to skip `cargo build --release`; CALL_GRAPH=dwarf for whole Rust stacks
#        (perf's default, frame pointers, stops at std and tokio, which are built without them).
# Needs: perf, RabbitMQ on 127.0.0.1:5672, node >= 18. Output: a temp dir (printed) with
# perf.data, report.txt and the load's JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
CLIENTS=${1:-100}; SECONDS_PER_RUN=${2:-10}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release
[ -d bench/roundtrip/node_modules ] || (cd bench/roundtrip && npm ci --no-audit --no-fund)
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/profile.XXXXXX)
PIDS_TO_KILL=()
cleanup() { for p in "${PIDS_TO_KILL[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
PORT=$(free_port)
start_echo_agent "$TMP"
cat > "$TMP/gateway.properties" <<CONF
frontend.host=127.0.0.1
frontend.port=$PORT
frontend.logLevel=warn
frontend.session_secret=profile-secret
cluster.workerCount=1
cluster.controlSocket=$TMP/control.sock
CONF
target/release/activestack-gateway server "$TMP/gateway.properties" > "$TMP/gateway.out" 2> "$TMP/gateway.err" &
PIDS_TO_KILL+=("$!")
WORKER=$(ready_worker target/release/activestack-gateway "$TMP/gateway.properties" 200)
# perf starts once the load's measure phase does.
start_measured_load "$TMP" "http://127.0.0.1:$PORT" "$CLIENTS" "$SECONDS_PER_RUN" "$WORKER" 900
perf record -F 999 --call-graph "${CALL_GRAPH:-fp}" -p "$WORKER" -o "$TMP/perf.data" -- sleep "$SECONDS_PER_RUN" 2> "$TMP/perf.err" || true
wait "$LOAD" || true
{
  echo "== load: $(cat "$TMP/load.json")"
  echo "== self time by thread"
  perf report -i "$TMP/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | sed 's/ *$//' | head -10
  echo "== self time by symbol (top 40; [k] kernel, [.] user)"
  perf report -i "$TMP/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | sed 's/ *$//' | cut -c1-150 | head -40
  echo "== kernel vs user"
  perf report -i "$TMP/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
    | awk '/\[k\]/{k+=$1} /\[\.\]/{u+=$1} END{printf "kernel %.1f%%  user %.1f%%\n", k, u}'
} | tee "$TMP/report.txt"
echo "profile: $TMP" >&2
