# Shell helpers the bench scripts source (from the repository root).

# A TCP port free on 127.0.0.1 right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# plot SCRIPT JSON PNG: runs a bench/*_plot.py with a python that has matplotlib (bench/.venv's
# first), or says why there is no plot.
plot() {
  local py=python3
  if [[ -x bench/.venv/bin/python ]] && bench/.venv/bin/python -c 'import matplotlib' 2>/dev/null; then
    py=bench/.venv/bin/python
  fi
  if "$py" -c 'import matplotlib' 2>/dev/null; then
    "$py" "$1" "$2" "$3"
    echo "plot: $3" >&2
  else
    echo "no matplotlib (bench/run-supervisor.sh installs it into bench/.venv): no plot" >&2
  fi
}

# The round-trip scripts that drive one worker (profile.sh, callgrind.sh) keep their background
# processes in PIDS_TO_KILL and killed on exit.

# start_echo_agent DIR: the echo agent (bench/roundtrip/agent.js), until it says it is ready.
start_echo_agent() {
  node bench/roundtrip/agent.js > "$1/agent.out" 2> "$1/agent.err" &
  PIDS_TO_KILL+=("$!")
  for _ in $(seq 100); do grep -q ready "$1/agent.out" 2>/dev/null && break; sleep 0.1; done
}

# ready_worker BIN CONF TRIES: prints the pid of the cluster's first ready worker, asking its
# status every 0.1 s up to TRIES times; if none is ready by then, shows the end of the
# gateway.err beside CONF and fails.
ready_worker() {
  local bin=$1 conf=$2 tries=$3 worker=""
  for _ in $(seq "$tries"); do
    worker=$("$bin" status "$conf" --json 2>/dev/null | python3 -c '
import json, sys
try:
    w = [w for w in json.load(sys.stdin).get("workers", []) if w.get("state") == "ready"]
    print(w[0]["pid"] if w else "")
except Exception:
    print("")') || true
    [ -n "$worker" ] && break; sleep 0.1
  done
  [ -n "$worker" ] || { echo "worker not ready:" >&2; tail "$(dirname "$conf")/gateway.err" >&2; return 1; }
  echo "$worker"
}

# start_measured_load DIR URL CLIENTS SECONDS WORKER TRIES: bench/roundtrip/load.js in the
# background (LOAD), until its measure window opens (it prints "measuring" on stderr), checking
# every 0.1 s up to TRIES times; exits the script if it does not. Output: DIR/load.{json,err}.
start_measured_load() {
  local dir=$1
  node bench/roundtrip/load.js "$2" "$3" "$4" "$5" > "$dir/load.json" 2> "$dir/load.err" &
  LOAD=$!
  PIDS_TO_KILL+=("$LOAD")
  for _ in $(seq "$6"); do
    grep -q measuring "$dir/load.err" 2>/dev/null && break
    kill -0 "$LOAD" 2>/dev/null || break
    sleep 0.1
  done
  grep -q measuring "$dir/load.err" || { echo "the load did not start:" >&2; tail "$dir/load.err" >&2; exit 1; }
}
