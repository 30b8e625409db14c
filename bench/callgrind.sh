#!/usr/bin/env bash
# Instructions per round trip of one gateway worker, counted by callgrind: repeatable for the same
# binary and load whatever else the machine is doing, so that a change of a few percent in the
# worker's own code shows (bench/roundtrip.sh's CPU time varies ±15% from run to run). The whole
# cluster runs under `valgrind --tool=callgrind --trace-children=yes --compress-strings=no --compress-pos=no` (1 worker, no standby,
# heartbeat bounds widened for valgrind's ~50x slowdown); N socket.io v4 clients round-trip
# `testCall` through the echo agent; the worker's counters are zeroed when the load's measure
# window opens and dumped when it closes. Kernel time is not counted: this measures user space.
# Usage: bench/callgrind.sh [CLIENTS] [SECONDS]     (default 100 clients, 20 s)
#        SKIP_BUILD=1 to skip `cargo build --release`.
# Needs: valgrind, RabbitMQ on 127.0.0.1:5672, node >= 18. Output: a temp dir (printed) with the
# callgrind dump, inclusive.txt and self.txt (callgrind_annotate: functions by inclusive and by
# self instructions) and the load's JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
CLIENTS=${1:-100}; SECONDS_PER_RUN=${2:-20}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release
BIN=${CARGO_TARGET_DIR:-target}/release/activestack-gateway
[ -d bench/roundtrip/node_modules ] || (cd bench/roundtrip && npm ci --no-audit --no-fund)
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/callgrind.XXXXXX)
PIDS_TO_KILL=()
cleanup() { for p in "${PIDS_TO_KILL[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
PORT=$(free_port)
node bench/roundtrip/agent.js > "$TMP/agent.out" 2> "$TMP/agent.err" &
PIDS_TO_KILL+=("$!")
for _ in $(seq 100); do grep -q ready "$TMP/agent.out" 2>/dev/null && break; sleep 0.1; done
cat > "$TMP/gateway.properties" <<CONF
frontend.host=127.0.0.1
frontend.port=$PORT
frontend.logLevel=warn
frontend.session_secret=callgrind-secret
cluster.workerCount=1
cluster.standbyWorkers=0
cluster.heartbeatInterval=1000
cluster.workerTimeout=60000
cluster.watchdogInterval=1000
cluster.controlSocket=$TMP/control.sock
CONF
valgrind --tool=callgrind --trace-children=yes --compress-strings=no --compress-pos=no --callgrind-out-file="$TMP/callgrind.out.%p" \
  "$BIN" server "$TMP/gateway.properties" > "$TMP/gateway.out" 2> "$TMP/gateway.err" &
PIDS_TO_KILL+=("$!")
WORKER=""
for _ in $(seq 1200); do
  WORKER=$("$BIN" status "$TMP/gateway.properties" --json 2>/dev/null | python3 -c '
import json, sys
try:
    w = [w for w in json.load(sys.stdin).get("workers", []) if w.get("state") == "ready"]
    print(w[0]["pid"] if w else "")
except Exception:
    print("")') || true
  [ -n "$WORKER" ] && break; sleep 0.1
done
[ -n "$WORKER" ] || { echo "worker not ready:" >&2; tail "$TMP/gateway.err" >&2; exit 1; }
CONNECT_TIMEOUT=600 node bench/roundtrip/load.js "http://127.0.0.1:$PORT" "$CLIENTS" "$SECONDS_PER_RUN" "$WORKER" \
  > "$TMP/load.json" 2> "$TMP/load.err" &
LOAD=$!
PIDS_TO_KILL+=("$LOAD")
for _ in $(seq 6000); do grep -q measuring "$TMP/load.err" 2>/dev/null && break; kill -0 "$LOAD" 2>/dev/null || break; sleep 0.1; done
grep -q measuring "$TMP/load.err" || { echo "the load did not start:" >&2; tail "$TMP/load.err" >&2; exit 1; }
callgrind_control --zero "$WORKER" > /dev/null 2>&1
wait "$LOAD" || true
callgrind_control --dump=measured "$WORKER" > /dev/null 2>&1
DUMP=$(ls "$TMP"/callgrind.out."$WORKER"* | sort | tail -1)
callgrind_annotate --inclusive=yes "$DUMP" > "$TMP/inclusive.txt" 2>/dev/null || true
callgrind_annotate "$DUMP" > "$TMP/self.txt" 2>/dev/null || true
python3 - "$TMP/load.json" "$DUMP" <<'PY' | tee "$TMP/summary.txt"
import json, re, sys
load = json.load(open(sys.argv[1]))
total = None
for line in open(sys.argv[2]):
    m = re.match(r"(summary|totals): (\d+)", line)
    if m:
        total = int(m.group(2))
rt = load["roundTrips"]
print(f"clients {load['clients']}: {rt} round trips, {total} instructions, {total / rt:.0f} instructions per round trip")
PY
echo "callgrind: $TMP" >&2
