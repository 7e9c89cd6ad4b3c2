#!/usr/bin/env bash
# permessage-deflate (RFC 7692) against clients this project did not write: Python `websockets`,
# Node `ws` (perMessageDeflate: true) and headless Chromium, each against a release
# `wsecho --deflate` (the client's compressed bytes echoed as they came), once more against
# `wsecho --deflate --deflate-recompress` (inflated and deflated again), and once against
# `wsecho --deflate --deflate-context-takeover` (none of these clients forbids context takeover, so
# both sides keep their LZ77 window across messages and every echo is re-compressed).
#
# Usage: scripts/clients.sh [--only python|node|chromium]...
#
# Installs what it needs itself, under the cargo target directory (TARGET/clients): a venv with
# `websockets` (pip), `ws` 8 (npm), and Debian's `chromium` (apt-get) when it is missing. A client
# whose package cannot be installed is skipped with one line saying so; a client that runs and
# fails fails the script. Each client (scripts/clients/) sends text and binary messages of 20 B,
# 1 KiB and 1 MiB (compressible, text with multi-byte characters) and a 64 KiB random binary
# message (Python and Node also a text and a binary message in 3 compressed fragments of 100 KiB),
# one at a time and then pipelined, checks every echo byte for byte and that
# permessage-deflate was negotiated. That the compressed path was used is checked twice: by the
# client where its library lets us see frames (Python: every message sent and every echo received
# had RSV1; Node: an echo came back compressed exactly when the message went out compressed, which
# ws does from 1 KiB up), and for every client on the wire: the server's
# wsecho_bytes_received_total and wsecho_bytes_sent_total (socket bytes, /metrics) must each grow
# by less than 60% of the payload bytes echoed (the uncompressed figure is over 100%). A close
# frame from the server with a code other than 1000 (wsecho_closes_total) fails the client too.
#
# Prints one line per client and server mode: PASS/FAIL/SKIP, the client and its version, the
# negotiated Sec-WebSocket-Extensions, and the wire figures. Exit status 0 only when nothing
# failed (skips allowed). About 25 s once installed.
# Environment: CLIENTS_PORT (first port to try, default 19301), CARGO_TARGET_DIR (as for cargo).
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=clients.sh
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
DIR="$ROOT/scripts/clients"
ONLY=()
while [ $# -gt 0 ]; do
    case "$1" in
        --only)
            [ $# -ge 2 ] || { echo "$SCRIPT: --only needs a value" >&2; exit 2; }
            case "$2" in python|node|chromium) ONLY+=("$2") ;; *) echo "$SCRIPT: unknown client '$2'" >&2; exit 2 ;; esac
            shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "$SCRIPT: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
wanted() { [ ${#ONLY[@]} -eq 0 ] && return 0; local o; for o in "${ONLY[@]}"; do [ "$o" = "$1" ] && return 0; done; return 1; }

START=$(date +%s)
cargo_build --release --bin wsecho
WSECHO="$(target_dir)/release/wsecho"
CL="$(target_dir)/clients"
mkdir -p "$CL"
TMP=$(mktemp -d)
SRV_PID=""
PAGE_PID=""
CHR_PID=""
cleanup() {
    [ -n "$CHR_PID" ] && { kill -TERM -- "-$CHR_PID" 2>/dev/null; stop_pids TERM 3 "$CHR_PID"; kill -KILL -- "-$CHR_PID" 2>/dev/null; }
    [ -n "$PAGE_PID" ] && stop_pids TERM 2 "$PAGE_PID"
    [ -n "$SRV_PID" ] && stop_pids TERM 5 "$SRV_PID"
    rm -rf "$TMP"
}
on_exit cleanup

# ---------------------------------------------------------------- installs
PY=""; PY_SKIP=""
NODE_DIR=""; NODE_SKIP=""
CHROMIUM=""; CHR_SKIP=""
has_ws_py() { [ -x "$CL/venv/bin/python" ] && "$CL/venv/bin/python" -c 'import websockets.asyncio.client' 2>/dev/null; }
if wanted python; then
    if ! has_ws_py; then
        echo "== installing Python websockets (pip, into $CL/venv)"
        if ! python3 -c 'import venv, ensurepip' 2>/dev/null && can_apt; then apt_install python3-venv || true; fi
        { python3 -m venv "$CL/venv" && timeout 300 "$CL/venv/bin/python" -m pip install -q --disable-pip-version-check \
            'websockets>=14,<18'; } >"$TMP/pip.log" 2>&1 || true
    fi
    if has_ws_py; then PY="$CL/venv/bin/python"; else PY_SKIP="pip could not install websockets ($(tail -n1 "$TMP/pip.log" 2>/dev/null))"; fi
fi
has_ws_node() { command -v node >/dev/null 2>&1 && [ -f "$CL/node/node_modules/ws/package.json" ]; }
if wanted node; then
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "== installing nodejs, npm (apt-get)"
        apt_install nodejs npm || true
    fi
    if ! has_ws_node && command -v npm >/dev/null 2>&1; then
        echo "== installing Node ws (npm, into $CL/node)"
        mkdir -p "$CL/node"
        timeout 300 npm install --prefix "$CL/node" --no-audit --no-fund --silent 'ws@8' >"$TMP/npm.log" 2>&1 || true
    fi
    if has_ws_node; then NODE_DIR="$CL/node"
    elif ! command -v npm >/dev/null 2>&1; then NODE_SKIP="no node/npm and apt-get could not install them"
    else NODE_SKIP="npm could not install ws ($(tail -n1 "$TMP/npm.log" 2>/dev/null))"; fi
fi
if wanted chromium; then
    if ! command -v chromium >/dev/null 2>&1; then
        echo "== installing chromium (apt-get)"
        apt_install chromium || true
    fi
    if command -v chromium >/dev/null 2>&1; then CHROMIUM=$(command -v chromium); else CHR_SKIP="no chromium and apt-get could not install it"; fi
fi

# ---------------------------------------------------------------- checks
PASSED=0; FAILED=0; SKIPPED=0
metric() { fetch_metrics "$PORT" | awk -v k="$1" '$1 == k { print $2 }'; }
# bad_closes: close frames the server sent with a code other than 1000, all codes summed.
bad_closes() { fetch_metrics "$PORT" | awk '/^wsecho_closes_total\{/ && !/code="1000"/ { s += $2 } END { print s + 0 }'; }
# The interpreter itself (a pyenv shim costs ~0.3 s per start).
PY3=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || PY3=python3
# jfields FILE: the client's JSON line as one tab-separated line: ok ext version payload_bytes
# error rx_compressed tx_compressed messages header (empty fields as "-").
jfields() {
    "$PY3" -c 'import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    d = {"error": "unreadable report: %s" % e}
vals = [d.get(k) for k in ("ok", "extensions", "version", "payload_bytes", "error", "rx_compressed", "tx_compressed", "messages", "header")]
print("\t".join("-" if v is None or v == "" else str(v).replace("\t", " ").replace("\n", " ") for v in vals))' "$1" 2>/dev/null
}

# verdict NAME MODE JSON_FILE STATUS IN0 OUT0 SECONDS BAD0: prints the client's line, counts it.
verdict() {
    local name=$1 mode=$2 f=$3 st=$4 in0=$5 out0=$6 secs=$7 bad0=$8 bad1 in1 out1 ok ext ver pay err rx tx msgs hdr comp="" wire why=""
    in1=$(metric wsecho_bytes_received_total); out1=$(metric wsecho_bytes_sent_total); bad1=$(bad_closes)
    IFS=$'\t' read -r ok ext ver pay err rx tx msgs hdr <<<"$(jfields "$f")"
    [ "$pay" = - ] && pay=0
    [ "$rx" != - ] && comp=", echoes compressed $rx/$msgs (sent $tx)"
    case "$name" in
        chromium) ver=$(sed -n 's/.*\(HeadlessChrome\/[0-9.]*\).*/\1/p' <<<"$ver") ;;
        node-ws) ext="$hdr (ws.extensions: $ext)" ;;  # ws.extensions holds names only
    esac
    wire=$(awk -v a="${in1:-0}" -v b="${in0:-0}" -v c="${out1:-0}" -v d="${out0:-0}" -v p="${pay:-0}" 'BEGIN {
        if (p <= 0) { print "no payload"; exit }
        printf "wire in %.0f%% out %.0f%% of %.2f MB payload", 100 * (a - b) / p, 100 * (c - d) / p, p / 1e6 }')
    if [ "$st" != 0 ] || [ "$ok" != True ]; then
        why="client: $err (exit status $st)"
    elif ! alive "$SRV_PID"; then
        why="the server died"
    elif [ "$bad1" != "$bad0" ]; then
        why="the server sent $((bad1 - bad0)) close frame(s) with a code other than 1000 (/metrics wsecho_closes_total)"
    elif ! awk -v a="${in1:-0}" -v b="${in0:-0}" -v c="${out1:-0}" -v d="${out0:-0}" -v p="$pay" \
        'BEGIN { exit !((a - b) < 0.6 * p && (c - d) < 0.6 * p) }'; then
        why="not compressed on the wire (limit 60%)"
    fi
    if [ -z "$why" ]; then
        PASSED=$((PASSED + 1))
        echo "PASS $name $ver [$mode]: $ext | $msgs echoes ok$comp, $wire, ${secs}s"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL $name $ver [$mode]: $ext | $why | $wire, ${secs}s"
        sed 's/^/    /' "$f" 2>/dev/null | head -c 2000; echo
        tail -n 5 "$TMP/server.log" | sed 's/^/    server: /'
    fi
}

run_python() {
    "${PIN_CLI[@]}" timeout 60 "$PY" "$DIR/py_client.py" "ws://127.0.0.1:$PORT/" >"$1" 2>"$TMP/py.err"
}
run_node() {
    "${PIN_CLI[@]}" timeout 60 node "$DIR/node_client.js" "$NODE_DIR" "ws://127.0.0.1:$PORT/" >"$1" 2>"$TMP/node.err"
}
run_chromium() {
    local out=$1 hp _ udd
    rm -f "$TMP/page.port" "$out"
    "$PY3" "$DIR/serve.py" "$DIR" "$TMP/page.port" "$out" &
    PAGE_PID=$!
    wait_until 5 test -s "$TMP/page.port" || { echo '{"error": "page server did not start"}' >"$out"; return 1; }
    hp=$(cat "$TMP/page.port")
    udd=$(mktemp -d -p "$TMP")
    setsid "${PIN_CLI[@]}" timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync --disable-dev-shm-usage \
        --user-data-dir="$udd" "http://127.0.0.1:$hp/page.html?ws=$PORT" >"$TMP/chromium.log" 2>&1 &
    CHR_PID=$!
    for _ in $(seq 1 500); do [ -s "$out" ] && break; alive "$CHR_PID" || break; sleep 0.1; done
    kill -TERM -- "-$CHR_PID" 2>/dev/null; stop_pids TERM 3 "$CHR_PID"; kill -KILL -- "-$CHR_PID" 2>/dev/null; CHR_PID=""
    stop_pids TERM 2 "$PAGE_PID"; PAGE_PID=""
    [ -s "$out" ] || { echo "{\"error\": \"no report from the page within 50 s: $(tail -n1 "$TMP/chromium.log" | tr -dc '[:alnum:] :./_=-')\"}" >"$out"; return 1; }
}

pin_cpus
command -v taskset >/dev/null || { PIN_SRV=(); PIN_CLI=(); }
PORT=$(free_port "${CLIENTS_PORT:-19301}")
for MODE in "--deflate" "--deflate --deflate-recompress" "--deflate --deflate-context-takeover"; do
    # shellcheck disable=SC2086 # MODE is a list of flags
    "${PIN_SRV[@]}" "$WSECHO" --listen "127.0.0.1:$PORT" $MODE 2>"$TMP/server.log" &
    SRV_PID=$!
    wait_port "$PORT" "$SRV_PID" || { echo "$SCRIPT: wsecho $MODE did not start: $(tail -n1 "$TMP/server.log")" >&2; exit 1; }
    for c in python node chromium; do
        wanted "$c" || continue
        case "$c" in
            python) name=python-websockets; skip=$PY_SKIP ;;
            node) name=node-ws; skip=$NODE_SKIP ;;
            chromium) name=chromium; skip=$CHR_SKIP ;;
        esac
        if [ -n "$skip" ]; then
            SKIPPED=$((SKIPPED + 1)); echo "SKIP $name [$MODE]: $skip"; continue
        fi
        in0=$(metric wsecho_bytes_received_total); out0=$(metric wsecho_bytes_sent_total); bad0=$(bad_closes)
        t0=$(date +%s.%N)
        "run_$c" "$TMP/$c.json"; st=$?
        secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        verdict "$name" "$MODE" "$TMP/$c.json" "$st" "$in0" "$out0" "$secs" "$bad0"
    done
    stop_pids TERM 5 "$SRV_PID"; SRV_PID=""
done
echo "== $(($(date +%s) - START)) s in all"
echo "clients: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" = 0 ]
