#!/usr/bin/env bash
# The providers' contract fakes on loopback, for the contract tests:
#
#   stripe  Prism serving Stripe's OpenAPI document    http://127.0.0.1:12111
#   twilio  Prism serving Twilio's api_v2010 document  http://127.0.0.1:12112
#   sns     moto, verifying AWS SigV4 signatures       http://127.0.0.1:12113
#   paypal  Prism serving PayPal's Orders v2 document   http://127.0.0.1:12114
#   paypal-payments  Prism serving Payments v2           http://127.0.0.1:12115
#   square  Prism serving Square's API document        http://127.0.0.1:12116
#   adyen   Prism serving Adyen's Checkout v71         http://127.0.0.1:12117
#
# Usage: tests/contracts/fakes.sh start|stop|status
#
# `start` installs what is missing (Prism from npm, moto and boto3 from
# PyPI, pinned) into $SWITCHYARD_FAKES_DIR (default /tmp/switchyard-fakes),
# starts the fakes that are not running, waits until each answers, and
# writes the key pair moto accepts to $SWITCHYARD_FAKES_DIR/run/sns-iam.env.
# Logs: $SWITCHYARD_FAKES_DIR/run/<name>.log (Prism logs its verdict on each
# request there; the tests read it). Needs node, npm, python3 (venv), curl.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${SWITCHYARD_FAKES_DIR:-/tmp/switchyard-fakes}"
RUN="$DIR/run"
PRISM_VERSION=5.14.2
PYTHON_PACKAGES="moto[server]==5.2.5 boto3==1.44.5 PyYAML==6.0.3"
declare -A PORT=([stripe]=12111 [twilio]=12112 [sns]=12113 [paypal]=12114 [paypal-payments]=12115 [square]=12116 [adyen]=12117)
NAMES="stripe twilio sns paypal paypal-payments square adyen"

say() { echo "[fakes] $*" >&2; }
fail() { say "error: $*"; exit 1; }
up() { curl -s -o /dev/null -m 2 "http://127.0.0.1:${PORT[$1]}/"; }
pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }
running() { local p; p="$(pid_of "$1")"; [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; }

install() {
  command -v npm >/dev/null || fail "npm is needed (apt install nodejs npm)"
  command -v curl >/dev/null || fail "curl is needed"
  mkdir -p "$RUN"
  if [[ "$("$DIR/node_modules/.bin/prism" --version 2>/dev/null || true)" != "$PRISM_VERSION" ]]; then
    say "installing Prism $PRISM_VERSION"
    npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error \
      "@stoplight/prism-cli@$PRISM_VERSION" >&2
  fi
  [[ -x "$DIR/venv/bin/python" ]] || python3 -m venv "$DIR/venv"
  if [[ "$(cat "$DIR/venv/.packages" 2>/dev/null || true)" != "$PYTHON_PACKAGES" ]]; then
    say "installing $PYTHON_PACKAGES"
    # shellcheck disable=SC2086
    "$DIR/venv/bin/pip" install --quiet --disable-pip-version-check $PYTHON_PACKAGES >&2
    echo "$PYTHON_PACKAGES" >"$DIR/venv/.packages"
  fi
  local pp="$DIR/paypal.prism.json"
  if [[ ! -s "$pp" || "$HERE/paypal/checkout_orders_v2.json" -nt "$pp" || "$HERE/paypal_prism.py" -nt "$pp" ]]; then
    say "preparing PayPal's Orders document for Prism"
    python3 "$HERE/paypal_prism.py" "$HERE/paypal/checkout_orders_v2.json" "$pp" >&2
  fi
  local sq="$DIR/square.prism.json"
  if [[ ! -s "$sq" || "$HERE/square/api.json" -nt "$sq" || "$HERE/square_prism.py" -nt "$sq" ]]; then
    say "preparing Square's document for Prism"
    python3 "$HERE/square_prism.py" "$HERE/square/api.json" "$sq" >&2
  fi
  local spec="$DIR/stripe.prism.json"
  if [[ ! -s "$spec" || "$HERE/stripe/spec3.yaml" -nt "$spec" || "$HERE/stripe/fixtures3.json" -nt "$spec" \
        || "$HERE/stripe_prism.py" -nt "$spec" ]]; then
    say "preparing Stripe's document for Prism"
    "$DIR/venv/bin/python" "$HERE/stripe_prism.py" "$HERE/stripe/spec3.yaml" \
      "$HERE/stripe/fixtures3.json" "$spec" >&2
  fi
}

launch() {  # name command...
  local name=$1; shift
  if running "$name"; then return; fi
  up "$name" && fail "port ${PORT[$name]} is taken by a process this script did not start"
  # A session of its own, so the fake outlives this shell; exec keeps the pid.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$RUN/$name.pid" "$@" >"$RUN/$name.log" 2>&1 </dev/null &
  for _ in $(seq 50); do [[ -s "$RUN/$name.pid" ]] && break; sleep 0.1; done
  say "started $name (pid $(pid_of "$name"))"
}

await() {  # name seconds
  local start=$SECONDS
  until up "$1"; do
    running "$1" || { tail -n 20 "$RUN/$1.log" >&2; fail "$1 exited while starting"; }
    (( SECONDS - start < $2 )) || fail "$1 did not answer within $2 s (log: $RUN/$1.log)"
    sleep 0.5
  done
  say "$1 answers on http://127.0.0.1:${PORT[$1]} (pid $(pid_of "$1"))"
}

sns_keys() {
  # A fresh moto knows no users: make one allowed every SNS action, then
  # switch moto's signature checking on. Only that key pair works after.
  [[ -s "$RUN/sns-iam.env" && "$(cat "$RUN/sns-iam.pid" 2>/dev/null)" == "$(pid_of sns)" ]] && return
  "$DIR/venv/bin/python" - "http://127.0.0.1:${PORT[sns]}" "$RUN/sns-iam.env" <<'PY'
import json, sys, urllib.request
import boto3
url, out = sys.argv[1], sys.argv[2]
iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="switchyard-tests")
iam.put_user_policy(UserName="switchyard-tests", PolicyName="sns", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sns:*", "Resource": "*"}],
}))
key = iam.create_access_key(UserName="switchyard-tests")["AccessKey"]
enable = urllib.request.Request(url + "/moto-api/reset-auth", data=b"0", method="POST",
                                headers={"Content-Type": "text/plain"})
urllib.request.urlopen(enable).read()
with open(out, "w") as f:
    f.write(f"AWS_ACCESS_KEY_ID={key['AccessKeyId']}\nAWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}\n")
PY
  pid_of sns >"$RUN/sns-iam.pid"
  say "SNS key pair in $RUN/sns-iam.env"
}

case "${1:-}" in
  start)
    install
    launch stripe "$DIR/node_modules/.bin/prism" mock -h 127.0.0.1 -p "${PORT[stripe]}" --errors "$DIR/stripe.prism.json"
    launch twilio "$DIR/node_modules/.bin/prism" mock -h 127.0.0.1 -p "${PORT[twilio]}" --errors "$HERE/twilio/twilio_api_v2010.json"
    launch sns "$DIR/venv/bin/moto_server" -H 127.0.0.1 -p "${PORT[sns]}"
    launch paypal "$DIR/node_modules/.bin/prism" mock -h 127.0.0.1 -p "${PORT[paypal]}" --errors "$DIR/paypal.prism.json"
    launch paypal-payments "$DIR/node_modules/.bin/prism" mock -h 127.0.0.1 -p "${PORT[paypal-payments]}" --errors "$HERE/paypal/payments_payment_v2.json"
    # Square without --errors: Prism's own examples of Square's answers
    # miss fields the document requires, and --errors would turn every
    # answer into a 500. Requests are still validated and the verdict
    # logged (the tests read it).
    launch square "$DIR/node_modules/.bin/prism" mock -h 127.0.0.1 -p "${PORT[square]}" "$DIR/square.prism.json"
    launch adyen "$DIR/node_modules/.bin/prism" mock -h 127.0.0.1 -p "${PORT[adyen]}" --errors "$HERE/adyen/CheckoutService-v71.json"
    await sns 60
    await square 120
    await adyen 120
    await paypal 120
    await paypal-payments 120
    await twilio 120
    # Prism needs a minute or more to load Stripe's document on 2 cores.
    await stripe "${STRIPE_START_TIMEOUT:-420}"
    sns_keys
    ;;
  stop)
    for name in $NAMES; do
      if running "$name"; then kill "$(pid_of "$name")" && say "stopped $name"; fi
      rm -f "$RUN/$name.pid"
    done
    rm -f "$RUN/sns-iam.env" "$RUN/sns-iam.pid"
    ;;
  status)
    for name in $NAMES; do
      if running "$name" && up "$name"; then echo "$name up (pid $(pid_of "$name"))"; else echo "$name down"; fi
    done
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
