#!/usr/bin/env bash
# Instructions per round trip of one gateway worker, counted by callgrind: repeatable for the same
# binary and load whatever else the machine is doing, so that a change of a few percent in the
# worker's own code shows (bench/roundtrip.sh's CPU time varies ±15% from run to run). The whole
# cluster runs under `valgrind --tool=callgrind --trace-children=yes` (1 worker, no standby,
# heartbeat bounds widened for valgrind's slowdown; uncompressed names, so that a dump after
# `--zero` reads by itself); N socket.io v4 clients round-trip
# `testCall` through the echo agent; the worker's counters are zeroed when the load's measure
# window opens and dumped when it closes. Kernel time is not counted: this measures user space.
# Usage: bench/callgrind.sh [CLIENTS] [SECONDS]     (default 100 clients, 20 s)
#        SKIP_BUILD=1 to skip `cargo build --release`.
# Needs: valgrind, RabbitMQ on 127.0.0.1:5672, node >= 18. Output: a temp dir (printed) with the
# callgrind dump, inclusive.txt (callgrind_annotate, by inclusive instructions), summary.txt
# (the total and the top functions by their own instructions per round trip) and the load's
# JSON line.
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
start_echo_agent "$TMP"
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
WORKER=$(ready_worker "$BIN" "$TMP/gateway.properties" 1200)
CONNECT_TIMEOUT=600 start_measured_load "$TMP" "http://127.0.0.1:$PORT" "$CLIENTS" "$SECONDS_PER_RUN" "$WORKER" 6000
callgrind_control --zero "$WORKER" > /dev/null 2>&1
wait "$LOAD" || true
callgrind_control --dump=measured "$WORKER" > /dev/null 2>&1
DUMP=$(ls "$TMP"/callgrind.out."$WORKER"* | sort | tail -1)
callgrind_annotate --inclusive=yes "$DUMP" > "$TMP/inclusive.txt" 2>/dev/null || true
# Self instructions by function, read from the dump itself (callgrind_annotate puts all of a
# dump taken after --zero on the outermost frame).
python3 - "$TMP/load.json" "$DUMP" <<'PY' | tee "$TMP/summary.txt"
import collections, json, sys
load = json.load(open(sys.argv[1]))
rt = load["roundTrips"]
own = collections.Counter()
fn, call_cost_next = None, False
for line in open(sys.argv[2]):
    if line.startswith("fn="):
        fn = line[3:].strip()
    elif line.startswith("calls="):
        call_cost_next = True  # the next cost line is the callee's, not fn's own
    elif line[:1].isdigit() or line[:1] in "+-*":
        parts = line.split()
        if call_cost_next:
            call_cost_next = False
        elif fn and len(parts) >= 2 and parts[1].isdigit():
            own[fn] += int(parts[1])
total = sum(own.values())
print(f"clients {load['clients']}: {rt} round trips, {total} instructions, {total / rt:.0f} instructions per round trip")
for f, n in own.most_common(25):
    print(f"{n / total * 100:6.2f}% {n / rt:7.0f}/rt  {f[:140]}")
PY
echo "callgrind: $TMP" >&2
