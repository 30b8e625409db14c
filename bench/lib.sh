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
