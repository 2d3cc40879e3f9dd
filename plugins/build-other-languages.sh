#!/usr/bin/env bash
# Builds the tool plugins written in other languages than Rust, as components of the
# `tool` world of wit/tool.wit:
#
#   plugins/python/textstats/app.py  ->  OUT_DIR/textstats.wasm  (componentize-py 0.25.1)
#   plugins/js/slugify/app.js        ->  OUT_DIR/slugify.wasm    (componentize-js 0.23.0)
#
# Usage: plugins/build-other-languages.sh [--only python|js] [OUT_DIR]
#   OUT_DIR defaults to target/other-languages under the repository root; works from any cwd.
#   TOOLGATE_PLUGIN_LANGUAGES="python js" (the default) does what --only does.
#
# The pinned toolchains are installed on first use, from PyPI and npm, under
# ${TOOLGATE_PLUGIN_TOOLCHAINS:-$HOME/.cache/toolgate-plugins} (a venv and an npm prefix), each
# completed by a marker file written last: an install that was interrupted is redone, never
# used. A component is rebuilt only when its sources, the WIT or the toolchain changed (a
# hash stamp beside it). Once installed, building needs no network.
#
# Exit status: 0 built (or up to date); 3 a toolchain is unavailable (python3 >= 3.11 with
# venv and pip, or node >= 18 with npm, is missing, or installing the pinned package failed),
# with one line `toolgate: cannot build the Python plugin: <why>` (or JavaScript) on stderr,
# after the other language was built; any other non-zero status is a real build failure, with
# the compiler's own error above it.
set -euo pipefail

readonly CPY_VERSION=0.25.1
readonly CJS_VERSION=0.23.0
readonly UNAVAILABLE=3

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly WIT="$ROOT/wit"

languages="${TOOLGATE_PLUGIN_LANGUAGES:-python js}"
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --only)
            [ $# -ge 2 ] || { echo "usage: $0 [--only python|js] [OUT_DIR]" >&2; exit 2; }
            languages="$2"
            shift 2
            ;;
        --only=*) languages="${1#--only=}"; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "usage: $0 [--only python|js] [OUT_DIR]" >&2; exit 2 ;;
        *) [ -z "$out" ] || { echo "usage: $0 [--only python|js] [OUT_DIR]" >&2; exit 2; }
           out="$1"; shift ;;
    esac
done
for language in $languages; do
    case "$language" in
        python | js) ;;
        *) echo "toolgate: unknown language '$language' (python or js)" >&2; exit 2 ;;
    esac
done
out="${out:-$ROOT/target/other-languages}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

TOOLCHAINS="${TOOLGATE_PLUGIN_TOOLCHAINS:-$HOME/.cache/toolgate-plugins}"
mkdir -p "$TOOLCHAINS"
readonly TOOLCHAINS
# One build at a time per toolchain directory: two runs (two test binaries, a developer and
# a test) never install into the same venv or prefix at once.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLCHAINS/.lock"
    flock 9
fi

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/toolgate-plugins.XXXXXX")"
readonly STAGE
trap 'rm -rf "$STAGE"' EXIT

unavailable=()
# Records that LANGUAGE cannot be built and why; the script goes on with the other one.
cannot() {
    local name="$1"
    shift
    echo "toolgate: cannot build the $name plugin: $*" >&2
    unavailable+=("$name")
}

# Prints a hash of TOOLCHAIN (a name and version), the files given, the WIT and this script,
# by content and base name (so the same checkout elsewhere has the same stamp).
stamp_of() {
    local file
    {
        echo "$1"
        shift
        for file in "$@" "$WIT"/*.wit "$ROOT/plugins/build-other-languages.sh"; do
            echo "$(basename "$file") $(sha256sum <"$file" | cut -d' ' -f1)"
        done
    } | sha256sum | cut -d' ' -f1
}

# Whether OUT/NAME.wasm was built from exactly STAMP.
up_to_date() {
    [ -f "$out/$1.wasm" ] && [ -f "$out/$1.wasm.stamp" ] && [ "$(cat "$out/$1.wasm.stamp")" = "$2" ]
}

# Puts a finished component in place (a rename within OUT, so never half a file), its stamp
# last: an interrupted run leaves no stamp that vouches for what it did not finish.
install_component() {
    local name="$1" built="$2" stamp="$3" started="$4"
    rm -f "$out/$name.wasm.stamp"
    cp "$built" "$out/.$name.wasm.partial"
    mv -f "$out/.$name.wasm.partial" "$out/$name.wasm"
    echo "$stamp" >"$out/$name.wasm.stamp"
    echo "toolgate: built $out/$name.wasm ($(wc -c <"$out/$name.wasm") bytes, $(($(date +%s) - started)) s)" >&2
}

# ---------------------------------------------------------------------------------- Python

python_toolchain() {
    local venv="$TOOLCHAINS/py-cpy-$CPY_VERSION"
    local marker="$venv/.toolgate-complete"
    if [ -f "$marker" ] && [ -x "$venv/bin/componentize-py" ]; then
        return 0
    fi
    local python="${TOOLGATE_PYTHON:-python3}"
    if ! command -v "$python" >/dev/null 2>&1; then
        cannot Python "$python is not installed (Python >= 3.11 with venv and pip is needed)"
        return 1
    fi
    local version
    if ! version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2]); sys.exit(sys.version_info < (3, 11))' 2>/dev/null)"; then
        cannot Python "$python is ${version:-unusable}, Python >= 3.11 is needed"
        return 1
    fi
    echo "toolgate: installing componentize-py $CPY_VERSION into $venv" >&2
    rm -rf "$venv"
    local log="$STAGE/python-install.log"
    # Without VIRTUAL_ENV: another active venv must not leak into this one.
    if ! env -u VIRTUAL_ENV "$python" -m venv "$venv" >"$log" 2>&1; then
        tail -n 5 "$log" >&2
        rm -rf "$venv"
        cannot Python "'$python -m venv' failed (is the venv module, python3-venv, installed?)"
        return 1
    fi
    if ! env -u VIRTUAL_ENV "$venv/bin/python" -m pip install --disable-pip-version-check \
        --no-input "componentize-py==$CPY_VERSION" >"$log" 2>&1; then
        tail -n 5 "$log" >&2
        rm -rf "$venv"
        cannot Python "pip could not install componentize-py==$CPY_VERSION (no access to PyPI, or no wheel for this platform)"
        return 1
    fi
    echo "$CPY_VERSION" >"$marker"
}

build_python() {
    local name=textstats src="$ROOT/plugins/python/textstats"
    python_toolchain || return 0
    local stamp
    stamp="$(stamp_of "componentize-py $CPY_VERSION" "$src"/*.py)"
    if up_to_date "$name" "$stamp"; then
        echo "toolgate: $out/$name.wasm is up to date" >&2
        return 0
    fi
    # Built from a copy, so no __pycache__ is left in the sources.
    local work="$STAGE/python"
    mkdir -p "$work"
    cp "$src"/*.py "$work/"
    local started
    started="$(date +%s)"
    # The global options -d/-w go before the subcommand. No VIRTUAL_ENV: componentize-py
    # would add that venv's site-packages to the guest's path.
    if ! (cd "$work" && env -u VIRTUAL_ENV "$TOOLCHAINS/py-cpy-$CPY_VERSION/bin/componentize-py" \
        -d "$WIT" -w tool componentize app -p . -o "$work/$name.wasm"); then
        echo "toolgate: componentize-py failed to build plugins/python/$name (see above)" >&2
        exit 1
    fi
    install_component "$name" "$work/$name.wasm" "$stamp" "$started"
}

# ------------------------------------------------------------------------------ JavaScript

js_toolchain() {
    local prefix="$TOOLCHAINS/js-cjs-$CJS_VERSION"
    local marker="$prefix/.toolgate-complete"
    local lock="$ROOT/plugins/js/toolchain/package-lock.json"
    # The marker holds the hash of the lockfile it was installed from: a changed lock reinstalls.
    local wanted
    wanted="$(sha256sum <"$lock" | cut -d' ' -f1)"
    # Node runs the toolchain on every build, so it is checked even when the toolchain is there.
    if ! command -v node >/dev/null 2>&1; then
        cannot JavaScript "node is not installed (Node.js >= 18 with npm is needed)"
        return 1
    fi
    local major
    major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || true)"
    case "$major" in '' | *[!0-9]*) major=0 ;; esac
    if [ "$major" -lt 18 ]; then
        cannot JavaScript "node is $(node --version 2>/dev/null || echo unusable), Node.js >= 18 is needed"
        return 1
    fi
    if [ -f "$marker" ] && [ "$(cat "$marker")" = "$wanted" ] \
        && [ -x "$prefix/node_modules/.bin/componentize-js" ]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        cannot JavaScript "npm is not installed"
        return 1
    fi
    echo "toolgate: installing @bytecodealliance/componentize-js $CJS_VERSION into $prefix" >&2
    rm -rf "$prefix"
    mkdir -p "$prefix"
    # The whole tree is pinned by plugins/js/toolchain/package-lock.json (npm ci). Its
    # package.json also names @bytecodealliance/preview2-shim: componentize-js 0.23.0 imports
    # it without declaring it, so without that line `npm ci` leaves it out and the CLI fails
    # with ERR_MODULE_NOT_FOUND.
    cp "$ROOT/plugins/js/toolchain/package.json" "$lock" "$prefix/"
    local log="$STAGE/js-install.log"
    if ! (cd "$prefix" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
        tail -n 5 "$log" >&2
        rm -rf "$prefix"
        cannot JavaScript "npm could not install @bytecodealliance/componentize-js@$CJS_VERSION (no access to the npm registry?)"
        return 1
    fi
    echo "$wanted" >"$marker"
}

build_js() {
    local name=slugify src="$ROOT/plugins/js/slugify"
    js_toolchain || return 0
    local stamp
    stamp="$(stamp_of "componentize-js $CJS_VERSION" "$src"/*.js)"
    if up_to_date "$name" "$stamp"; then
        echo "toolgate: $out/$name.wasm is up to date" >&2
        return 0
    fi
    # componentize-js needs the WIT at a relative path inside its working directory.
    local work="$STAGE/js"
    mkdir -p "$work/wit"
    cp "$src"/*.js "$work/"
    cp "$WIT"/*.wit "$work/wit/"
    local started
    started="$(date +%s)"
    # componentize-js's own CLI, not `jco componentize`: jco 1.35's componentize cannot read
    # any --wit path. -d drops the WASI features the plugin does not use (its only imports are
    # then toolgate:plugin/host and types). Never --aot: it downloads weval at build time.
    if ! (cd "$work" && "$TOOLCHAINS/js-cjs-$CJS_VERSION/node_modules/.bin/componentize-js" app.js \
        --wit wit --world-name tool -d stdio random clocks http fetch-event -o "$name.wasm"); then
        echo "toolgate: componentize-js failed to build plugins/js/$name (see above)" >&2
        exit 1
    fi
    install_component "$name" "$work/$name.wasm" "$stamp" "$started"
}

for language in $languages; do
    case "$language" in
        python) build_python ;;
        js) build_js ;;
    esac
done
if [ "${#unavailable[@]}" -gt 0 ]; then
    exit "$UNAVAILABLE"
fi
