#!/usr/bin/env bash
# Fuzz the HTTP API from its own OpenAPI document with schemathesis: every
# operation gets schema-derived and malformed requests, without credentials,
# as a signed-in user and as the operator. The checks: no 5xx, and every
# error is the API's JSON error body (scripts/api_fuzz_checks.py).
#
#   SUPERAPP_API_FUZZ_EXAMPLES  examples per operation (default 25)
#   SUPERAPP_BIN                the binary to serve (default target/debug/superapp)
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${SUPERAPP_API_FUZZ_EXAMPLES:-25}"
bin="${SUPERAPP_BIN:-target/debug/superapp}"
venv="target/schemathesis"
if [ ! -x "$venv/bin/st" ]; then
    echo "installing schemathesis into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet schemathesis==4.32.5
fi
[ -x "$bin" ] || cargo build --locked --bin superapp

scratch="$(mktemp -d)"
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$scratch"
}
trap cleanup EXIT
mkfifo "$scratch/out"
# Every generated sign-up comes from one address: lift that limit, so the
# route is fuzzed past it (its 429 is tested on its own).
SUPERAPP_PASSWORD_ITERATIONS=1000 SUPERAPP_SIGNUPS_PER_CLIENT=1000000 RUST_LOG=error "$bin" serve \
    --listen 127.0.0.1:0 --data-dir "$scratch/data" >"$scratch/out" 2>"$scratch/server.log" &
server=$!
read -r first <"$scratch/out"
base="${first#listening on }"
# Keep draining the server's stdout.
cat "$scratch/out" >/dev/null &
api="$base/api/v1"

json() { python3 -c "import sys, json; print(json.load(sys.stdin)$1)"; }
curl -fsS -X POST "$api/accounts" -H 'content-type: application/json' \
    -d '{"username":"fuzzer","password":"fuzzer-password-1","display_name":"Fuzzer"}' >/dev/null
user_token="$(curl -fsS -X POST "$api/sessions" -H 'content-type: application/json' \
    -d '{"username":"fuzzer","password":"fuzzer-password-1"}' | json "['token']")"
operator_token="$(cat "$scratch/data/operator.token")"

export PYTHONPATH="$PWD/scripts" SCHEMATHESIS_HOOKS=api_fuzz_checks
status=0
for who in anonymous user operator; do
    case "$who" in
        anonymous) auth=() ;;
        user) auth=(-H "Authorization: Bearer $user_token") ;;
        operator) auth=(-H "Authorization: Bearer $operator_token") ;;
    esac
    echo "api fuzz as $who" >&2
    if ! "$venv/bin/st" run "$api/openapi.json" --url "$api" "${auth[@]}" \
        --checks not_a_server_error,error_is_json --max-examples "$examples" \
        --generation-deterministic --no-color >"$scratch/$who.log" 2>&1; then
        cat "$scratch/$who.log" >&2
        status=1
    else
        grep -E 'generated, .* passed' "$scratch/$who.log" || true
    fi
done
if ! kill -0 "$server" 2>/dev/null; then
    echo "the server died during the API fuzz:" >&2
    cat "$scratch/server.log" >&2
    status=1
fi
exit "$status"
