#!/usr/bin/env bash
# Runs every check and test of the project on a fresh Debian machine: installs what is missing,
# starts the local services the tests talk to if they are stopped, then fmt, clippy and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== tests"
cargo nextest run --all-targets --locked --no-fail-fast "$@"
