#!/usr/bin/env bash
# Memory per idle connection and connect rate, side by side: one gateway worker holding N idle
# socket.io clients (each connected: `message {connect:{}}` -> gatewayConnectAck, so each has
# its RabbitMQ client queue and consumer), held through heartbeats (interval 20 s, timeout 60 s
# on both sides), for ours with socket.io v4 clients, ours with socket.io 0.9 clients (what the
# ActiveStack SDKs speak) and the Node reference (bench/node-gateway/server.js, socket.io 4 +
# amqplib, one worker) with socket.io v4 clients. The clients are the npm ones of
# bench/roundtrip/load.js (idle mode), 50 connecting at a time. Memory per client = (the
# worker's RSS after the hold - its RSS before any client) / N, the kernel's socket buffers not
# included. For the 50,000-client target on one worker, see bench/gateway.sh: it is bounded by
# `ulimit -Hn` like this one.
#
# Usage: bench/idle.sh [--clients "3000 10000"] [--hold 30] [--only ours-v4,ours-0.9,node]
#        SKIP_BUILD=1 to skip `cargo build --release`.
# Needs: RabbitMQ on 127.0.0.1:5672 (guest/guest), node >= 18. Output: bench/results/idle.{md,json}
# and, with matplotlib (bench/.venv), idle.png (git-ignored); logs in a temp dir printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
CLIENTS="3000 10000"; HOLD=30; ONLY="ours-v4,ours-0.9,node"
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) CLIENTS=$2; shift 2;;
    --hold) HOLD=$2; shift 2;;
    --only) ONLY=$2; shift 2;;
    -h|--help) sed -n 2,17p "$0"; exit 0;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ -n "${SKIP_BUILD:-}" ] || cargo build --release
BIN=${CARGO_TARGET_DIR:-target}/release/activestack-gateway
for d in bench/roundtrip bench/node-gateway; do
  [ -d "$d/node_modules" ] || (cd "$d" && npm ci --no-audit --no-fund)
done
TMP=$(mktemp -d /tmp/idle.XXXXXX)
RESULTS=$TMP/results.jsonl
: > "$RESULTS"
SERVER=""
stop_server() {
  [ -n "$SERVER" ] || return 0
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  SERVER=""
}
trap stop_server EXIT

# Starts our 1-worker cluster: SERVER (the master), WORKER and PORT. (In this shell, not in a
# subshell: stop_server must see SERVER.)
start_ours() {
  local port conf pid=""
  port=$(free_port); conf=$TMP/gateway-$port.properties
  cat > "$conf" <<CONF
frontend.host=127.0.0.1
frontend.port=$port
frontend.logLevel=warn
frontend.session_secret=idle-bench-secret
cluster.workerCount=1
cluster.controlSocket=$TMP/control-$port.sock
gateway.socketio.interval=20
gateway.socketio.timeout=60
gateway.rabbitmq.host=127.0.0.1
gateway.rabbitmq.maxQueueDeclaresPerSecond=5000
CONF
  "$BIN" server "$conf" > "$TMP/gateway-$port.out" 2> "$TMP/gateway-$port.err" &
  SERVER=$!
  for _ in $(seq 200); do
    pid=$("$BIN" status "$conf" --json 2>/dev/null | node -e '
      let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const w=(JSON.parse(s).workers||[])
      .filter(w=>w.state==="ready");if(w.length===1)console.log(w[0].pid);}catch(_){}})') || true
    [ -n "$pid" ] && break; sleep 0.1
  done
  [ -n "$pid" ] || { echo "gateway worker not ready: $(tail -3 "$TMP/gateway-$port.err")" >&2; exit 1; }
  WORKER=$pid; PORT=$port
}

# Starts the Node reference with one worker: SERVER (its primary), WORKER and PORT.
start_node() {
  local port out
  port=$(free_port); out=$TMP/node-$port.out
  PING_INTERVAL=20000 PING_TIMEOUT=60000 WORKERS=1 node bench/node-gateway/server.js "$port" \
    > "$out" 2> "$TMP/node-$port.err" &
  SERVER=$!
  for _ in $(seq 100); do grep -q '^workers' "$out" 2>/dev/null && break; sleep 0.1; done
  grep -q '^workers' "$out" || { echo "node gateway not ready: $(tail -3 "$TMP/node-$port.err")" >&2; exit 1; }
  WORKER=$(awk '/^workers/{print $2}' "$out"); PORT=$port
}

for side in ${ONLY//,/ }; do
  case "$side" in
    ours-v4) protocol=v4; start=start_ours;;
    ours-0.9) protocol=0.9; start=start_ours;;
    node) protocol=v4; start=start_node;;
    *) echo "--only takes ours-v4, ours-0.9 and node, not $side" >&2; exit 2;;
  esac
  for n in $CLIENTS; do
    # A fresh server per count: its idle RSS is the baseline.
    $start
    echo "== $side: $n idle clients, worker $WORKER" >&2
    if out=$(PROTOCOL=$protocol IDLE_HOLD=$HOLD CONNECT_TIMEOUT=120 timeout $((HOLD + 200)) \
        node bench/roundtrip/load.js "http://127.0.0.1:$PORT" "$n" 0 "$WORKER" 2>>"$TMP/load-$side.err"); then
      echo "$out" | sed "s/^{/{\"side\":\"$side\",/" >> "$RESULTS"
      echo "   $out" >&2
    else
      echo "{\"side\":\"$side\",\"clients\":$n,\"failed\":true}" >> "$RESULTS"
      echo "   failed: $(tail -2 "$TMP/load-$side.err")" >&2
    fi
    stop_server
  done
done

mkdir -p bench/results
node bench/roundtrip/idle_report.js "$RESULTS" bench/results/idle.json bench/results/idle.md "$TMP"
cat bench/results/idle.md
plot bench/idle_plot.py bench/results/idle.json bench/results/idle.png
echo "logs: $TMP" >&2
