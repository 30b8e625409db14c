#!/usr/bin/env bash
# Installs the tools the tests need and starts the local services they use, if stopped.
# Idempotent: does nothing that is already done.
set -euo pipefail

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done

cd "$(dirname "$0")/.."
scripts/services.sh

# --- Prometheus: tests/metrics.rs runs the Grafana dashboard's queries on a real one ---
if ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing prometheus"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi

# --- the socket.io test clients ---
if ! command -v node >/dev/null 2>&1; then
  echo "== installing nodejs"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
if [ ! -d tests/e2e/node_modules/centrifuge ] || [ ! -d tests/e2e/node_modules/socket.io-client ] \
  || [ ! -d tests/e2e/node_modules/socket.io-client-legacy ]; then
  echo "== npm ci tests/e2e"
  npm ci --prefix tests/e2e --no-audit --no-fund
fi
# --- the demo page's browser test: Debian's chromium, driven by npm playwright-core (which
# downloads no browser of its own) ---
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "== npm ci tests/browser"
  npm ci --prefix tests/browser --no-audit --no-fund
fi
if ! tests/e2e/.venv/bin/python -c "import socketio, websocket, cent" >/dev/null 2>&1; then
  echo "== python venv tests/e2e/.venv (python-socketio)"
  if ! python3 -m venv tests/e2e/.venv >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    rm -rf tests/e2e/.venv
    python3 -m venv tests/e2e/.venv
  fi
  tests/e2e/.venv/bin/pip install -q -r tests/e2e/requirements.txt
fi
