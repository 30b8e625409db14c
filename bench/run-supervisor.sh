#!/usr/bin/env bash
# Supervisor benchmark, activestack-gateway vs a plain Node cluster: builds the release binary,
# makes sure matplotlib is there (bench/.venv, else pip --user, else no plot), runs
# bench/supervisor.py. Extra arguments go to supervisor.py (see `--help`).
# Results: bench/results/supervisor.{md,json,png}.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release
fi
command -v node >/dev/null || { echo "node (>= 18) is needed for the baseline" >&2; exit 1; }

PY=python3
if [[ -x bench/.venv/bin/python ]] && bench/.venv/bin/python -c 'import matplotlib' 2>/dev/null; then
  PY=bench/.venv/bin/python
elif ! python3 -c 'import matplotlib' 2>/dev/null; then
  echo "matplotlib missing: installing it into bench/.venv" >&2
  if python3 -m venv bench/.venv && bench/.venv/bin/pip install --quiet matplotlib; then
    PY=bench/.venv/bin/python
  elif python3 -m pip install --quiet --user matplotlib; then
    PY=python3
  else
    echo "matplotlib could not be installed: the table and JSON are still written, no plot" >&2
  fi
fi

exec "$PY" bench/supervisor.py "$@"
