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
# TOOLGATE_BINS="a/toolgate b/toolgate" measures several builds in the same run (each
# followed by a wasmtime serve run, so each gets its own ratio); default: this tree's.
set -euo pipefail
# wasmtime captures a backtrace while dropping every store when this is set; neither side should pay for it.
export RUST_BACKTRACE=0
cd "$(dirname "$0")/../.."
duration="${1:-10s}"
connections="${2:-32}"

if [ -z "${TOOLGATE_BINS:-}" ]; then
  cargo build --release --quiet
  TOOLGATE_BINS=target/release/toolgate
fi
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

wait_for() { for _ in $(seq 1 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done; return 1; }
# Requests per second of an oha run, its JSON report on stdin.
rps() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["summary"]["requestsPerSec"]))'; }

wasmtime serve -Scli --addr 127.0.0.1:18182 "$artifacts/http_hello.wasm" 2>"$work/wasmtime.log" &
wait_for 127.0.0.1:18182/

run=0
for bin in $TOOLGATE_BINS; do
  run=$((run + 1))
  data="$work/data-$run"
  TOOLGATE_LOG=warn "$bin" serve --listen 127.0.0.1:18181 --data-dir "$data" \
    --policies "$work/policies" --plugins "$work/plugins" --config "$work/config.toml" 2>"$work/toolgate-$run.log" &
  server=$!
  for _ in $(seq 1 100); do [ -f "$data/admin.key" ] && break; sleep 0.2; done
  wait_for 127.0.0.1:18181/readyz
  key=$(cat "$data/admin.key")
  session=$(curl -sf -H "Authorization: Bearer $key" -H 'content-type: application/json' -d '{}' \
    127.0.0.1:18181/v1/sessions | sed -E 's/.*"id":"([^"]+)".*/\1/')

  echo "== toolgate ($bin): POST /v1/sessions/{id}/tasks {tool: echo.echo} =="
  oha -z "$duration" -c "$connections" --no-tui --output-format json -m POST -H "Authorization: Bearer $key" \
    -H 'content-type: application/json' -d '{"tool":"echo.echo","input":{"a":1}}' \
    "http://127.0.0.1:18181/v1/sessions/$session/tasks" > "$work/toolgate-$run.json"
  kill "$server"; wait "$server" 2>/dev/null || true
  echo "== wasmtime serve: GET / (hello-world wasi:http) =="
  oha -z "$duration" -c "$connections" --no-tui --output-format json "http://127.0.0.1:18182/" > "$work/wasmtime-$run.json"
  t=$(rps < "$work/toolgate-$run.json"); w=$(rps < "$work/wasmtime-$run.json")
  python3 - "$bin" "$t" "$w" "$work/toolgate-$run.json" <<'PY'
import json, sys
bin, t, w, report = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lat = json.load(open(report))["latencyPercentiles"]
print(f"{bin}: toolgate {t} req/s (p50 {lat['p50']*1e3:.2f} ms, p99 {lat['p99']*1e3:.2f} ms), "
      f"wasmtime serve {w} req/s, ratio {t / w:.2f}x")
PY
done
