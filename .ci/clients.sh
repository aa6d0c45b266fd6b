#!/usr/bin/env bash
# Clients generated from openapi/openapi.yaml, with pinned tools: the spec passes Redocly's
# recommended lint with no warning; a TypeScript client (openapi-typescript + openapi-fetch)
# type-checks under `tsc --strict` against a program calling every operation; a Python client
# (openapi-python-client) drives a running server through the main webhook loop.
# Needs Node (npm) and Python 3, and target/debug/hookrelay (built by `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
clients=.ci/clients

(cd "$clients" && npm ci --no-audit --no-fund --loglevel=error)

echo "redocly lint (recommended rules)"
lint=$("$clients/node_modules/.bin/redocly" lint openapi/openapi.yaml --format=summary 2>&1) || {
  echo "$lint"
  exit 1
}
if grep -qE '^(warning|error) ' <<<"$lint"; then
  echo "$lint"
  echo "redocly lint found problems in openapi/openapi.yaml" >&2
  exit 1
fi

echo "TypeScript client: generate, then tsc --strict"
"$clients/node_modules/.bin/openapi-typescript" openapi/openapi.yaml -o "$clients/generated/api.d.ts" --silent
(cd "$clients" && node_modules/.bin/tsc -p .)

echo "Python client: generate, then run against a server"
version=0.29.1
venv=target/openapi-python-client-$version
if [ ! -x "$venv/bin/openapi-python-client" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "openapi-python-client==$version"
fi
generated=target/clients/python
rm -rf "$generated"
mkdir -p "$generated"
# The one warning expected: the spec route's YAML answer has no Python model.
"$venv/bin/openapi-python-client" generate --path openapi/openapi.yaml --meta none \
  --output-path "$generated/hookrelay_client" >"$generated/generate.log" 2>&1 || {
  cat "$generated/generate.log"
  exit 1
}
if grep -E 'Unable to process|Could not find|Failure to process' "$generated/generate.log"; then
  echo "openapi-python-client could not generate every model" >&2
  exit 1
fi

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATABASE_URL="sqlite://$dir/hookrelay.db" HOOKRELAY_LISTEN="127.0.0.1:$port" HOOKRELAY_LOG=warn \
  HOOKRELAY_ALLOW_HTTP=true HOOKRELAY_ALLOW_PRIVATE_TARGETS=true \
  target/debug/hookrelay serve >"$dir/stdout" 2>"$dir/stderr" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q HOOKRELAY_API_KEY "$dir/stdout" && break
  sleep 0.1
done
project=$(sed -n 's/.*export HOOKRELAY_PROJECT_ID=//p' "$dir/stdout")
key=$(sed -n 's/.*export HOOKRELAY_API_KEY=//p' "$dir/stdout")
PYTHONPATH="$root/$generated" "$venv/bin/python" "$clients/python_client_run.py" \
  "http://127.0.0.1:$port" "$project" "$key"
