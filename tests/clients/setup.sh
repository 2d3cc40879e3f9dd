#!/usr/bin/env bash
# Install a pinned official MCP client for the toolgate MCP tests.
#
#   tests/clients/setup.sh python   -> prints the venv's python on the last line of stdout
#   tests/clients/setup.sh node     -> prints the npm prefix (holding node_modules/) on the last line
#
# The install goes to $HOME/.cache/toolgate-clients/ (or $TOOLGATE_CLIENTS_CACHE) and is
# skipped when already complete: a marker file is written last, so an interrupted
# install is started over. Exit 3 (with one line on stderr) when the client cannot be
# installed (runtime missing or too old, no network, ...); exit 2 on bad usage.
set -u

PY_MCP_VERSION=2.3.0
NODE_SDK_VERSION=1.32.2

CACHE="${TOOLGATE_CLIENTS_CACHE:-${HOME:?HOME is not set}/.cache/toolgate-clients}"

unavailable() { # $1 = Python|TypeScript, $2 = why
    echo "toolgate: cannot install the $1 MCP client: $2" >&2
    exit 3
}

setup_python() {
    local dir="$CACHE/python-mcp-$PY_MCP_VERSION"
    local py="$dir/bin/python"
    local marker="$dir/.toolgate-installed"
    if [ -f "$marker" ] && [ -x "$py" ]; then
        echo "$py"
        return 0
    fi
    local sys_py="${TOOLGATE_PYTHON:-python3}"
    command -v "$sys_py" >/dev/null 2>&1 || unavailable Python "$sys_py not found"
    "$sys_py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null \
        || unavailable Python "mcp $PY_MCP_VERSION needs Python >= 3.11, $sys_py is $("$sys_py" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo unknown)"
    rm -rf "$dir"
    mkdir -p "$CACHE" || unavailable Python "cannot create $CACHE"
    local log="$CACHE/python-install.log"
    "$sys_py" -m venv "$dir" >"$log" 2>&1 \
        || unavailable Python "python3 -m venv failed (is the venv module installed?), see $log"
    "$py" -m pip install --disable-pip-version-check --no-input --quiet --retries 2 "mcp==$PY_MCP_VERSION" >>"$log" 2>&1 \
        || unavailable Python "pip install mcp==$PY_MCP_VERSION failed (no network?), see $log"
    "$py" -c 'import mcp, httpx2, anyio' >>"$log" 2>&1 \
        || unavailable Python "mcp $PY_MCP_VERSION installed but does not import, see $log"
    touch "$marker" || unavailable Python "cannot write $marker"
    echo "$py"
}

setup_node() {
    local dir="$CACHE/node-sdk-$NODE_SDK_VERSION"
    local marker="$dir/.toolgate-installed"
    if [ -f "$marker" ] && [ -f "$dir/node_modules/@modelcontextprotocol/sdk/package.json" ]; then
        echo "$dir"
        return 0
    fi
    command -v node >/dev/null 2>&1 || unavailable TypeScript "node not found"
    command -v npm >/dev/null 2>&1 || unavailable TypeScript "npm not found"
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' 2>/dev/null \
        || unavailable TypeScript "@modelcontextprotocol/sdk $NODE_SDK_VERSION needs node >= 18, found $(node --version 2>/dev/null || echo unknown)"
    rm -rf "$dir"
    mkdir -p "$dir" || unavailable TypeScript "cannot create $dir"
    local log="$CACHE/node-install.log"
    # A package.json of our own keeps npm from walking up to some enclosing project.
    printf '{ "name": "toolgate-mcp-client-tests", "private": true }\n' >"$dir/package.json"
    # --prefer-offline: what npm's cache holds is used without asking the registry again;
    # short retries: without a network npm otherwise retries each package for over a minute.
    npm install --prefix "$dir" --save-exact --no-audit --no-fund --loglevel=error \
        --prefer-offline --fetch-retries=1 --fetch-retry-mintimeout=1000 --fetch-retry-maxtimeout=5000 \
        "@modelcontextprotocol/sdk@$NODE_SDK_VERSION" >"$log" 2>&1 \
        || unavailable TypeScript "npm install @modelcontextprotocol/sdk@$NODE_SDK_VERSION failed (no network?), see $log"
    [ -f "$dir/node_modules/@modelcontextprotocol/sdk/package.json" ] \
        || unavailable TypeScript "npm finished but @modelcontextprotocol/sdk is missing from $dir/node_modules, see $log"
    touch "$marker" || unavailable TypeScript "cannot write $marker"
    echo "$dir"
}

# Tests may run this concurrently: one install at a time per client (flock where available).
lock() { # $1 = python|node, $2 = Python|TypeScript
    mkdir -p "$CACHE" 2>/dev/null || unavailable "$2" "cannot create $CACHE"
    command -v flock >/dev/null 2>&1 || return 0
    exec 9>"$CACHE/.$1.lock" || unavailable "$2" "cannot open $CACHE/.$1.lock"
    flock -w 900 9 || unavailable "$2" "another install held $CACHE/.$1.lock for 15 minutes"
}

case "${1:-}" in
    python) lock python Python && setup_python ;;
    node) lock node TypeScript && setup_node ;;
    *)
        echo "usage: $0 python|node" >&2
        exit 2
        ;;
esac
