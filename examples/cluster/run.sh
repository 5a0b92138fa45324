#!/usr/bin/env bash
# Three `switchyard serve` replicas sharing one Redis, in front of two
# providers, all on loopback; then a short tour of what they share.
#
#   examples/cluster/run.sh           # start, tour, keep running (Ctrl-C stops all)
#   examples/cluster/run.sh --check   # start, tour with checks, stop; exit 1 on a failed check
#
# Needs redis-server, python3 and curl. PORT_BASE (default 7400) moves every
# port: replicas on +1..+3, providers on +11 and +12, Redis on +13.
# SWITCHYARD names a built binary (default: `cargo build` then target/debug).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
check=0; [[ "${1:-}" == "--check" ]] && check=1
base="${PORT_BASE:-7400}"
redis_port=$((base + 13)); alpha=$((base + 11)); beta=$((base + 12))
work="${CLUSTER_DIR:-$root/target/cluster-$base}"
token="${SWITCHYARD_TOKEN:-cluster-demo-token}"
if [[ -z "${SWITCHYARD:-}" ]]; then
  (cd "$root" && cargo build -q -p switchyard)
  SWITCHYARD="$root/target/debug/switchyard"
fi
for tool in redis-server python3 curl; do
  command -v "$tool" >/dev/null || { echo "run.sh needs $tool (Debian: apt-get install redis-server python3 curl)" >&2; exit 2; }
done

pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT
rm -rf "$work"; mkdir -p "$work/redis"

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --appendonly yes --save "" >"$work/redis.log" 2>&1 &
pids+=($!)
python3 "$here/provider.py" "$alpha" & pids+=($!)
python3 "$here/provider.py" "$beta" & pids+=($!)
for port in "$alpha" "$beta"; do
  for _ in $(seq 1 100); do curl -sf "127.0.0.1:$port/control" >/dev/null && break; sleep 0.05; done
done
for i in 1 2 3; do
  mkdir -p "$work/r$i"
  sed -e "s/{redis}/$redis_port/; s/{replica}/replica-$i/; s/{alpha}/$alpha/g; s/{beta}/$beta/g" \
    "$here/cluster.toml" > "$work/r$i/switchyard.toml"
  SWITCHYARD_TOKEN="$token" "$SWITCHYARD" serve "$work/r$i/switchyard.toml" \
    --listen "127.0.0.1:$((base + i))" >"$work/r$i/serve.log" 2>&1 &
  pids+=($!)
done

failed=0
url() { echo "http://127.0.0.1:$((base + $1))"; }
api() { curl -s -H "authorization: Bearer $token" -H 'content-type: application/json' "$@"; }
for i in 1 2 3; do
  for _ in $(seq 1 600); do curl -sf "$(url "$i")/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "$(url "$i")/readyz" >/dev/null || { echo "replica $i did not start; see $work/r$i/serve.log" >&2; exit 1; }
done
say() { printf '\n== %s\n' "$*"; }
expect() { if ! eval "$1"; then echo "CHECK FAILED: $2" >&2; failed=1; fi; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

say "three replicas: $(url 1) $(url 2) $(url 3) (token: $token), Redis on $redis_port"
for i in 1 2 3; do echo "replica $i: $(curl -s "$(url "$i")/readyz" | tail -n 1)"; done

say "100 quota runs dealt over the three replicas: the 70/30 split holds across them"
for n in $(seq 1 100); do
  code=$(api -o "$work/last-run.json" -w '%{http_code}' -X POST "$(url $(( (n % 3) + 1 )))/v1/demo/dev/quotas/sms-split/run" -d '{"input":{"to":"+1"}}')
  [[ $code == 200 ]] || { echo "run $n answered $code: $(cat "$work/last-run.json")"; failed=1; }
done
a=$(curl -s "127.0.0.1:$alpha/control" | json 'd["messages"]'); b=$(curl -s "127.0.0.1:$beta/control" | json 'd["messages"]')
echo "alpha took $a, beta took $b"
# Within one run: a ticket Redis did not answer within timeout_ms is drawn
# from the replica's own rotation instead.
expect "(( a >= 69 && a <= 71 && a + b == 100 ))" "the split across replicas is 70/30 within one run"

say "one idempotency key sent to replicas 1 and 2: the provider is called once; replica 3 returns the stored outcome"
api -X POST "$(url 1)/v1/demo/dev/fallbacks/sms/run" -d '{"input":{"to":"+2"},"idempotency_key":"order-1"}' | json 'd.get("output")'
api -X POST "$(url 2)/v1/demo/dev/fallbacks/sms/run" -d '{"input":{"to":"+2"},"idempotency_key":"order-1"}' | json '(d.get("output"), d["trace"].get("replayed"))'
replayed=$(api -X POST "$(url 3)/v1/demo/dev/fallbacks/sms/run" -d '{"input":{"to":"+2"},"idempotency_key":"order-1"}' | json 'd["trace"].get("replayed")')
expect "[[ $replayed == True ]]" "replica 3 replays the stored outcome"

say "alpha starts failing; traffic through replica 1 opens its breaker; replicas 2 and 3 skip alpha"
curl -s -X POST "127.0.0.1:$alpha/control" -d '{"fail": true}' >/dev/null
breaker() { api "$(url "$1")/v1/demo/definitions/fallbacks/sms?env=dev" | json 'd["options"][0]["states"]["dev"]["breaker"]["state"]'; }
for n in $(seq 1 100); do
  api -o /dev/null -X POST "$(url 1)/v1/demo/dev/fallbacks/sms/run" -d '{"input":{"to":"+3"}}'
  [[ $(breaker 1) == open ]] && break
done
echo "replica 1 opened alpha's breaker after $n failing runs (more than half its window's requests failed)"
sleep 0.5
for i in 2 3; do
  state=$(breaker "$i")
  echo "replica $i sees alpha's breaker: $state"
  expect "[[ $state == open ]]" "replica $i sees the breaker replica 1 opened"
done
curl -s -X POST "127.0.0.1:$alpha/control" -d '{"fail": false}' >/dev/null

say "a definition changed through replica 2 serves on replicas 1 and 3"
api -o /dev/null -X PATCH "$(url 2)/v1/demo/definitions/quotas/sms-split" -d '{"name": "Changed on replica 2"}'
sleep 0.5
for i in 1 3; do
  name=$(api "$(url "$i")/v1/demo/definitions/quotas/sms-split" | json 'd.get("name")')
  echo "replica $i: $name"
  expect "[[ '$name' == 'Changed on replica 2' ]]" "replica $i has the change"
done

if ((check)); then exit "$failed"; fi
say "running; try it:"
cat <<EOF
  curl -s -H 'authorization: Bearer $token' -X POST $(url 1)/v1/demo/dev/quotas/sms-split/run -d '{"input":{"to":"+1"}}'
  curl -s $(url 2)/readyz                      # says whether Redis is reachable
  curl -s -H 'authorization: Bearer $token' $(url 3)/metrics | grep switchyard_cluster
  redis-cli -p $redis_port shutdown nosave     # replicas go on locally, say DEGRADED, converge when it is back
Logs in $work. Ctrl-C stops everything.
EOF
wait
