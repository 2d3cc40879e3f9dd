#!/usr/bin/env bash
# MCP `tools/call` against the same task over the plain API, in one run on one server:
#   api        POST /v1/sessions/{id}/tasks {tool: echo.echo}
#   stateless  POST /mcp tools/call echo.echo, 2026-07-28 (no MCP session), naming the session
#   mcp        POST /mcp tools/call echo.echo in a 2025-11-25 MCP session bound to that session
# The same load generator (oha) against each, on loopback, in turns repeated ROUNDS times so
# that noise of the machine falls on all alike: throughput with CONNECTIONS connections (api,
# stateless), then latency with one connection (api, stateless, mcp). oha sends the same body
# every time, so the same JSON-RPC id: in one MCP session, requests in flight together must not
# share an id (the answers would be mixed up), so the session mode is measured one at a time.
#
# Needs: oha on PATH (cargo install oha).
# Usage: benches/mcp/run.sh [DURATION] [CONNECTIONS] [ROUNDS]   (defaults: 10s 32 2)
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "$0")/../.."
duration="${1:-10s}"
connections="${2:-32}"
rounds="${3:-2}"

if [ -z "${TOOLGATE_BIN:-}" ]; then
  cargo build --release --quiet
  TOOLGATE_BIN=target/release/toolgate
fi
artifacts=$(ls -d target/wasm-plugins/wasm32-wasip2/release)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

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

port=18191
TOOLGATE_LOG=warn "$TOOLGATE_BIN" serve --listen 127.0.0.1:$port --data-dir "$work/data" \
  --policies "$work/policies" --plugins "$work/plugins" --config "$work/config.toml" 2>"$work/toolgate.log" &
for _ in $(seq 1 100); do [ -f "$work/data/admin.key" ] && break; sleep 0.2; done
wait_for 127.0.0.1:$port/readyz
base=http://127.0.0.1:$port
key=$(cat "$work/data/admin.key")
auth="Authorization: Bearer $key"
accept='Accept: application/json, text/event-stream'
session=$(curl -sf -H "$auth" -H 'content-type: application/json' -d '{}' $base/v1/sessions \
  | sed -E 's/.*"id":"([^"]+)".*/\1/')

# A 2025-11-25 MCP session bound to the same session.
mcp_session=$(curl -s -D - -o /dev/null -X POST "$base/mcp?session=$session" -H "$auth" -H "$accept" \
  -H 'content-type: application/json' \
  -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' \
  | tr -d '\r' | sed -n 's/^mcp-session-id: //Ip')
curl -sf -o /dev/null -X POST $base/mcp -H "$auth" -H "$accept" -H 'content-type: application/json' \
  -H "mcp-session-id: $mcp_session" -H 'mcp-protocol-version: 2025-11-25' \
  -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'

call='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo.echo","arguments":{"a":1}}}'
stateless='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo.echo","arguments":{"a":1},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'

# Each answer checked once before measuring.
curl -sf -X POST $base/mcp -H "$auth" -H "$accept" -H 'content-type: application/json' \
  -H "mcp-session-id: $mcp_session" -H 'mcp-protocol-version: 2025-11-25' -d "$call" | grep -q '"isError":false'
curl -sf -X POST "$base/mcp?session=$session" -H "$auth" -H "$accept" -H 'content-type: application/json' \
  -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/call' -H 'mcp-name: echo.echo' \
  -d "$stateless" | grep -q '"isError":false'

measure() {
  local name=$1; shift
  oha -z "$duration" -c "$connections" --no-tui --output-format json -m POST -H "$auth" \
    -H 'content-type: application/json' "$@" > "$work/$name-$round.json"
}
for round in $(seq 1 "$rounds"); do
  measure api -d '{"tool":"echo.echo","input":{"a":1}}' "$base/v1/sessions/$session/tasks"
  measure stateless -H "$accept" -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/call' \
    -H 'mcp-name: echo.echo' -d "$stateless" "$base/mcp?session=$session"
  connections=1
  measure api1 -d '{"tool":"echo.echo","input":{"a":1}}' "$base/v1/sessions/$session/tasks"
  measure stateless1 -H "$accept" -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/call' \
    -H 'mcp-name: echo.echo' -d "$stateless" "$base/mcp?session=$session"
  measure mcp1 -H "$accept" -H "mcp-session-id: $mcp_session" -H 'mcp-protocol-version: 2025-11-25' \
    -d "$call" "$base/mcp"
  connections="${2:-32}"
done

python3 - "$work" "$rounds" "$connections" <<'PY'
import json, sys
work, rounds, connections = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def line(names):
    out = []
    for name in names:
        report = json.load(open(f"{work}/{name}-{round}.json"))
        summary, lat = report["summary"], report["latencyPercentiles"]
        codes = report.get("statusCodeDistribution", {})
        bad = sum(n for code, n in codes.items() if code != "200")
        out.append(f"{name.rstrip('1')} {summary['requestsPerSec']:.0f} req/s (p50 {lat['p50']*1e3:.2f} ms, "
                   f"p99 {lat['p99']*1e3:.2f} ms{', ' + str(bad) + ' not 200' if bad else ''})")
    return "; ".join(out)
for round in range(1, rounds + 1):
    print(f"round {round}, {connections} connections: " + line(["api", "stateless"]))
    print(f"round {round}, 1 connection: " + line(["api1", "stateless1", "mcp1"]))
PY
