#!/usr/bin/env bash
# What the hop to a sidecar costs: a trivial task (echo.echo) through an orchestrator that
# runs it in its own process, against one that runs it on a `toolgate sidecar` on the same
# machine, in one run: p50 latency with one connection (the hop's added latency) and
# throughput with many (what the hop keeps of the in-process rate).
#
# Needs: oha on PATH (cargo install oha).
# Usage: benches/sidecar/run.sh [DURATION] [CONNECTIONS]   (defaults: 10s 32)
# TOOLGATE_BIN=path/to/toolgate measures that build instead of this tree's.
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "$0")/../.."
duration="${1:-10s}"
connections="${2:-32}"

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
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/sidecar.token"
cat > "$work/local.toml" <<'TOML'
rate_limit = 1000000
rate_burst = 1000000
TOML
cat > "$work/remote.toml" <<TOML
rate_limit = 1000000
rate_burst = 1000000
local_sidecar = false

[[sidecars]]
id = "bench"
url = "http://127.0.0.1:18183"
token_file = "$work/sidecar.token"
TOML

wait_for() { for _ in $(seq 1 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done; return 1; }

TOOLGATE_LOG=warn "$TOOLGATE_BIN" sidecar --listen 127.0.0.1:18183 --token-file "$work/sidecar.token" \
  --data-dir "$work/sidecar" 2>"$work/sidecar.log" &
sleep 0.5
start() { # NAME PORT CONFIG
  TOOLGATE_LOG=warn "$TOOLGATE_BIN" serve --listen "127.0.0.1:$2" --data-dir "$work/$1" \
    --policies "$work/policies" --plugins "$work/plugins" --config "$3" 2>"$work/$1.log" &
  for _ in $(seq 1 100); do [ -f "$work/$1/admin.key" ] && break; sleep 0.2; done
  wait_for "127.0.0.1:$2/readyz"
}
start local 18181 "$work/local.toml"
start remote 18184 "$work/remote.toml"

# A session on each; the remote one must be on the sidecar.
session() { # NAME PORT
  curl -sf -H "Authorization: Bearer $(cat "$work/$1/admin.key")" -H 'content-type: application/json' \
    -d '{}' "127.0.0.1:$2/v1/sessions"
}
local_session=$(session local 18181)
remote_session=$(session remote 18184)
echo "$remote_session" | grep -q '"sidecar":"bench"' || { echo "the remote session is not on the sidecar: $remote_session"; exit 1; }
id() { echo "$1" | sed -E 's/.*"id":"([^"]+)".*/\1/'; }

load() { # NAME PORT SESSION CONNECTIONS
  oha -z "$duration" -c "$4" --no-tui --output-format json -m POST \
    -H "Authorization: Bearer $(cat "$work/$1/admin.key")" -H 'content-type: application/json' \
    -d '{"tool":"echo.echo","input":{"a":1}}' "http://127.0.0.1:$2/v1/sessions/$3/tasks" \
    > "$work/$1-$4.json"
}
for c in 1 "$connections"; do
  load local 18181 "$(id "$local_session")" "$c"
  load remote 18184 "$(id "$remote_session")" "$c"
done

python3 - "$work" "$connections" <<'PY'
import json, sys
work, many = sys.argv[1], sys.argv[2]
def report(name, c):
    r = json.load(open(f"{work}/{name}-{c}.json"))
    codes = r.get("statusCodeDistribution", {})
    bad = sum(n for code, n in codes.items() if not code.startswith("2"))
    assert bad == 0, f"{name} with {c} connections: answers other than 2xx: {codes}"
    return r["summary"]["requestsPerSec"], r["latencyPercentiles"]["p50"] * 1e6, r["latencyPercentiles"]["p99"] * 1e6
for c in ("1", many):
    (lr, l50, l99), (rr, r50, r99) = report("local", c), report("remote", c)
    print(f"{c:>3} connection(s): in-process {lr:8.0f} req/s p50 {l50:7.0f} us p99 {l99:7.0f} us | "
          f"sidecar {rr:8.0f} req/s p50 {r50:7.0f} us p99 {r99:7.0f} us | "
          f"hop adds {r50 - l50:+.0f} us at p50, keeps {rr / lr:.0%} of the throughput")
PY
