#!/usr/bin/env bash
# permessage-deflate (RFC 7692) against clients this project did not write: Python `websockets`,
# Node `ws` (perMessageDeflate: true) and headless Chromium, each against a release
# `wsecho --deflate` (the client's compressed bytes echoed as they came), once more against
# `wsecho --deflate --deflate-recompress` (inflated and deflated again), and once against
# `wsecho --deflate --deflate-context-takeover` (none of these clients forbids context takeover, so
# both sides keep their LZ77 window across messages and every echo is re-compressed). Then the same
# over wss:// (`wsecho --deflate --tls-cert --tls-key`, a throwaway self-signed P-256 certificate
# made with openssl at run time, never kept): Python websockets pinned to TLS 1.3 and then to
# TLS 1.2 (ssl.TLSVersion), Node ws (`ca:`, TLS 1.3) and headless Chromium (the certificate's SPKI
# pinned with --ignore-certificate-errors-spki-list), each also asserting what was negotiated
# (Python, Node: version, cipher, ALPN http/1.1) and, for Python and Node, that a second
# connection resumes the first one's session (Python: session_reused; Node: isSessionReused())
# and echoes over it. The server's wsecho_tls_handshakes_total{version,resumed} must have grown by
# exactly those handshakes, and wsecho_tls_failures_total not at all.
#
# Usage: scripts/clients.sh [--only python|node|chromium]... [--no-wss | --wss-only]
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
# negotiated Sec-WebSocket-Extensions, and the wire figures (over wss also the TLS parameters and
# the server's handshake counts). Exit status 0 only when nothing failed (skips allowed). About
# 30 s once installed (the wss part ~8 s). Counters are read from a --metrics-listen port, once
# the server shows no open connection (so they hold the client's last bytes).
# Environment: CLIENTS_PORT (first port to try, default 19301), CARGO_TARGET_DIR (as for cargo).
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=clients.sh
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
DIR="$ROOT/scripts/clients"
ONLY=()
WSS=yes
while [ $# -gt 0 ]; do
    case "$1" in
        --only)
            [ $# -ge 2 ] || { echo "$SCRIPT: --only needs a value" >&2; exit 2; }
            case "$2" in python|node|chromium) ONLY+=("$2") ;; *) echo "$SCRIPT: unknown client '$2'" >&2; exit 2 ;; esac
            shift ;;
        --no-wss) WSS=no ;;
        --wss-only) WSS=only ;;
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
# The wss modes' certificate: self-signed, P-256, for localhost and 127.0.0.1, in TMP (removed on
# exit). SPKI: the base64 SHA-256 of its public key, which Chromium is told to accept.
WSS_SKIP=""; SPKI=""
if [ "$WSS" != no ]; then
    command -v openssl >/dev/null 2>&1 || { echo "== installing openssl (apt-get)"; apt_install openssl || true; }
    if ! command -v openssl >/dev/null 2>&1; then
        WSS_SKIP="no openssl to make a certificate and apt-get could not install it"
    elif ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/key.pem" \
        -out "$TMP/cert.pem" -days 1 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        >"$TMP/openssl.log" 2>&1; then
        WSS_SKIP="openssl could not make a certificate ($(tail -n1 "$TMP/openssl.log"))"
    else
        SPKI=$(openssl x509 -in "$TMP/cert.pem" -pubkey -noout | openssl pkey -pubin -outform der \
            | openssl dgst -sha256 -binary | base64)
    fi
fi

# ---------------------------------------------------------------- checks
PASSED=0; FAILED=0; SKIPPED=0
# metrics_text: the server's counters from its --metrics-listen port (MPORT), process label out.
metrics_text() { fetch_metrics "$MPORT" | sed 's/process="[^"]*",\{0,1\}//; s/,}/}/; s/{}//'; }
no_conns() { [ "$(metrics_text | awk '$1 == "wsecho_connections_open" { print $2 }')" = 0 ]; }
# snap FILE: the counters once no connection is open (within 5 s): the metrics port shows what the
# reactor last published (every 100 ms), which then includes the client's last bytes.
snap() { wait_until 5 no_conns || true; metrics_text >"$1"; }
# metric FILE NAME: a counter without labels.
metric() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
# bad_closes FILE: close frames the server sent with a code other than 1000, all codes summed.
bad_closes() { awk '/^wsecho_closes_total\{/ && !/code="1000"/ { s += $2 } END { print s + 0 }' "$1"; }
# tls_failures FILE: wsecho_tls_failures_total, all reasons summed.
tls_failures() { awk '/^wsecho_tls_failures_total\{/ { s += $2 } END { print s + 0 }' "$1"; }
# handshakes F0 F1: the TLS handshakes between two snapshots, "1.3 full 1, 1.3 resumed 1" (the
# non-zero wsecho_tls_handshakes_total{version,resumed} differences), "none" when there were none.
handshakes() {
    awk 'FNR == 1 { f++ } /^wsecho_tls_handshakes_total\{/ {
            v = $1; sub(/.*version="/, "", v); sub(/".*/, "", v)
            r = ($1 ~ /resumed="true"/) ? "resumed" : "full"; k = v " " r
            if (f == 1) a[k] = $2; else b[k] = $2 }
        END { n = 0; for (k in b) if (b[k] - a[k] != 0) d[++n] = k " " (b[k] - a[k])
              if (n == 0) { print "none"; exit }
              # a fixed order: 1.2 before 1.3, full before resumed
              s = ""; for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (d[j] < d[i]) { t = d[i]; d[i] = d[j]; d[j] = t }
              for (i = 1; i <= n; i++) s = s (i > 1 ? ", " : "") d[i]; print s }' "$1" "$2"
}
# The interpreter itself (a pyenv shim costs ~0.3 s per start).
PY3=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || PY3=python3
# jfields FILE: the client's JSON line as one tab-separated line: ok ext version payload_bytes
# error rx_compressed tx_compressed messages header tls resumed (empty fields as "-").
jfields() {
    "$PY3" -c 'import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    d = {"error": "unreadable report: %s" % e}
vals = [d.get(k) for k in ("ok", "extensions", "version", "payload_bytes", "error", "rx_compressed", "tx_compressed", "messages", "header", "tls", "resumed")]
print("\t".join("-" if v is None or v == "" else str(v).replace("\t", " ").replace("\n", " ") for v in vals))' "$1" 2>/dev/null
}

# verdict NAME MODE JSON_FILE STATUS SNAP0 SNAP1 SECONDS [HANDSHAKES]: prints the client's line,
# counts it. SNAP0 and SNAP1: the server's counters before and after (snap). HANDSHAKES (wss): the
# TLS handshakes the server must have counted in between, as `handshakes` prints them.
verdict() {
    local name=$1 mode=$2 f=$3 st=$4 s0=$5 s1=$6 secs=$7 want_hs=${8:-} in0 out0 bad0 bad1 in1 out1 ok ext ver pay err rx tx msgs hdr tls res
    local comp="" wire why="" tlsinfo="" hs=""
    in0=$(metric "$s0" wsecho_bytes_received_total); out0=$(metric "$s0" wsecho_bytes_sent_total); bad0=$(bad_closes "$s0")
    in1=$(metric "$s1" wsecho_bytes_received_total); out1=$(metric "$s1" wsecho_bytes_sent_total); bad1=$(bad_closes "$s1")
    IFS=$'\t' read -r ok ext ver pay err rx tx msgs hdr tls res <<<"$(jfields "$f")"
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
    if [ -n "$want_hs" ]; then
        hs=$(handshakes "$s0" "$s1")
        tlsinfo=" | TLS: $tls; resumed: $res; server handshakes: $hs"
        [ "$tls" = - ] && tlsinfo=" | server handshakes: $hs"
        if [ -z "$why" ] && [ "$hs" != "$want_hs" ]; then
            why="the server counted TLS handshakes '$hs', expected '$want_hs'"
        elif [ -z "$why" ] && [ "$(tls_failures "$s1")" != "$(tls_failures "$s0")" ]; then
            why="wsecho_tls_failures_total grew by $(($(tls_failures "$s1") - $(tls_failures "$s0")))"
        fi
    fi
    if [ -z "$why" ]; then
        PASSED=$((PASSED + 1))
        echo "PASS $name $ver [$mode]: $ext | $msgs echoes ok$comp, $wire, ${secs}s$tlsinfo"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL $name $ver [$mode]: $ext | $why | $wire, ${secs}s$tlsinfo"
        sed 's/^/    /' "$f" 2>/dev/null | head -c 2000; echo
        tail -n 5 "$TMP/server.log" | sed 's/^/    server: /'
    fi
}

# run_CLIENT OUT_JSON [TLS_VERSION]: TLS (set for the wss modes): the client goes to wss:// and
# trusts the throwaway certificate; Python pins TLS_VERSION.
run_python() {
    if [ -n "$TLS" ]; then
        "${PIN_CLI[@]}" timeout 60 "$PY" "$DIR/py_client.py" "wss://127.0.0.1:$PORT/" "$TMP/cert.pem" "$2" >"$1" 2>"$TMP/py.err"
    else
        "${PIN_CLI[@]}" timeout 60 "$PY" "$DIR/py_client.py" "ws://127.0.0.1:$PORT/" >"$1" 2>"$TMP/py.err"
    fi
}
run_node() {
    if [ -n "$TLS" ]; then
        "${PIN_CLI[@]}" timeout 60 node "$DIR/node_client.js" "$NODE_DIR" "wss://127.0.0.1:$PORT/" "$TMP/cert.pem" >"$1" 2>"$TMP/node.err"
    else
        "${PIN_CLI[@]}" timeout 60 node "$DIR/node_client.js" "$NODE_DIR" "ws://127.0.0.1:$PORT/" >"$1" 2>"$TMP/node.err"
    fi
}
run_chromium() {
    local out=$1 hp _ udd tlsflags=() scheme=""
    rm -f "$TMP/page.port" "$out"
    "$PY3" "$DIR/serve.py" "$DIR" "$TMP/page.port" "$out" &
    PAGE_PID=$!
    wait_until 5 test -s "$TMP/page.port" || { echo '{"error": "page server did not start"}' >"$out"; return 1; }
    hp=$(cat "$TMP/page.port")
    udd=$(mktemp -d -p "$TMP")
    # wss: only this certificate's key is accepted despite its unknown issuer (no blanket
    # --ignore-certificate-errors); Chromium honours the list with --user-data-dir.
    [ -n "$TLS" ] && { tlsflags=(--ignore-certificate-errors-spki-list="$SPKI"); scheme="&scheme=wss"; }
    setsid "${PIN_CLI[@]}" timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync --disable-dev-shm-usage \
        "${tlsflags[@]}" --user-data-dir="$udd" "http://127.0.0.1:$hp/page.html?ws=$PORT$scheme" >"$TMP/chromium.log" 2>&1 &
    CHR_PID=$!
    for _ in $(seq 1 500); do [ -s "$out" ] && break; alive "$CHR_PID" || break; sleep 0.1; done
    kill -TERM -- "-$CHR_PID" 2>/dev/null; stop_pids TERM 3 "$CHR_PID"; kill -KILL -- "-$CHR_PID" 2>/dev/null; CHR_PID=""
    stop_pids TERM 2 "$PAGE_PID"; PAGE_PID=""
    [ -s "$out" ] || { echo "{\"error\": \"no report from the page within 50 s: $(tail -n1 "$TMP/chromium.log" | tr -dc '[:alnum:] :./_=-')\"}" >"$out"; return 1; }
}

pin_cpus
command -v taskset >/dev/null || { PIN_SRV=(); PIN_CLI=(); }
PORT=$(free_port "${CLIENTS_PORT:-19301}")
MPORT=$(free_port $((PORT + 1)))
MODES=()
[ "$WSS" != only ] && MODES+=("--deflate" "--deflate --deflate-recompress" "--deflate --deflate-context-takeover")
[ "$WSS" != no ] && MODES+=("wss --deflate")
for MODE in "${MODES[@]}"; do
    # A wss mode: the same flags after "wss", with the certificate; Python runs once per version.
    FLAGS=${MODE#wss }; TLS=""; TLS_ARGS=(); RUNS=(python node chromium)
    if [ "$FLAGS" != "$MODE" ]; then
        TLS=1; TLS_ARGS=(--tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem"); RUNS=(python/1.3 python/1.2 node chromium)
        if [ -n "$WSS_SKIP" ]; then
            for r in "${RUNS[@]}"; do wanted "${r%/*}" && { SKIPPED=$((SKIPPED + 1)); echo "SKIP ${r%/*} [$MODE]: $WSS_SKIP"; }; done
            continue
        fi
    fi
    # shellcheck disable=SC2086 # FLAGS is a list of flags
    "${PIN_SRV[@]}" "$WSECHO" --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$MPORT" $FLAGS "${TLS_ARGS[@]}" \
        2>"$TMP/server.log" &
    SRV_PID=$!
    if ! { wait_port "$MPORT" "$SRV_PID" && wait_port "$PORT" "$SRV_PID"; }; then
        echo "$SCRIPT: wsecho $MODE did not start: $(tail -n1 "$TMP/server.log")" >&2; exit 1
    fi
    for r in "${RUNS[@]}"; do
        c=${r%/*}; tv=""; label=$MODE
        [ "$c" != "$r" ] && { tv=${r#*/}; label="$MODE, TLS $tv"; }
        wanted "$c" || continue
        case "$c" in
            python) name=python-websockets; skip=$PY_SKIP; hs="$tv full 1, $tv resumed 1" ;;
            node) name=node-ws; skip=$NODE_SKIP; hs="1.3 full 1, 1.3 resumed 1" ;;
            chromium) name=chromium; skip=$CHR_SKIP; hs="1.3 full 1" ;;
        esac
        [ -n "$TLS" ] || hs=""
        if [ -n "$skip" ]; then
            SKIPPED=$((SKIPPED + 1)); echo "SKIP $name [$label]: $skip"; continue
        fi
        snap "$TMP/m0"
        t0=$(date +%s.%N)
        "run_$c" "$TMP/$c.json" "$tv"; st=$?
        secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        snap "$TMP/m1"
        verdict "$name" "$label" "$TMP/$c.json" "$st" "$TMP/m0" "$TMP/m1" "$secs" "$hs"
    done
    stop_pids TERM 5 "$SRV_PID"; SRV_PID=""
done
echo "== $(($(date +%s) - START)) s in all"
echo "clients: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" = 0 ]
