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
CLIENTS=${1:-100}; SECONDS_PER_RUN=${2:-10}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release
[ -d bench/roundtrip/node_modules ] || (cd bench/roundtrip && npm ci --no-audit --no-fund)
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/profile.XXXXXX)
PIDS_TO_KILL=()
cleanup() { for p in "${PIDS_TO_KILL[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
node bench/roundtrip/agent.js > "$TMP/agent.out" 2> "$TMP/agent.err" &
PIDS_TO_KILL+=("$!")
for _ in $(seq 100); do grep -q ready "$TMP/agent.out" 2>/dev/null && break; sleep 0.1; done
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
WORKER=""
for _ in $(seq 200); do
  WORKER=$(target/release/activestack-gateway status "$TMP/gateway.properties" --json 2>/dev/null | python3 -c '
import json, sys
try:
    w = [w for w in json.load(sys.stdin).get("workers", []) if w.get("state") == "ready"]
    print(w[0]["pid"] if w else "")
except Exception:
    print("")') || true
  [ -n "$WORKER" ] && break; sleep 0.1
done
[ -n "$WORKER" ] || { echo "worker not ready:" >&2; tail "$TMP/gateway.err" >&2; exit 1; }
# perf starts once the load's measure phase does (the load prints "measuring" on stderr).
node bench/roundtrip/load.js "http://127.0.0.1:$PORT" "$CLIENTS" "$SECONDS_PER_RUN" "$WORKER" \
  > "$TMP/load.json" 2> "$TMP/load.err" &
LOAD=$!
PIDS_TO_KILL+=("$LOAD")
for _ in $(seq 900); do grep -q measuring "$TMP/load.err" 2>/dev/null && break; kill -0 "$LOAD" 2>/dev/null || break; sleep 0.1; done
grep -q measuring "$TMP/load.err" || { echo "the load did not start:" >&2; tail "$TMP/load.err" >&2; exit 1; }
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
