#!/usr/bin/env bash
# Property-based check of the HTTP API against its own OpenAPI document
# (schemathesis 4.32.5, from PyPI): generated and mutated requests for
# every operation, checking that every status, header, content type and
# body is the documented one (an undocumented 500 fails), that invalid
# input is refused, that auth is enforced and that unsupported methods
# are answered properly. Not checked: "any 5xx" (a run against the dead
# providers below answers the documented 502 `all-failed` or 504) and
# "every schema-valid body is accepted" (the server refuses some bodies
# the document cannot express: `max_in_flight` above this server's pool,
# `burst` without `rate_per_sec`, definition bodies' cross-field rules).
#
#   tests/api-fuzz.sh [SECONDS]     # default 120; bounded by --max-time
#
# Starts `switchyard serve` (dev build) on loopback with a small config
# whose providers point at a closed port (runs fail fast as `unavailable`),
# runs schemathesis, stops the server. Exit code: schemathesis's.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
SECONDS_BUDGET="${1:-120}"
VENV="$ROOT/target/toolchains/schemathesis"
if [[ ! -x "$VENV/bin/st" ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q schemathesis==4.32.5
fi
cargo build -q -p switchyard
DIR="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$DIR"' EXIT
ACTIONS='[{"name": "send", "method": "POST", "path": "/v1/messages", "input": {"to": {"type": "string"}, "text": {"type": "string"}}}]'
cat > "$DIR/switchyard.toml" <<TOML
[server]
listen = "127.0.0.1:0"
store = "fuzz.db"
# schemathesis sends wrong tokens on purpose: do not throttle it.
auth_failures_per_minute = 1000000

[products.notify]
envs = ["dev"]

[products.notify.apps.primary]
plugin = "bundled:http"
[products.notify.apps.primary.envs.dev]
allow = ["http://127.0.0.1:9"]
config = { base_url = "http://127.0.0.1:9", ping_path = "/health", actions = '$ACTIONS' }

[products.notify.apps.backup]
plugin = "bundled:http"
[products.notify.apps.backup.envs.dev]
allow = ["http://127.0.0.1:9"]
config = { base_url = "http://127.0.0.1:9", ping_path = "/health", actions = '$ACTIONS' }

[products.notify.healthchecks.primary-health]
app = "primary"
action = "ping"
input = { dev = {} }
interval_ms = 60000

[products.notify.fallbacks.sms]
input = { to = { type = "string" }, text = { type = "string" } }
options = [
  { provider = "primary", app = "primary", action = "send" },
  { provider = "backup", app = "backup", action = "send" },
]
TOML

export SWITCHYARD_TOKEN="fuzz-token-0123456789"
"$ROOT/target/debug/switchyard" serve "$DIR/switchyard.toml" > "$DIR/out" 2> "$DIR/err" &
PID=$!
for _ in $(seq 1 100); do
  BASE="$(grep -o 'http://[0-9.:]*' "$DIR/out" | head -1 || true)"
  [[ -n "$BASE" ]] && break
  sleep 0.1
done
[[ -n "${BASE:-}" ]] || { cat "$DIR/err" >&2; echo "server did not start" >&2; exit 1; }
echo "== schemathesis against $BASE for up to ${SECONDS_BUDGET}s"
"$VENV/bin/st" run "$BASE/openapi.json" \
  -H "Authorization: Bearer $SWITCHYARD_TOKEN" \
  --checks status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,ignored_auth \
  --max-time "$SECONDS_BUDGET" \
  --max-examples 40 \
  --request-timeout 10 \
  --workers 2 \
  --phases examples,fuzzing,stateful \
  --exclude-path /v1/events \
  --seed 1
