#!/usr/bin/env bash
# The client libraries' own suites (TypeScript: node's test runner; Python:
# pytest) against a real `switchyard serve` that each suite starts with
# simulated providers on loopback. Uses target/debug/switchyard (built by
# `cargo test` or `cargo build -p switchyard`) unless SWITCHYARD_BIN is set.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
export SWITCHYARD_BIN="${SWITCHYARD_BIN:-$ROOT/target/debug/switchyard}"
[[ -x "$SWITCHYARD_BIN" ]] || cargo build -q -p switchyard

echo "== TypeScript client (clients/typescript)"
(cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error && npm test)

echo "== Python client (clients/python)"
VENV="$ROOT/target/venv-clients"
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r clients/python/requirements-test.txt
PYTHONPATH="$ROOT/clients/python" PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -m pytest -q clients/python/tests
