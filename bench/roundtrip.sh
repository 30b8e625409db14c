#!/usr/bin/env bash
# Round-trip benchmark of the socket.io gateway: client -> gateway -> RabbitMQ agent queue
# (`testCall`) -> echo agent -> client queue -> gateway -> `push` -> client ack. For each client
# count (default 1 10 100 1000) it reports round trips/s, latency p50/p99/max and the CPU time
# per round trip of every gateway process summed (ours: master, 2 workers and the standby;
# Node: primary and 2 workers); the same load against bench/node-gateway/server.js (socket.io 4
# + amqplib + node cluster, 2 workers) for a side-by-side ratio. `--protocol 0.9` drives
# socket.io 0.9 clients (socket.io-client 0.9.17, what the ActiveStack SDKs load) instead of
# socket.io-client 4; the Node reference serves socket.io 4 only, so it is left out then.
#
# `--rounds R` measures every count R times, ours and Node alternating (both servers run
# throughout; which goes first swaps each round), and reports each side's median run per count:
# the CPU per round trip of one run moves by ±15% with what else the host does.
# Usage: bench/roundtrip.sh [--protocol v4|0.9] [--only ours|node] [--clients "1 100 1000"]
#                           [--seconds 5] [--rounds 1]
#        SKIP_BUILD=1 to skip `cargo build --release` (the binary: $CARGO_TARGET_DIR/release,
#        target/release by default).
# Needs: RabbitMQ on 127.0.0.1:5672 (guest/guest), node >= 18. Installs its npm packages
# (package-lock.json) into bench/roundtrip and bench/node-gateway if missing.
# Output: bench/results/roundtrip.{md,json} and, with matplotlib, roundtrip.png (git-ignored;
# with --protocol 0.9: roundtrip-0.9.*); logs in a
# temp dir printed at the end. Loopback only; every run is bounded (connect <= 60 s, measure
# <= --seconds and <= 2,000,000 round trips).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ROOT=$PWD
ONLY=""; CLIENTS="1 10 100 1000"; SECONDS_PER_RUN=5; PROTOCOL=v4; ROUNDS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --protocol) PROTOCOL=$2; shift 2;;
    --only) ONLY=$2; shift 2;;
    --clients) CLIENTS=$2; shift 2;;
    --seconds) SECONDS_PER_RUN=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    -h|--help) sed -n 2,23p "$0"; exit 0;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
case "$PROTOCOL" in
  v4) OUT=roundtrip;;
  0.9)
    OUT=roundtrip-0.9
    [ "$ONLY" != node ] || { echo "the Node reference serves socket.io 4 only" >&2; exit 2; }
    ONLY=ours;;
  *) echo "--protocol is v4 or 0.9, not $PROTOCOL" >&2; exit 2;;
esac
export PROTOCOL
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export CLK_TCK
CLK_TCK=$(getconf CLK_TCK)

[ -n "${SKIP_BUILD:-}" ] || cargo build --release
BIN=${CARGO_TARGET_DIR:-target}/release/activestack-gateway
for need in bench/roundtrip/node_modules/socket.io-client-legacy bench/node-gateway/node_modules; do
  d=${need%%/node_modules*}
  [ -d "$need" ] || (cd "$d" && npm ci --no-audit --no-fund)
done

TMP=$(mktemp -d /tmp/roundtrip.XXXXXX)
RESULTS=$TMP/results.jsonl
: > "$RESULTS"
PIDS_TO_KILL=()
cleanup() {
  for p in "${PIDS_TO_KILL[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS_TO_KILL[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT


# The echo agent.
node bench/roundtrip/agent.js > "$TMP/agent.out" 2> "$TMP/agent.err" &
AGENT=$!; PIDS_TO_KILL+=("$AGENT")
for _ in $(seq 100); do grep -q ready "$TMP/agent.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$TMP/agent.out" || { echo "echo agent did not start:"; cat "$TMP/agent.err"; exit 1; }

# CPU of the other processes sharing the 2 cores, reported per run (read-only lookups).
RABBIT=$(pgrep -o -x beam.smp || true)
export OTHER_PIDS="agent:$AGENT${RABBIT:+,rabbitmq:$RABBIT}"

run_one() { # side url pids clients round
  local side=$1 url=$2 pids=$3 n=$4 round=$5 out
  echo "== $side, $n socket.io $PROTOCOL clients (round $round)" >&2
  if out=$(timeout $((SECONDS_PER_RUN + 90)) node bench/roundtrip/load.js "$url" "$n" "$SECONDS_PER_RUN" "$pids" 2>>"$TMP/load-$side.err"); then
    echo "$out" | sed "s/^{/{\"side\":\"$side\",\"round\":$round,/" >> "$RESULTS"
    echo "   $out" >&2
  else
    echo "{\"side\":\"$side\",\"round\":$round,\"clients\":$n,\"failed\":true}" >> "$RESULTS"
    echo "   failed: $(tail -2 "$TMP/load-$side.err")" >&2
  fi
  sleep 1
}

OURS_URL=""; NODE_URL=""
if [ "$ONLY" != node ]; then
  PORT=$(free_port)
  CONF=$TMP/gateway.properties
  cat > "$CONF" <<CONF
frontend.host=127.0.0.1
frontend.port=$PORT
frontend.logLevel=warn
frontend.session_secret=roundtrip-bench-secret
cluster.workerCount=2
cluster.controlSocket=$TMP/control.sock
gateway.rabbitmq.host=127.0.0.1
gateway.rabbitmq.port=5672
CONF
  "$BIN" server "$CONF" > "$TMP/gateway.out" 2> "$TMP/gateway.err" &
  MASTER=$!; PIDS_TO_KILL+=("$MASTER")
  WPIDS=""
  for _ in $(seq 200); do
    WPIDS=$("$BIN" status "$CONF" --json 2>/dev/null | node -e '
      let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const j=JSON.parse(s);
      const w=(j.workers||[]).filter(w=>w.role==="gateway"&&w.state==="ready");
      const sb=(j.standby||[]).filter(w=>w.state==="ready");
      if(w.length===2&&sb.length===1)console.log([j.master_pid,...w.map(w=>w.pid),sb[0].pid].join(","));}catch(_){}})') || true
    [ -n "$WPIDS" ] && break; sleep 0.1
  done
  [ -n "$WPIDS" ] || { echo "gateway workers not ready:"; tail "$TMP/gateway.err"; exit 1; }
  echo "gateway master $MASTER workers $WPIDS port $PORT" >&2
  OURS_URL="http://127.0.0.1:$PORT"
fi

if [ "$ONLY" != ours ]; then
  PORT=$(free_port)
  node bench/node-gateway/server.js "$PORT" > "$TMP/node.out" 2> "$TMP/node.err" &
  NMASTER=$!; PIDS_TO_KILL+=("$NMASTER")
  for _ in $(seq 100); do grep -q '^workers' "$TMP/node.out" 2>/dev/null && break; sleep 0.1; done
  NPIDS=$NMASTER,$(awk '/^workers/{print $2","$3}' "$TMP/node.out")
  [ -n "$NPIDS" ] || { echo "node gateway not ready:"; cat "$TMP/node.err"; exit 1; }
  echo "node primary $NMASTER workers $NPIDS port $PORT" >&2
  NODE_URL="http://127.0.0.1:$PORT"
fi

for round in $(seq "$ROUNDS"); do
  for n in $CLIENTS; do
    sides="ours node"; [ $((round % 2)) -eq 0 ] && sides="node ours"
    for side in $sides; do
      case $side in
        ours) [ -z "$OURS_URL" ] || run_one ours "$OURS_URL" "$WPIDS" "$n" "$round";;
        node) [ -z "$NODE_URL" ] || run_one node "$NODE_URL" "$NPIDS" "$n" "$round";;
      esac
    done
  done
done
if [ -n "$OURS_URL" ]; then
  "$BIN" status "$CONF" --json > "$TMP/gateway-status-after.json" 2>/dev/null || true
  kill "$MASTER"; wait "$MASTER" 2>/dev/null || true
fi
if [ -n "$NODE_URL" ]; then
  kill "$NMASTER"; wait "$NMASTER" 2>/dev/null || true
fi

mkdir -p bench/results
node bench/roundtrip/report.js "$RESULTS" "bench/results/$OUT.json" "bench/results/$OUT.md" "$TMP"
cat "bench/results/$OUT.md"
plot bench/roundtrip_plot.py "bench/results/$OUT.json" "bench/results/$OUT.png"
echo "logs: $TMP" >&2
