#!/usr/bin/env bash
# Two wsecho instances behind HAProxy on this machine, with load pushed through the proxy.
#
#   scripts/haproxy/run.sh [--connections N] [--duration SECS] [--size BYTES] [--python] [--keep]
#
# 1. installs haproxy with apt-get when it is missing (Debian; needs root),
# 2. builds the release binaries (wsecho, and wsbench when it builds),
# 3. starts wsecho on 127.0.0.1:9101 and 127.0.0.1:9102 and HAProxy on 127.0.0.1:9000
#    (scripts/haproxy/haproxy.cfg; status page on http://127.0.0.1:8404/stats),
# 4. runs `wsbench --connections N --duration SECS --size BYTES` against ws://127.0.0.1:9000/,
#    or, without wsbench, a Python check: 100 connections upgraded through the proxy, one echo
#    each,
# 5. prints the result, each backend's wsecho_connections_accepted_total and
#    wsecho_upgrades_total from its /metrics, and HAProxy's sessions per server,
# 6. stops everything it started (on any exit, Ctrl-C included).
#
# Defaults: 2000 connections, 10 s, 64-byte messages. N is lowered to fit the open-file limit
# (HAProxy needs two sockets per connection). Everything after the build is bounded: the run
# is killed after duration + 90 s. Exit status 0 when the load ran clean and both backends got
# WebSocket upgrades. --python runs the Python check even when wsbench exists; --keep leaves the
# logs in the run directory.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
ROOT=$repo
SCRIPT=run.sh
# shellcheck source=scripts/lib/common.sh
. "$repo/scripts/lib/common.sh"

conns=2000
duration=10
size=64
keep=0
python_only=0
while [ $# -gt 0 ]; do
    case $1 in
        --connections|-c) conns=${2:?}; shift 2 ;;
        --duration|-d) duration=${2:?}; shift 2 ;;
        --size|-s) size=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        --python) python_only=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case $conns$duration in *[!0-9]*) echo "run.sh: --connections and --duration take whole numbers" >&2; exit 2 ;; esac

cfg=$repo/scripts/haproxy/haproxy.cfg
target=$(target_dir)
backends=(9101 9102)
lb_port=9000
stats_port=8404

log() { printf '[run.sh] %s\n' "$*"; }
die() { printf '[run.sh] ERROR: %s\n' "$*" >&2; exit 1; }

# ---- 1. haproxy -------------------------------------------------------------------------------
if ! command -v haproxy >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || die "haproxy is not installed; run: sudo apt-get install haproxy"
    log "installing haproxy (apt-get)"
    apt_install haproxy || die "could not install haproxy (apt-get install haproxy)"
fi
log "$(haproxy -v | head -1)"

# ---- 2. build ---------------------------------------------------------------------------------
log "building: cargo build --release --bin wsecho"
(cd "$repo" && cargo build --release --quiet --bin wsecho)
wsecho=$target/release/wsecho
wsbench=$target/release/wsbench
if [ "$python_only" = 1 ]; then
    wsbench=/nonexistent
elif grep -q '^name = "wsbench"' "$repo/Cargo.toml" &&
    (cd "$repo" && cargo build --release --quiet --bin wsbench); then
    :
else
    log "wsbench did not build; falling back to the Python check if it is missing"
fi
[ -x "$wsbench" ] || wsbench=

# ---- run directory, cleanup, deadline ---------------------------------------------------------
run=$(mktemp -d /tmp/wsecho-haproxy.XXXXXX)
pids=()
watchdog=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null
    stop_pids TERM 5 "${pids[@]}"
    wait 2>/dev/null || true
    if [ "$keep" = 1 ] || [ $rc -ne 0 ]; then
        log "logs kept in $run"
    else
        rm -rf "$run"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

deadline=$((duration + 90))
(
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    sleep "$deadline" & s=$!
    wait "$s"
    echo "[run.sh] deadline of ${deadline}s reached, stopping" >&2
    kill -TERM $$
) &
watchdog=$!

# ---- helpers (port_busy, http_get, wait_until: scripts/lib/common.sh) ---------------------------
# metric PORT NAME: the sum of NAME's samples in that backend's /metrics.
metric() {
    http_get "$1" /metrics | tr -d '\r' |
        awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF; f = 1 } END { print f ? s : "n/a" }'
}
wait_for() { # SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2; shift 2
    wait_until "$secs" "$@" || die "timed out after ${secs}s waiting for $what"
}

for p in "$lb_port" "$stats_port" "${backends[@]}"; do
    port_busy "$p" && die "port $p on 127.0.0.1 is already in use"
done

# ---- fit the open-file limit ------------------------------------------------------------------
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
fit=$(((hard - 200) / 2))
if [ "$conns" -gt "$fit" ]; then
    log "lowering --connections from $conns to $fit: HAProxy needs 2 fds per connection and the open-file limit is $hard"
    conns=$fit
fi
lb_maxconn=$((conns + 100))
[ "$lb_maxconn" -gt "$fit" ] && lb_maxconn=$fit

# ---- 3. start the backends and the proxy ------------------------------------------------------
for p in "${backends[@]}"; do
    RUST_LOG=info "$wsecho" --listen "127.0.0.1:$p" --ping-interval 20 --shutdown-timeout 2 \
        >"$run/wsecho-$p.log" 2>&1 &
    pids+=($!)
done
healthy() { http_get "$1" /healthz | head -1 | grep -q ' 200'; }
for p in "${backends[@]}"; do
    wait_for 10 "wsecho on :$p (/healthz; see $run/wsecho-$p.log)" healthy "$p"
done
log "wsecho up on :${backends[0]} and :${backends[1]} (pids ${pids[*]})"

WSECHO_LB_MAXCONN=$lb_maxconn WSECHO_LB_LOG=stderr WSECHO_LB_SOCK=$run/haproxy.sock \
    haproxy -db -f "$cfg" >"$run/haproxy.log" 2>&1 &
pids+=($!)
# Both servers UP *and* checked once (before its first check a server shows "UP 1/3", INI).
servers_up() {
    [ "$(http_get "$stats_port" '/stats;csv' | awk -F, '$1 == "wsecho" && $2 ~ /^ws[0-9]/ && $18 == "UP" && $37 == "L7OK"' | wc -l)" = 2 ]
}
wait_for 15 "HAProxy with both servers UP (see $run/haproxy.log)" servers_up
log "haproxy up on :$lb_port (maxconn $lb_maxconn), both servers UP; stats on http://127.0.0.1:$stats_port/stats"

# ---- 4. load ----------------------------------------------------------------------------------
ok=1
if [ -n "$wsbench" ]; then
    log "wsbench --connections $conns --duration $duration --size $size ws://127.0.0.1:$lb_port/"
    if ! timeout --foreground $((duration + 60)) "$wsbench" --connections "$conns" --duration "$duration" --size "$size" \
        --json "$run/wsbench.json" -q "ws://127.0.0.1:$lb_port/" | tee -i "$run/wsbench.out"; then
        ok=0
        log "wsbench reported a failure (see above)"
    fi
    if [ -s "$run/wsbench.json" ] && command -v python3 >/dev/null 2>&1; then
        python3 - "$run/wsbench.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
lat = j.get("latency_us") or {}
pick = lambda d, *ks: " ".join(f"{k}={d[k]}" for k in ks if k in d)
print(f"[run.sh] wsbench: upgraded={j['upgraded']}/{j['connections']} messages={j['messages']} "
      f"msgs/s={j['msgs_per_sec']:.0f} MB/s={j['mb_per_sec']:.1f} failed={str(j['failed']).lower()}")
if isinstance(lat, dict):
    print(f"[run.sh] latency_us: {pick(lat, 'p50', 'p99', 'p99_9', 'max')}")
EOF
    fi
else
    command -v python3 >/dev/null 2>&1 || die "neither wsbench nor python3 available for the check"
    log "wsbench not available: Python check, 100 connections through :$lb_port, one echo each"
    timeout --foreground 60 python3 - "$lb_port" <<'EOF' || ok=0
import base64, hashlib, os, socket, struct, sys

port, n = int(sys.argv[1]), 100
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

def recv_exact(s, k):
    b = b""
    while len(b) < k:
        c = s.recv(k - len(b))
        if not c:
            raise EOFError("connection closed")
        b += c
    return b

def frame(opcode, payload):
    mask = os.urandom(4)
    hdr = bytes([0x80 | opcode])
    hdr += bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

def read_frame(s):
    b0, b1 = recv_exact(s, 2)
    ln = b1 & 0x7F
    if ln == 126:
        ln = struct.unpack("!H", recv_exact(s, 2))[0]
    elif ln == 127:
        ln = struct.unpack("!Q", recv_exact(s, 8))[0]
    assert not b1 & 0x80, "server frames must not be masked"
    return b0 & 0x0F, recv_exact(s, ln)

socks, upgraded, echoed, closed = [], 0, 0, 0
for i in range(n):  # open them all first, so that leastconn spreads concurrent connections
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16))
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    resp = b""
    while b"\r\n\r\n" not in resp:
        resp += recv_exact(s, 1)
    want = base64.b64encode(hashlib.sha1(key + GUID).digest())
    if resp.startswith(b"HTTP/1.1 101") and want in resp:
        upgraded += 1
        socks.append(s)
    else:
        print(f"[run.sh] connection {i}: bad upgrade response {resp[:80]!r}")
for i, s in enumerate(socks):
    msg = f"hello through haproxy #{i}".encode()
    s.sendall(frame(0x1, msg))
    op, data = read_frame(s)
    echoed += op == 0x1 and data == msg
for s in socks:
    s.sendall(frame(0x8, struct.pack("!H", 1000)))
    op, data = read_frame(s)
    closed += op == 0x8 and data[:2] == struct.pack("!H", 1000)
    s.close()
print(f"[run.sh] python check: {upgraded}/{n} upgraded, {echoed}/{n} echoed, {closed}/{n} closed cleanly")
sys.exit(0 if upgraded == echoed == closed == n else 1)
EOF
fi

# ---- 5. per-backend evidence ------------------------------------------------------------------
echo
log "backend                 accepted_total  upgrades_total   (accepted includes HAProxy's health checks)"
both=1
for p in "${backends[@]}"; do
    acc=$(metric "$p" wsecho_connections_accepted_total)
    upg=$(metric "$p" wsecho_upgrades_total)
    printf '[run.sh]   wsecho 127.0.0.1:%s  %14s  %14s\n' "$p" "$acc" "$upg"
    case $upg in '' | n/a | 0) both=0 ;; esac
done
log "haproxy sessions per server (stot = total, smax = peak concurrent):"
http_get "$stats_port" '/stats;csv' | tr -d '\r' |
    awk -F, '$1 == "wsecho" && $2 != "FRONTEND" {
        printf "[run.sh]   %-8s stot=%-8s smax=%-8s status=%s %s\n", $2, $8, $6, $18, $37 }'

if [ "$both" = 1 ] && [ "$ok" = 1 ]; then
    log "OK: load through HAProxy ran clean and both backends served WebSocket upgrades"
else
    [ "$both" = 1 ] || log "FAIL: a backend served no WebSocket upgrade"
    [ "$ok" = 1 ] || log "FAIL: the load run or the check failed"
    exit 1
fi
