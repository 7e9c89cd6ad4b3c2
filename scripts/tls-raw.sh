#!/usr/bin/env bash
# wss:// at the byte level, with `openssl s_client`, curl and raw sockets against a release
# `wsecho --tls-cert --tls-key --handshake-timeout 2` (a throwaway self-signed P-256 certificate
# made at run time, never kept). Each case checks what a user would notice (the bytes that come
# back, who closes and when, exit statuses), and after each one that the server still answers
# (`GET /healthz` over https → 200). One wss connection, upgraded before all the cases, must still
# echo after them (nothing else disturbed), and the server log must hold no panic.
#
#   echo TLS 1.3 / 1.2     a hand-written upgrade request, a masked text frame, a masked 300-byte
#                          binary frame and a masked close frame through s_client (-tls1_3,
#                          -tls1_2): the 101 with the right Sec-WebSocket-Accept, then exactly the
#                          two frames unmasked and the close 1000 echoed; s_client exits 0
#   https                  curl --cacert: GET /healthz (TLS 1.3 and 1.2) and /metrics → 200
#   resumption 1.3 / 1.2   s_client -sess_out, then -sess_in: "New" then "Reused", both 200
#   ALPN                   -alpn h2,http/1.1 → "ALPN protocol: http/1.1"; no ALPN also works
#                          (the echo cases); -alpn h2 alone → the handshake fails (s_client
#                          exits non-zero, no application data)
#   plain HTTP             a GET sent in clear to the TLS port: no HTTP response, closed at once
#                          (within 1 s)
#   random bytes           4 KiB of (fixed-seed) random bytes: closed at once
#   truncated ClientHello  the first half of a real ClientHello (s_client's, captured), then
#                          silence: closed at --handshake-timeout (2 s), not before 1.5 s
#   silent client          TCP open, nothing sent: closed at --handshake-timeout
#   bad record             a TLS 1.3 handshake and upgrade (Python ssl with memory BIOs), then a
#                          forged application-data record: closed, the established one unaffected
#
# Prints one line per case (PASS/FAIL and what was seen), then the server's TLS counters.
# Exit status 0 only when every case passed. About 10 s once built.
# Needs: openssl, curl, python3 (standard library only).
# Environment: TLS_RAW_PORT (first port to try, default 19401), CARGO_TARGET_DIR (as for cargo).
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=tls-raw.sh
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") ;;
    *) echo "$SCRIPT: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac
need_cmd openssl openssl
need_cmd curl curl
need_cmd python3 python3
PY3=$(python3 -c 'import sys; print(sys.executable)')

START=$(date +%s)
cargo_build --release --bin wsecho
WSECHO="$(target_dir)/release/wsecho"
TMP=$(mktemp -d)
SRV_PID=""
HOLD_PID=""
cleanup() {
    [ -n "$HOLD_PID" ] && stop_pids TERM 2 "$HOLD_PID"
    [ -n "$SRV_PID" ] && stop_pids TERM 5 "$SRV_PID"
    rm -rf "$TMP"
}
on_exit cleanup

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/key.pem" -out "$TMP/cert.pem" \
    -days 1 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$TMP/openssl.log" 2>&1 \
    || { echo "$SCRIPT: openssl could not make a certificate: $(tail -n1 "$TMP/openssl.log")" >&2; exit 1; }
CERT="$TMP/cert.pem"
PORT=$(free_port "${TLS_RAW_PORT:-19401}")
MPORT=$(free_port $((PORT + 1)))
RUST_LOG=debug "$WSECHO" --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$MPORT" --handshake-timeout 2 \
    --tls-cert "$CERT" --tls-key "$TMP/key.pem" 2>"$TMP/server.log" &
SRV_PID=$!
if ! { wait_port "$PORT" "$SRV_PID" && wait_port "$MPORT" "$SRV_PID"; }; then
    echo "$SCRIPT: wsecho did not start: $(tail -n1 "$TMP/server.log")" >&2; exit 1
fi

PASSED=0; FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS $1: $2"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1: $2"; [ -n "${3:-}" ] && sed 's/^/    /' "$3" | head -n 20; }
# serving: a fresh https GET /healthz gets 200 "ok" (and the process is alive).
serving() {
    alive "$SRV_PID" && [ "$(curl -s --max-time 5 --cacert "$CERT" https://127.0.0.1:"$PORT"/healthz)" = ok ]
}
# after NAME: fails NAME when the server stopped answering.
after() { serving || fail "$1" "the server no longer answers GET /healthz over https afterwards"; }

# sc ARGS...: s_client to the server, trusting only the certificate, hostname checked; killed after
# SC_LIMIT seconds (10).
sc() {
    timeout "${SC_LIMIT:-10}" openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -CAfile "$CERT" \
        -verify_return_error "$@"
}

KEY="dGhlIHNhbXBsZSBub25jZQ=="      # RFC 6455's example: its accept is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
UPGRADE="GET /raw HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: $KEY\r\nSec-WebSocket-Version: 13\r\n\r\n"
# The frames (masked, mask 37 fa 21 3d) and, after them, what must come back: text "Hello",
# binary 0..255 then 0..43 (300 bytes, 16-bit length), close 1000.
"$PY3" - "$TMP" <<'EOF'
import sys
d = sys.argv[1]
mask = bytes.fromhex("37fa213d")
def masked(b0, payload):
    n = len(payload)
    head = bytes([b0, 0x80 | n]) if n < 126 else bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
def plain(b0, payload):
    n = len(payload)
    return (bytes([b0, n]) if n < 126 else bytes([b0, 126]) + n.to_bytes(2, "big")) + payload
binary = bytes(range(256)) + bytes(range(44))
close = (1000).to_bytes(2, "big")
open(f"{d}/frames", "wb").write(masked(0x81, b"Hello") + masked(0x82, binary))
open(f"{d}/close", "wb").write(masked(0x88, close))
open(f"{d}/want", "wb").write(plain(0x81, b"Hello") + plain(0x82, binary) + plain(0x88, close))
EOF

# ---------------------------------------------------------------- one connection held throughout
# Upgraded now over TLS 1.3, echoes once now and once at the end (a fifo keeps s_client's stdin open).
mkfifo "$TMP/hold.in"
SC_LIMIT=120 sc -quiet -tls1_3 <"$TMP/hold.in" >"$TMP/hold.out" 2>"$TMP/hold.err" &
HOLD_PID=$!
exec 3>"$TMP/hold.in"
# shellcheck disable=SC2059 # UPGRADE holds \r\n escapes for printf
printf "$UPGRADE" >&3
cat "$TMP/frames" >&3
hold_bytes() { stat -c %s "$TMP/hold.out" 2>/dev/null || echo 0; }
wait_until 5 test "$(hold_bytes)" -ge 400 || true  # the 101's head and 311 bytes of frames
HOLD0=$(hold_bytes)

# ---------------------------------------------------------------- echo over TLS 1.3 and 1.2
# check_echo OUT: the response is a 101 with RFC 6455's accept, and what follows its head is
# exactly `want`. Prints what differs.
check_echo() {
    "$PY3" - "$1" "$TMP/want" <<'EOF'
import sys
out, want = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
head, sep, rest = out.partition(b"\r\n\r\n")
if not head.startswith(b"HTTP/1.1 101 "):
    sys.exit(f"no 101: {out[:80]!r}")
if b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" not in head:
    sys.exit(f"wrong accept: {head!r}")
if rest != want:
    sys.exit(f"frames differ: got {len(rest)} bytes {rest[:16].hex()}..., want {len(want)} bytes {want[:16].hex()}...")
print(f"101 then {len(rest)} bytes exactly as expected")
EOF
}
for v in 1.3 1.2; do
    name="echo TLS $v"
    # shellcheck disable=SC2059
    { printf "$UPGRADE"; sleep 0.2; cat "$TMP/frames"; sleep 0.2; cat "$TMP/close"; } \
        | sc -brief -ign_eof "-tls1_${v#1.}" >"$TMP/echo.out" 2>"$TMP/echo.err"
    st=$?
    proto=$(sed -n 's/^Protocol version: //p' "$TMP/echo.err")
    suite=$(sed -n 's/^Ciphersuite: //p' "$TMP/echo.err")
    if [ "$st" != 0 ]; then
        fail "$name" "s_client exited $st" "$TMP/echo.err"
    elif [ "$proto" != "TLSv$v" ]; then
        fail "$name" "negotiated '$proto'" "$TMP/echo.err"
    elif why=$(check_echo "$TMP/echo.out" 2>&1); then
        pass "$name" "$proto $suite, no ALPN offered: $why, close 1000 echoed, the server closed, s_client exit 0"
    else
        fail "$name" "$why"
    fi
    after "$name"
done

# ---------------------------------------------------------------- https: /healthz and /metrics
for v in 1.3 1.2; do
    got=$(curl -s --max-time 5 --cacert "$CERT" --tlsv"$v" --tls-max "$v" -o "$TMP/body" \
        -w '%{http_code} %{ssl_verify_result}' https://127.0.0.1:"$PORT"/healthz)
    if [ "$got" = "200 0" ] && [ "$(cat "$TMP/body")" = ok ]; then
        pass "https /healthz TLS $v" "200 ok (curl --cacert, verified)"
    else
        fail "https /healthz TLS $v" "curl: '$got', body '$(head -c 80 "$TMP/body")'"
    fi
done
got=$(curl -s --max-time 5 --cacert "$CERT" -o "$TMP/body" -w '%{http_code}' https://127.0.0.1:"$PORT"/metrics)
if [ "$got" = 200 ] && grep -q '^wsecho_tls_handshakes_total{version="1.3",resumed="false"' "$TMP/body"; then
    pass "https /metrics" "200, $(wc -l <"$TMP/body") lines, wsecho_tls_* among them"
else
    fail "https /metrics" "curl: '$got'" "$TMP/body"
fi

# ---------------------------------------------------------------- resumption
GET='GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
for v in 1.3 1.2; do
    name="resumption TLS $v"
    # shellcheck disable=SC2059
    printf "$GET" | sc -ign_eof "-tls1_${v#1.}" -sess_out "$TMP/sess" >"$TMP/r1.out" 2>&1; st1=$?
    # shellcheck disable=SC2059
    printf "$GET" | sc -ign_eof "-tls1_${v#1.}" -sess_in "$TMP/sess" >"$TMP/r2.out" 2>&1; st2=$?
    first=$(grep -m1 -E '^(New|Reused), ' "$TMP/r1.out"); second=$(grep -m1 -E '^(New|Reused), ' "$TMP/r2.out")
    if [ "$st1$st2" = 00 ] && [[ $first == "New, TLSv$v,"* ]] && [[ $second == "Reused, TLSv$v,"* ]] \
        && grep -q '^HTTP/1.1 200 OK' "$TMP/r1.out" && grep -q '^HTTP/1.1 200 OK' "$TMP/r2.out"; then
        pass "$name" "'$first' then '$second', both GET /healthz 200"
    else
        fail "$name" "exit $st1/$st2, '$first' then '$second'" "$TMP/r2.out"
    fi
    rm -f "$TMP/sess"
done
after "resumption"

# ---------------------------------------------------------------- ALPN
# shellcheck disable=SC2059
printf "$GET" | sc -ign_eof -alpn h2,http/1.1 >"$TMP/alpn.out" 2>&1; st=$?
alpn=$(grep -m1 '^ALPN protocol: ' "$TMP/alpn.out")
if [ "$st" = 0 ] && [ "$alpn" = "ALPN protocol: http/1.1" ] && grep -q '^HTTP/1.1 200 OK' "$TMP/alpn.out"; then
    pass "ALPN h2,http/1.1" "'$alpn', GET /healthz 200"
else
    fail "ALPN h2,http/1.1" "exit $st, '$alpn'" "$TMP/alpn.out"
fi
for v in 1.3 1.2; do
    # shellcheck disable=SC2059
    printf "$GET" | sc -ign_eof -alpn h2 "-tls1_${v#1.}" >"$TMP/alpn.out" 2>&1; st=$?
    alert=$(grep -o -m1 -E 'alert [a-z ]+|unexpected eof[a-z ]*' "$TMP/alpn.out")
    if [ "$st" != 0 ] && ! grep -q '^HTTP/' "$TMP/alpn.out"; then
        pass "ALPN h2 only, TLS $v" "refused: s_client exit $st, '${alert:-no alert text}'"
    else
        fail "ALPN h2 only, TLS $v" "exit $st" "$TMP/alpn.out"
    fi
done
after "ALPN"

# ---------------------------------------------------------------- bad input, raw sockets
# The ClientHello of an s_client, captured by a listener of our own; its first half is sent later.
"$PY3" - "$TMP/hello" >"$TMP/cap.port" <<'EOF' &
import socket, sys
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
print(l.getsockname()[1], flush=True)
l.settimeout(10)
c, _ = l.accept(); c.settimeout(5)
data = b""
while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
    b = c.recv(4096)
    if not b:
        break
    data += b
open(sys.argv[1], "wb").write(data)
EOF
CAP_PID=$!
wait_until 5 test -s "$TMP/cap.port" || true
timeout 5 openssl s_client -connect "127.0.0.1:$(cat "$TMP/cap.port")" -servername localhost </dev/null >/dev/null 2>&1
wait "$CAP_PID" 2>/dev/null

# Each case in its own thread, all at once (the two slow ones last ~2 s): one JSON line per case
# with what came back, how the connection ended and when.
"$PY3" - "$PORT" "$TMP/hello" "$CERT" >"$TMP/raw.json" <<'EOF'
import json, random, socket, ssl, sys, threading, time
port, hello, cert = int(sys.argv[1]), open(sys.argv[2], "rb").read(), sys.argv[3]
res = {}

def until_closed(s):
    """Reads until the connection ends: what came, and how it ended ("EOF", "RST" or "timeout")."""
    got = b""
    try:
        while True:
            b = s.recv(4096)
            if not b:
                return got, "EOF"
            got += b
    except ConnectionResetError:
        return got, "RST"
    except socket.timeout:
        return got, "timeout"

def run(name, data, limit=6):
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(limit)
    t0 = time.monotonic()
    if data:
        s.sendall(data)
    got, how = until_closed(s)
    res[name] = {"how": how, "secs": round(time.monotonic() - t0, 2), "got": got[:16].hex(), "len": len(got),
                 "http": b"HTTP/" in got}

def bad_record():
    """TLS 1.3 handshake and upgrade through memory BIOs, then a forged application-data record."""
    name = "bad record"
    ctx = ssl.create_default_context(cafile=cert)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(5)
    def pump():
        s.sendall(out.read())
        b = s.recv(65536)
        if not b:
            raise EOFError("closed")
        inc.write(b)
    while True:
        try:
            tls.do_handshake(); break
        except ssl.SSLWantReadError:
            pump()
    tls.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        try:
            head += tls.read(4096)
        except ssl.SSLWantReadError:
            pump()
    s.sendall(out.read())
    forged = bytes([0x17, 3, 3, 0, 40]) + random.Random(1).randbytes(40)
    t0 = time.monotonic()
    s.sendall(forged)
    got, how = until_closed(s)
    res[name] = {"how": how, "secs": round(time.monotonic() - t0, 2), "len": len(got),
                 "upgraded": head.startswith(b"HTTP/1.1 101 "), "got": got[:16].hex()}

rnd = random.Random(12)
junk = rnd.randbytes(4096)
assert junk[0] != 0x16  # a handshake record type would make the server wait for the rest
cases = [("plain HTTP", b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"), ("random bytes", junk),
         ("truncated ClientHello", hello[: len(hello) // 2]), ("silent client", b"")]
threads = [threading.Thread(target=run, args=c) for c in cases] + [threading.Thread(target=bad_record)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(res))
EOF
# raw NAME FIELD: a field of a case's result.
raw() { "$PY3" -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], {}).get(sys.argv[3], ""))' "$TMP/raw.json" "$1" "$2" 2>/dev/null; }
for name in "plain HTTP" "random bytes"; do
    how=$(raw "$name" how); secs=$(raw "$name" secs); got=$(raw "$name" got); http=$(raw "$name" http)
    if [ "$how" != timeout ] && [ "$http" = False ] && awk -v s="$secs" 'BEGIN { exit !(s < 1) }'; then
        pass "$name" "closed ($how) after ${secs}s, no HTTP response; got ${got:-nothing} (a TLS alert record: 15 03 03 00 02 02 nn)"
    else
        fail "$name" "how '$how' after ${secs}s, HTTP response: $http, got ${got:-nothing}" "$TMP/raw.json"
    fi
done
for name in "truncated ClientHello" "silent client"; do
    how=$(raw "$name" how); secs=$(raw "$name" secs)
    if [ "$how" != timeout ] && awk -v s="$secs" 'BEGIN { exit !(s >= 1.5 && s < 4) }'; then
        what=""; [ "$name" = "silent client" ] || what=", $(($(stat -c %s "$TMP/hello") / 2)) of a $(stat -c %s "$TMP/hello")-byte ClientHello sent"
        pass "$name" "closed ($how) after ${secs}s (--handshake-timeout 2)$what"
    else
        fail "$name" "how '$how' after ${secs}s (want closed between 1.5 and 4 s)" "$TMP/raw.json"
    fi
done
how=$(raw "bad record" how); secs=$(raw "bad record" secs); up=$(raw "bad record" upgraded); got=$(raw "bad record" got)
if [ "$up" = True ] && [ "$how" != timeout ] && awk -v s="$secs" 'BEGIN { exit !(s < 1) }'; then
    pass "bad record" "upgraded over TLS 1.3, then a forged record: closed ($how) after ${secs}s, got ${got:-nothing} (sealed alert)"
else
    fail "bad record" "upgraded: $up, how '$how' after ${secs}s" "$TMP/raw.json"
fi
after "bad input"

# ---------------------------------------------------------------- the held connection
cat "$TMP/frames" "$TMP/close" >&3
wait_until 5 bash -c "! kill -0 $HOLD_PID 2>/dev/null" || true
exec 3>&-
stop_pids TERM 2 "$HOLD_PID"; HOLD_PID=""
# What came back: 101, the first echo, then the same frames again and the close.
if "$PY3" - "$TMP/hold.out" "$TMP/want" "$HOLD0" >"$TMP/hold.check" 2>&1 <<'EOF'
import sys
out, want, first = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read(), int(sys.argv[3])
head, _, rest = out.partition(b"\r\n\r\n")
frames = want[: -4]  # the two data frames; the close (88 02 03 e8) is last
if not head.startswith(b"HTTP/1.1 101 "):
    sys.exit(f"no 101: {out[:60]!r}")
if rest != frames + want:
    sys.exit(f"got {len(rest)} bytes after the 101, want {len(frames) + len(want)}")
print(f"first echo ({first} bytes with the 101) before the cases, second echo and close 1000 after them")
EOF
then pass "held connection" "$(cat "$TMP/hold.check")"; else fail "held connection" "$(cat "$TMP/hold.check")" "$TMP/hold.err"; fi

# ---------------------------------------------------------------- the server's view
if grep -q -i panic "$TMP/server.log"; then fail "server log" "a panic" "$TMP/server.log"; fi
sleep 0.2  # the metrics port shows what the reactor published (every 100 ms)
echo "== server counters:"
fetch_metrics "$MPORT" | sed 's/,\{0,1\}process="[^"]*"//; s/{}//' | grep -E '^wsecho_tls_' | sed 's/^/   /'
echo "== server debug lines:"
sed -n 's/^DEBUG //p' "$TMP/server.log" | sed 's/connection [0-9]*/connection N/' | sort | uniq -c | sed 's/^/   /'
echo "== $(($(date +%s) - START)) s in all"
echo "tls-raw: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
