#!/usr/bin/env bash
# Build the Python and JavaScript adapters into WebAssembly components.
#
#   plugins/build-polyglot.sh [vonage|slack|echo-py|echo-js ...]
#
# Toolchains are pinned and installed on first use, inside the repository's
# target dir (nothing global):
#   componentize-py 0.25.1  (PyPI, into a venv)      → plugins/vonage-py
#   componentize-js 0.23.0  (npm, exact versions in package.json) → plugins/slack-js
# Output: $SWITCHYARD_POLYGLOT_DIR (default target/polyglot)/{vonage,slack,echo-py,echo-js}.wasm
# (echo-py and echo-js: the host's test programs in tests/programs/).
# A component is rebuilt only when its sources, the WIT, the SDK or the
# toolchain version changed (a stamp file records what it was built from).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0   # also pinned in plugins/slack-js/package.json
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${SWITCHYARD_POLYGLOT_DIR:-$TARGET/polyglot}"
TOOLS="$TARGET/toolchains"
WIT="$ROOT/wit"
# Both shipped polyglot adapters target the exchange world: pure steps, the
# host sends each request (no wasi:http in the component).
WORLD="switchyard:adapter/exchange-adapter@0.2.0"
# The test programs echo-py and echo-js also export `exchange-reading`.
READING_WORLD="switchyard:adapter/exchange-reading-adapter@0.2.0"
mkdir -p "$OUT" "$TOOLS"

# Hash of everything a component is built from, to skip needless rebuilds.
fingerprint() {
  { echo "$@"; find "$WIT" "$@" -type f \( -name '*.wit' -o -name '*.py' -o -name '*.js' -o -name 'package*.json' \) \
      -not -path '*/node_modules/*' -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-32
}

up_to_date() { # name fingerprint
  [[ -f "$OUT/$1.wasm" && -f "$OUT/$1.stamp" && "$(cat "$OUT/$1.stamp")" == "$2" ]]
}

# build_py NAME SOURCE-DIR WORLD: the module `app` in SOURCE-DIR.
build_py() {
  local name="$1" src="$2" world="$3" sdk="$ROOT/guest-sdk/python"
  local fp; fp="$(fingerprint "$src" "$sdk") py-$COMPONENTIZE_PY_VERSION $world"
  if up_to_date "$name" "$fp"; then echo "$name: up to date ($OUT/$name.wasm)"; return; fi
  local venv="$TOOLS/componentize-py-$COMPONENTIZE_PY_VERSION"
  if [[ ! -x "$venv/bin/componentize-py" ]]; then
    echo "$name: installing componentize-py $COMPONENTIZE_PY_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
  fi
  local have; have="$("$venv/bin/componentize-py" --version | awk '{print $2}')"
  [[ "$have" == "$COMPONENTIZE_PY_VERSION" ]] || { echo "componentize-py is $have, expected $COMPONENTIZE_PY_VERSION; remove $venv" >&2; exit 1; }
  echo "$name: componentize-py $have → $OUT/$name.wasm"
  local started=$SECONDS
  "$venv/bin/componentize-py" -d "$WIT" -w "$world" componentize app \
    -p "$src" -p "$sdk" -o "$OUT/$name.wasm.tmp"
  mv "$OUT/$name.wasm.tmp" "$OUT/$name.wasm"
  echo "$fp" > "$OUT/$name.stamp"
  echo "$name: $(stat -c %s "$OUT/$name.wasm") bytes in $((SECONDS - started)) s"
}

# build_js NAME SOURCE-DIR WORLD: SOURCE-DIR/adapter.js, with the SDK beside
# it. The toolchain is installed in plugins/slack-js (its package.json).
build_js() {
  local name="$1" src="$2" world="$3" sdk="$ROOT/guest-sdk/js" tool="$ROOT/plugins/slack-js"
  local fp; fp="$(fingerprint "$src" "$sdk" "$tool/package.json") js-$COMPONENTIZE_JS_VERSION $world"
  if up_to_date "$name" "$fp"; then echo "$name: up to date ($OUT/$name.wasm)"; return; fi
  command -v npm >/dev/null || { echo "$name: npm is required (apt-get install nodejs npm)" >&2; exit 1; }
  local cli="$tool/node_modules/.bin/componentize-js"
  if [[ ! -x "$cli" ]]; then
    echo "$name: installing componentize-js $COMPONENTIZE_JS_VERSION (npm install in $tool)"
    # package.json pins componentize-js and preview2-shim (which it imports
    # at run time without declaring it) to exact versions; no lock file is
    # kept: one written here leaves out other platforms' optional packages
    # and `npm ci` refuses it elsewhere.
    (cd "$tool" && npm install --no-audit --no-fund --no-save --loglevel=error)
  fi
  local have; have="$(node -p "require('$tool/node_modules/@bytecodealliance/componentize-js/package.json').version")"
  [[ "$have" == "$COMPONENTIZE_JS_VERSION" ]] || { echo "componentize-js is $have, expected $COMPONENTIZE_JS_VERSION; run npm ci in $tool" >&2; exit 1; }
  # componentize-js resolves relative imports inside the source's folder:
  # stage the adapter and the SDK together.
  local stage="$TARGET/polyglot-src/$name"
  rm -rf "$stage" && mkdir -p "$stage"
  cp "$src/adapter.js" "$sdk/switchyard-guest.js" "$stage/"
  echo "$name: componentize-js $have → $OUT/$name.wasm"
  local started=$SECONDS
  # Features: no `random` (crypto unused: deterministic instead of importing
  # wasi:random), no `clocks` (no timers: the host bounds every call), no
  # `http` (the exchange world has no network of its own: the host sends),
  # no `fetch-event` (not an HTTP server). `stdio` stays: a JS error reaches
  # the host's stderr capture and shows in the attempt's message.
  "$cli" --wit "$WIT" -n "$world" -d random clocks http fetch-event \
    -o "$OUT/$name.wasm.tmp" "$stage/adapter.js"
  mv "$OUT/$name.wasm.tmp" "$OUT/$name.wasm"
  echo "$fp" > "$OUT/$name.stamp"
  echo "$name: $(stat -c %s "$OUT/$name.wasm") bytes in $((SECONDS - started)) s"
}

targets=("$@")
((${#targets[@]})) || targets=(vonage slack echo-py echo-js)
for t in "${targets[@]}"; do
  case "$t" in
    vonage) build_py vonage "$ROOT/plugins/vonage-py" "$WORLD" ;;
    slack) build_js slack "$ROOT/plugins/slack-js" "$WORLD" ;;
    # Test programs: the host reads a JSON success of theirs itself.
    echo-py) build_py echo-py "$ROOT/tests/programs/echo-py" "$READING_WORLD" ;;
    echo-js) build_js echo-js "$ROOT/tests/programs/echo-js" "$READING_WORLD" ;;
    *) echo "unknown adapter '$t' (known: vonage, slack, echo-py, echo-js)" >&2; exit 2 ;;
  esac
done
