#!/usr/bin/env bash
# End-to-end throughput over HTTP, side by side in one run:
#   toolgate serve, a trivial task (echo.echo) per request, through auth, rate
#   limit, policy gate, sandbox, events and store;
#   wasmtime serve, a hello-world wasi:http component per request.
# The same load generator (oha) against both, on loopback.
#
# Needs: oha and wasmtime (wasmtime-cli 48) on PATH, e.g.
#   cargo install oha && cargo install wasmtime-cli --version 48.0.8
# Usage: benches/http/run.sh [DURATION] [CONNECTIONS]   (defaults: 10s 32)
set -euo pipefail
# wasmtime captures a backtrace while dropping every store when this is set; neither side should pay for it.
export RUST_BACKTRACE=0
cd "$(dirname "$0")/../.."
duration="${1:-10s}"
connections="${2:-32}"

cargo build --release --quiet
artifacts=$(ls -d target/wasm-plugins/wasm32-wasip2/release)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

# toolgate: the echo plugin, a policy that lets the bench principal run it, no rate limit to speak of.
mkdir -p "$work/plugins" "$work/policies"
cp "$artifacts/echo.wasm" "$work/plugins/"
cp policies/schema.cedarschema policies/entities.json "$work/policies/"
cat > "$work/policies/bench.cedar" <<'CEDAR'
@id("bench.echo")
permit (principal, action == Action::"invoke", resource in Plugin::"echo")
when { principal in context.profile };
@id("bench.sessions")
permit (principal, action == Action::"create_session", resource)
when { principal in resource };
CEDAR
cat > "$work/config.toml" <<'TOML'
rate_limit = 1000000
rate_burst = 1000000
TOML
TOOLGATE_LOG=warn target/release/toolgate serve --listen 127.0.0.1:18181 --data-dir "$work/data" \
  --policies "$work/policies" --plugins "$work/plugins" --config "$work/config.toml" 2>"$work/toolgate.log" &
wasmtime serve -Scli --addr 127.0.0.1:18182 "$artifacts/http_hello.wasm" 2>"$work/wasmtime.log" &
for _ in $(seq 1 100); do
  [ -f "$work/data/admin.key" ] && curl -sf 127.0.0.1:18181/readyz >/dev/null && curl -sf 127.0.0.1:18182/ >/dev/null && break
  sleep 0.2
done
key=$(cat "$work/data/admin.key")
session=$(curl -sf -H "Authorization: Bearer $key" -H 'content-type: application/json' -d '{}' \
  127.0.0.1:18181/v1/sessions | sed -E 's/.*"id":"([^"]+)".*/\1/')

echo "== toolgate: POST /v1/sessions/{id}/tasks {tool: echo.echo} =="
oha -z "$duration" -c "$connections" --no-tui -m POST -H "Authorization: Bearer $key" \
  -H 'content-type: application/json' -d '{"tool":"echo.echo","input":{"a":1}}' \
  "http://127.0.0.1:18181/v1/sessions/$session/tasks"
echo "== wasmtime serve: GET / (hello-world wasi:http) =="
oha -z "$duration" -c "$connections" --no-tui "http://127.0.0.1:18182/"
