#!/usr/bin/env bash
# Builds the uWebSockets peer and uWebSockets' own load generator from a checkout you give:
#
#   UWS_SRC=/path/to/uWebSockets scripts/peers/uws.sh [--out DIR] [--print-dir]
#
# UWS_SRC is a uWebSockets checkout with uSockets in its uSockets/ folder (as its submodule
# puts it; USOCKETS_SRC=/path/to/uSockets overrides that). Nothing is fetched and nothing of that
# checkout is copied into this repository: objects and binaries go to DIR
# [default: <cargo target dir>/uws], the checkout is only read.
#
# Builds (gcc/g++ with C++20, zlib; `apt-get install g++ zlib1g-dev` on Debian):
#   DIR/uws-echo             benches/peers/uws/echo.cpp (ours) against the checkout's src/ and
#                            uSockets, no TLS: `uws-echo --listen 127.0.0.1:PORT`, one thread, text
#                            and binary messages echoed as received (the peer in scripts/compare.sh);
#                            `--compression shared|dedicated [--compress-echo]` turns on
#                            permessage-deflate (scripts/deflate-bench.sh)
#   DIR/load_test            the checkout's benchmarks/load_test.c, unchanged:
#                            `load_test CONNECTIONS HOST PORT 0 0 PAYLOAD_BYTES`; one binary frame in
#                            flight per connection, echoes checked by counting bytes ("ERROR:
#                            outstanding bytes negative!" when more bytes come back than were sent);
#                            prints "Msg/sec: X" every 4 s and runs until killed
#   DIR/load_test_pipelined  the same file compiled through benches/peers/uws/load_test_pipelined.c
#                            (ours): LOAD_TEST_PIPELINE=K sends K frames back to back per write and
#                            expects K echoes; its Msg/sec counts rounds of K messages;
#                            LOAD_TEST_PROBE=1 learns the echo's length from one probe message first
#                            (a server that echoes compressed frames)
# and, when OpenSSL's headers are installed (`apt-get install libssl-dev`; otherwise skipped with
# one line), the same three against a second uSockets build with OpenSSL (as its Makefile's
# WITH_OPENSSL=1: -DLIBUS_USE_OPENSSL, src/crypto/*.cpp as C++17, -lssl -lcrypto), for wss://:
#   DIR/uws-echo-tls         `uws-echo-tls --listen 127.0.0.1:PORT --tls-cert PEM --tls-key PEM
#                            [--tls-low-memory]` (uWS::SSLApp)
#   DIR/load_test_tls, DIR/load_test_pipelined_tls
#                            as above; pass 1 as load_test's `ssl` argument (uSockets' client
#                            context without a CA: the certificate is not verified)
#
# --print-dir prints DIR (after building) on stdout, alone, for other scripts.
# Rebuilds only when a source is newer than the binary.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRIPT=uws.sh
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"

OUTDIR="" PRINT=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUTDIR=${2:?--out needs a directory}; shift ;;
        --out=*) OUTDIR=${1#*=} ;;
        --print-dir) PRINT=1 ;;
        -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "$SCRIPT: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "$SCRIPT: $*" >&2; exit 1; }
say() { [ "$PRINT" = 1 ] || echo "$*" >&2; }

[ -n "${UWS_SRC:-}" ] || die "set UWS_SRC to a uWebSockets checkout (with uSockets in its uSockets/ folder)"
UWS=$(cd "$UWS_SRC" && pwd) || die "UWS_SRC=$UWS_SRC is not a directory"
US=${USOCKETS_SRC:-$UWS/uSockets}
US=$(cd "$US" 2>/dev/null && pwd) || die "no uSockets at $US (set USOCKETS_SRC, or put uSockets in $UWS/uSockets)"
[ -f "$UWS/src/App.h" ] || die "$UWS/src/App.h missing: UWS_SRC is not a uWebSockets checkout"
[ -f "$US/src/libusockets.h" ] || die "$US/src/libusockets.h missing: not a uSockets checkout"
[ -f "$UWS/benchmarks/load_test.c" ] || die "$UWS/benchmarks/load_test.c missing"
for t in gcc g++; do command -v "$t" >/dev/null 2>&1 || die "needs $t (apt-get install g++)"; done
printf '#include <zlib.h>\n' | gcc -E -x c - >/dev/null 2>&1 || die "needs zlib's header (apt-get install zlib1g-dev)"

[ -n "$OUTDIR" ] || OUTDIR="$(target_dir)/uws"
mkdir -p "$OUTDIR/obj"
OUTDIR=$(cd "$OUTDIR" && pwd)
rev() { git -C "$1" rev-parse --short=12 HEAD 2>/dev/null || echo "no git"; }
say "== uWebSockets $(rev "$UWS") at $UWS, uSockets $(rev "$US") at $US -> $OUTDIR"

CFLAGS=(-O3 -DLIBUS_NO_SSL -I"$US/src")
# newer SRC... than BIN: 0 when BIN must be (re)built.
stale() {
    local bin=$1 f
    shift
    [ -x "$bin" ] || return 0
    for f in "$@"; do [ "$f" -nt "$bin" ] && return 0; done
    return 1
}

# uSockets (no TLS), as its Makefile builds it with WITH_SSL unset, into OUTDIR/obj.
US_SRCS=("$US"/src/*.c "$US"/src/eventing/*.c "$US"/src/crypto/*.c)
if stale "$OUTDIR/obj/.built" "${US_SRCS[@]}"; then
    say "== building uSockets"
    rm -f "$OUTDIR"/obj/*.o
    (cd "$OUTDIR/obj" && gcc "${CFLAGS[@]}" -std=c11 -c "${US_SRCS[@]}") || die "uSockets build failed"
    : >"$OUTDIR/obj/.built"
fi
US_OBJS=("$OUTDIR"/obj/*.o)

ECHO_SRC="$ROOT/benches/peers/uws/echo.cpp"
if stale "$OUTDIR/uws-echo" "$ECHO_SRC" "$OUTDIR/obj/.built" "$UWS"/src/*.h; then
    say "== building uws-echo"
    g++ "${CFLAGS[@]}" -std=c++20 -I"$UWS/src" "$ECHO_SRC" "${US_OBJS[@]}" -lz -o "$OUTDIR/uws-echo" \
        || die "uws-echo build failed"
fi

if stale "$OUTDIR/load_test" "$UWS/benchmarks/load_test.c" "$OUTDIR/obj/.built"; then
    say "== building load_test"
    gcc "${CFLAGS[@]}" "$UWS/benchmarks/load_test.c" "${US_OBJS[@]}" -lz -o "$OUTDIR/load_test" \
        || die "load_test build failed"
fi

PIPE_SRC="$ROOT/benches/peers/uws/load_test_pipelined.c"
if stale "$OUTDIR/load_test_pipelined" "$PIPE_SRC" "$UWS/benchmarks/load_test.c" "$OUTDIR/obj/.built"; then
    say "== building load_test_pipelined"
    gcc "${CFLAGS[@]}" -I"$UWS/benchmarks" "$PIPE_SRC" "${US_OBJS[@]}" -lz -o "$OUTDIR/load_test_pipelined" \
        || die "load_test_pipelined build failed"
fi

# The OpenSSL build (wss://), into OUTDIR/obj-ssl.
if printf '#include <openssl/ssl.h>\n' | gcc -E -x c - >/dev/null 2>&1; then
    SSL_FLAGS=(-O3 -DLIBUS_USE_OPENSSL -Wno-deprecated-declarations -I"$US/src")
    mkdir -p "$OUTDIR/obj-ssl"
    if stale "$OUTDIR/obj-ssl/.built" "${US_SRCS[@]}" "$US"/src/crypto/*.cpp; then
        say "== building uSockets with OpenSSL"
        rm -f "$OUTDIR"/obj-ssl/*.o
        (cd "$OUTDIR/obj-ssl" && gcc "${SSL_FLAGS[@]}" -std=c11 -c "${US_SRCS[@]}" \
            && g++ "${SSL_FLAGS[@]}" -std=c++17 -c "$US"/src/crypto/*.cpp) || die "uSockets (OpenSSL) build failed"
        : >"$OUTDIR/obj-ssl/.built"
    fi
    SSL_OBJS=("$OUTDIR"/obj-ssl/*.o)
    SSL_LIBS=(-lssl -lcrypto -lstdc++ -lz)
    if stale "$OUTDIR/uws-echo-tls" "$ECHO_SRC" "$OUTDIR/obj-ssl/.built" "$UWS"/src/*.h; then
        say "== building uws-echo-tls"
        g++ "${SSL_FLAGS[@]}" -std=c++20 -I"$UWS/src" "$ECHO_SRC" "${SSL_OBJS[@]}" "${SSL_LIBS[@]}" -o "$OUTDIR/uws-echo-tls" \
            || die "uws-echo-tls build failed"
    fi
    if stale "$OUTDIR/load_test_tls" "$UWS/benchmarks/load_test.c" "$OUTDIR/obj-ssl/.built"; then
        say "== building load_test_tls"
        gcc "${SSL_FLAGS[@]}" "$UWS/benchmarks/load_test.c" "${SSL_OBJS[@]}" "${SSL_LIBS[@]}" -o "$OUTDIR/load_test_tls" \
            || die "load_test_tls build failed"
    fi
    if stale "$OUTDIR/load_test_pipelined_tls" "$PIPE_SRC" "$UWS/benchmarks/load_test.c" "$OUTDIR/obj-ssl/.built"; then
        say "== building load_test_pipelined_tls"
        gcc "${SSL_FLAGS[@]}" -I"$UWS/benchmarks" "$PIPE_SRC" "${SSL_OBJS[@]}" "${SSL_LIBS[@]}" -o "$OUTDIR/load_test_pipelined_tls" \
            || die "load_test_pipelined_tls build failed"
    fi
    say "== built with OpenSSL $(openssl version 2>/dev/null | awk '{ print $2 }'): $OUTDIR/uws-echo-tls $OUTDIR/load_test_tls $OUTDIR/load_test_pipelined_tls"
else
    say "== OpenSSL headers not found (apt-get install libssl-dev): uws-echo-tls and load_test_tls not built"
fi

echo "uWebSockets $(rev "$UWS"), uSockets $(rev "$US")" >"$OUTDIR/VERSION"
if [ "$PRINT" = 1 ]; then echo "$OUTDIR"; else say "== built: $OUTDIR/uws-echo $OUTDIR/load_test $OUTDIR/load_test_pipelined"; fi
