#!/usr/bin/env bash
# wss:// handshake figures (issue 12): full TLS handshakes per second on one reactor, and the echo
# latency of established wss connections while 1,000 clients handshake at once, for wsecho and
# the TLS peers (tokio-rustls ones from benches/peers, uWebSockets on OpenSSL with UWS_SRC).
# (Echo speed and idle memory over TLS: scripts/compare.sh --tls.)
#
#   scripts/tls-bench.sh [OPTIONS] [handshakes] [flood]      (default: both)
#
#   handshakes  a fresh server pinned to CPU 0; PAR `openssl s_time -new` clients (a full handshake
#               per connection, no resumption; OpenSSL's defaults: X25519, AES-256-GCM) pinned
#               to CPU 1 for SECS seconds, once with TLS 1.3 and once with -tls1_2. Prints
#               handshakes/s (what the clients reached), the server's CPU use and its CPU per
#               handshake (utime+stime / handshakes), and 1e6 / that: what one core sustains.
#   flood       a fresh server on CPU 0; wsbench --mode rate on CPU 1 keeps 100 wss connections
#               echoing 20 B at 10,000 msg/s in all (open loop: latency counted from each
#               message's scheduled send time) for SECS seconds; during its measured window, every
#               0.5 s a flood of 1,000 new connections at once (wsbench --mode idle -c 1000
#               --max-pending 1000 --no-tls-resume, each flood from its own 127.0.1.x source
#               address, at nice 19 on CPU 1 so the measuring client keeps its CPU; each holds
#               its connections until after the window, so their closes fall outside it). The
#               same run without floods is the control. Prints the echo latency
#               p50/p99/p99.9/max, the floods' handshakes and their handshake time p50/p99 (TCP
#               connect to 101), the server's CPU per flood handshake (its CPU in the window less
#               the control window's, over the handshakes), and for wsecho the deferred handshake
#               reads (wsecho_tls_handshakes_deferred_total, from a --metrics-listen port).
#
# Options:
#   --servers LIST   comma-separated subset of wsecho-tls, peer-tungstenite-tls,
#                    peer-fastwebsockets-tls, peer-uws-tls [default: all; peer-uws-tls only with
#                    UWS_SRC]
#   --rounds N       interleaved rounds (A B C A B C ...), medians shown [default: 3]
#   --secs S         seconds per measurement [default: 5]
#   --par N          parallel s_time clients [default: 4]
#   --no-build       use the binaries already built
#   --port-base P    servers on 127.0.0.1:P+1.. [default: 9510]
#   --out DIR        logs and the table [default: <target dir>/tls-bench/<UTC timestamp>]
#
# The certificate is a throwaway self-signed ECDSA P-256 one made by `openssl req` in DIR.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
SCRIPT=tls-bench
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"

die() { echo "$SCRIPT: $*" >&2; exit 2; }
SERVERS="wsecho-tls,peer-tungstenite-tls,peer-fastwebsockets-tls"
[ -z "${UWS_SRC:-}" ] || SERVERS="$SERVERS,peer-uws-tls"
ROUNDS=3 SECS=5 PAR=4 FLOOD_EVERY=0.5 BUILD=1 PORT_BASE=9510 OUT="" PICK=()
while [ $# -gt 0 ]; do
    case "$1" in
        --servers) SERVERS=${2:?}; shift ;;
        --rounds) ROUNDS=${2:?}; shift ;;
        --secs) SECS=${2:?}; shift ;;
        --par) PAR=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        --port-base) PORT_BASE=${2:?}; shift ;;
        --out) OUT=${2:?}; shift ;;
        -h | --help) usage; exit 0 ;;
        handshakes | flood) PICK+=("$1") ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[ ${#PICK[@]} -gt 0 ] || PICK=(handshakes flood)
for v in ROUNDS SECS PAR PORT_BASE; do
    case "${!v}" in '' | *[!0-9]*) die "${v,,}: '${!v}' is not a number" ;; esac
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (server on CPU 0, clients on CPU 1)"
for t in openssl taskset awk cargo; do command -v "$t" >/dev/null 2>&1 || die "needs $t"; done
IFS=, read -r -a RUN <<<"$SERVERS"

TARGET_DIR=$(target_dir)
PEERS_DIR="$ROOT/benches/peers"
if [ "$BUILD" = 1 ]; then
    cargo build --release --bin wsecho --bin wsbench || die "cargo build failed"
    cargo build --release --manifest-path "$PEERS_DIR/Cargo.toml" --target-dir "$PEERS_DIR/target" || die "peers build failed"
fi
UWS_DIR="$TARGET_DIR/uws"
if [ -n "${UWS_SRC:-}" ]; then
    UWS_DIR=$(bash "$ROOT/scripts/peers/uws.sh" --out "$UWS_DIR" --print-dir) || die "scripts/peers/uws.sh failed"
fi
WSBENCH="$TARGET_DIR/release/wsbench"
declare -A BIN=(
    [wsecho-tls]="$TARGET_DIR/release/wsecho"
    [peer-tungstenite-tls]="$PEERS_DIR/target/release/peer-tungstenite"
    [peer-fastwebsockets-tls]="$PEERS_DIR/target/release/peer-fastwebsockets"
    [peer-uws-tls]="$UWS_DIR/uws-echo-tls"
)
declare -A PORT=()
i=1
for s in "${RUN[@]}"; do
    [ -n "${BIN[$s]:-}" ] || die "unknown server '$s'"
    [ -x "${BIN[$s]}" ] || die "missing ${BIN[$s]}"
    PORT[$s]=$((PORT_BASE + i)) i=$((i + 1))
done
METRICS_PORT=$((PORT_BASE + 9))
[ -n "$OUT" ] || OUT="$TARGET_DIR/tls-bench/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT" || die "cannot create $OUT"
CERT="$OUT/tls-cert.pem" KEY="$OUT/tls-key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$KEY" -out "$CERT" >"$OUT/openssl-req.log" 2>&1 \
    || die "openssl req failed"
CLK_TCK=$(getconf CLK_TCK)
raise_nofile

SERVER_PID="" CLIENT_PIDS=()
cleanup() {
    # shellcheck disable=SC2086
    stop_pids TERM 1 "${CLIENT_PIDS[@]}" $SERVER_PID
    SERVER_PID="" CLIENT_PIDS=()
}
on_exit cleanup

cpu_ticks() { awk '{ sub(/.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$1/stat" 2>/dev/null; }
now() { date +%s.%N; }
# port_listening PORT: something listens on 127.0.0.1:PORT (as in scripts/compare.sh).
port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
median() {
    [ $# -gt 0 ] || return 0
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

start_server() {
    local name=$1 log=$2 port=${PORT[$1]} extra=()
    [ "$name" != wsecho-tls ] || extra=(--metrics-listen "127.0.0.1:$METRICS_PORT")
    if port_listening "$port"; then echo "$SCRIPT: port $port in use" >&2; return 1; fi
    taskset -c 0 "${BIN[$name]}" --listen "127.0.0.1:$port" --tls-cert "$CERT" --tls-key "$KEY" "${extra[@]}" >>"$log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 250); do
        port_listening "$port" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.02
    done
    echo "$SCRIPT: $name did not start (see $log)" >&2
    return 1
}
stop_server() { stop_pids TERM 2.5 "$SERVER_PID"; SERVER_PID=""; }
deferred() { fetch_metrics "$METRICS_PORT" | awk '/^wsecho_tls_handshakes_deferred_total/ { print $NF }'; }

# shellcheck disable=SC2034 # read through med's nameref
declare -A H F
# handshakes NAME ROUND VERSION(1.3|1.2)
run_handshakes() {
    local name=$1 r=$2 v=$3 base="$OUT/hs.$1.tls$3.r$2" flag=() c0 c1 t0 t1 n=0 k
    [ "$v" = 1.2 ] && flag=(-tls1_2)
    start_server "$name" "$base.server.log" || return
    taskset -c 1 openssl s_time -connect "127.0.0.1:${PORT[$name]}" -new -time 1 "${flag[@]}" >/dev/null 2>&1 # warm-up
    c0=$(cpu_ticks "$SERVER_PID") t0=$(now)
    CLIENT_PIDS=()
    for ((k = 1; k <= PAR; k++)); do
        taskset -c 1 openssl s_time -connect "127.0.0.1:${PORT[$name]}" -new -time "$SECS" "${flag[@]}" >"$base.s_time$k.out" 2>&1 &
        CLIENT_PIDS+=($!)
    done
    wait "${CLIENT_PIDS[@]}"
    CLIENT_PIDS=()
    c1=$(cpu_ticks "$SERVER_PID") t1=$(now)
    stop_server
    for ((k = 1; k <= PAR; k++)); do
        n=$((n + $(awk '/connections in .* real seconds/ { print $1; exit }' "$base.s_time$k.out" || echo 0)))
    done
    echo "handshakes $name TLS$v round $r: $n handshakes, server ticks $c0..$c1, wall $t0..$t1" >>"$OUT/samples.txt"
    [ "$n" -gt 0 ] || return
    H[$name,$v,$r,rate]=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    H[$name,$v,$r,cpu]=$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.1f", c / hz * 1e6 / n }')
    H[$name,$v,$r,pct]=$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", c / hz / (b - a) * 100 }')
    printf '%s: %-24s TLS %s round %d: %6s handshakes/s, server %s%% CPU, %s us CPU per handshake\n' "$SCRIPT" "$name" "$v" "$r" \
        "${H[$name,$v,$r,rate]}" "${H[$name,$v,$r,pct]}" "${H[$name,$v,$r,cpu]}" >&2
}

# flood NAME ROUND MODE(none|flood)
run_flood() {
    local name=$1 r=$2 mode=$3 base="$OUT/flood.$1.$3.r$2" port=${PORT[$1]} d0="" d1="" c0 c1 i=0 k v hs=0 end bpid
    start_server "$name" "$base.server.log" || return
    rm -f "$base.ready" "$base.json"
    taskset -c 1 "$WSBENCH" -q -m rate -c 100 -s 20 --rate 10000 --warmup 1 -d "$SECS" --close-timeout 2 \
        --ready-file "$base.ready" --json "$base.json" --insecure "wss://127.0.0.1:$port/" >"$base.wsbench.out" 2>&1 &
    bpid=$!
    CLIENT_PIDS=("$bpid")
    for _ in $(seq 1 300); do [ -f "$base.ready" ] && break; sleep 0.05; done
    sleep 1.2 # the warm-up, and a little more
    [ "$name" = wsecho-tls ] && d0=$(deferred)
    c0=$(cpu_ticks "$SERVER_PID")
    end=$(awk -v s="$SECS" -v t="$(now)" 'BEGIN { printf "%.3f", t + s - 0.5 }')
    if [ "$mode" = flood ]; then
        # One flood every FLOOD_EVERY s; each holds its connections until after the window, so
        # that only handshakes (and upgrades) fall inside it, not 1,000 closes at once.
        local fpids=() hold
        while awk -v e="$end" -v t="$(now)" 'BEGIN { exit !(t < e - 0.3) }' && [ "$i" -lt 200 ]; do
            i=$((i + 1))
            hold=$(awk -v e="$end" -v t="$(now)" 'BEGIN { printf "%.2f", e - t + 1.5 }')
            nice -n 19 taskset -c 1 "$WSBENCH" -q -m idle -c 1000 --max-pending 1000 --no-tls-resume -d "$hold" \
                --close-timeout 3 --source-ips "127.0.1.$((i % 250 + 1))" --json "$base.f$i.json" \
                --insecure "wss://127.0.0.1:$port/" >"$base.f$i.out" 2>&1 &
            fpids+=($!)
            CLIENT_PIDS=("$bpid" "${fpids[@]}")
            sleep "$FLOOD_EVERY"
        done
    fi
    c1=$(cpu_ticks "$SERVER_PID")
    [ "$name" = wsecho-tls ] && d1=$(deferred)
    wait "$bpid"
    [ "$i" = 0 ] || wait "${fpids[@]}"
    for ((k = 1; k <= i; k++)); do
        v=$(jnum "$base.f$k.json" upgraded)
        hs=$((hs + ${v:-0}))
    done
    CLIENT_PIDS=()
    stop_server
    local p50 p99 p999 max hp50="" hp99=""
    p50=$(jlat "$base.json" latency_us p50) p99=$(jlat "$base.json" latency_us p99)
    p999=$(jlat "$base.json" latency_us p99_9) max=$(jlat "$base.json" latency_us max)
    if [ "$i" -gt 0 ]; then
        local l50=() l99=()
        mapfile -t l50 < <(for ((k = 1; k <= i; k++)); do jlat "$base.f$k.json" handshake_us p50; done)
        mapfile -t l99 < <(for ((k = 1; k <= i; k++)); do jlat "$base.f$k.json" handshake_us p99; done)
        hp50=$(median "${l50[@]}") hp99=$(median "${l99[@]}")
    fi
    echo "flood $name $mode round $r: floods $i, upgraded $hs, latency p50 $p50 p99 $p99 p99.9 $p999 max $max, flood handshake p50 $hp50 p99 $hp99, server ticks $c0..$c1, deferred ${d0:-?}..${d1:-?}" >>"$OUT/samples.txt"
    F[$name,$mode,$r,p50]=$p50 F[$name,$mode,$r,p99]=$p99 F[$name,$mode,$r,p999]=$p999 F[$name,$mode,$r,max]=$max
    F[$name,$mode,$r,hs]=$hs F[$name,$mode,$r,hp50]=$hp50 F[$name,$mode,$r,hp99]=$hp99
    # shellcheck disable=SC2034 # read through med's nameref
    [ -z "$d1" ] || F[$name,$mode,$r,def]=$((d1 - d0))
    F[$name,$mode,$r,ticks]=$((c1 - c0))
    # Server CPU per flood handshake: this window's CPU less the control window's (same round).
    if [ "$mode" = flood ] && [ "$hs" -gt 0 ] && [ -n "${F[$name,none,$r,ticks]:-}" ]; then
        F[$name,$mode,$r,hscpu]=$(awk -v a="$((c1 - c0))" -v b="${F[$name,none,$r,ticks]}" -v hz="$CLK_TCK" -v n="$hs" \
            'BEGIN { printf "%.1f", (a - b) / hz * 1e6 / n }')
    fi
    printf '%s: %-24s %-5s round %d: echo p50 %s p99 %s p99.9 %s max %s us; %s floods, %s handshakes\n' "$SCRIPT" "$name" "$mode" "$r" \
        "$p50" "$p99" "$p999" "$max" "$i" "$hs" >&2
}

med() { # med ARRAY-NAME KEY-PREFIX FIELD: median over rounds
    local -n A=$1
    local vals=() r
    for ((r = 1; r <= ROUNDS; r++)); do [ -n "${A[$2,$r,$3]:-}" ] && vals+=("${A[$2,$r,$3]}"); done
    median "${vals[@]}"
}

{
    echo "wss handshakes and handshake floods, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short=12 HEAD)"
    echo "  $(nproc) CPUs, load average before start $(cut -d' ' -f1-3 /proc/loadavg); server on CPU 0, clients on CPU 1; $ROUNDS interleaved rounds, medians"
    echo "  certificate: self-signed ECDSA P-256; $(openssl version)"
} >"$OUT/header.txt"
cat "$OUT/header.txt" >&2
: >"$OUT/samples.txt"
for what in "${PICK[@]}"; do
    for ((r = 1; r <= ROUNDS; r++)); do
        for s in "${RUN[@]}"; do
            if [ "$what" = handshakes ]; then
                run_handshakes "$s" "$r" 1.3
                run_handshakes "$s" "$r" 1.2
            else
                run_flood "$s" "$r" none
                run_flood "$s" "$r" flood
            fi
        done
    done
done

{
    cat "$OUT/header.txt"
    for what in "${PICK[@]}"; do
        echo
        if [ "$what" = handshakes ]; then
            echo "full handshakes (openssl s_time -new, $PAR clients, ${SECS} s):"
            printf '%-26s %-6s %13s %9s %16s %18s\n' server TLS handshakes/s "srv CPU" "CPU us/handshake" "per core (1e6/CPU)"
            for s in "${RUN[@]}"; do
                for v in 1.3 1.2; do
                    cpu=$(med H "$s,$v" cpu)
                    printf '%-26s %-6s %13s %9s %16s %18s\n' "$s" "$v" "$(fmt "$(med H "$s,$v" rate)" %.0f)" \
                        "$(fmt "$(med H "$s,$v" pct)" %.0f)%" "$(fmt "$cpu" %.1f)" \
                        "$(awk -v c="$cpu" 'BEGIN { if (c > 0) printf "%.0f", 1e6 / c; else print "-" }')"
                done
            done
        else
            echo "echo latency of 100 wss connections (20 B, 10,000 msg/s in all, ${SECS} s) without and with floods of 1,000 handshakes:"
            printf '%-26s %-6s %9s %9s %9s %9s %11s %14s %14s %10s %11s\n' server floods "p50 us" "p99 us" "p99.9 us" "max us" handshakes "hs p50 us" "hs p99 us" deferred "CPU us/hs"
            for s in "${RUN[@]}"; do
                for m in none flood; do
                    printf '%-26s %-6s %9s %9s %9s %9s %11s %14s %14s %10s %11s\n' "$s" "$m" \
                        "$(fmt "$(med F "$s,$m" p50)" %.0f)" "$(fmt "$(med F "$s,$m" p99)" %.0f)" "$(fmt "$(med F "$s,$m" p999)" %.0f)" \
                        "$(fmt "$(med F "$s,$m" max)" %.0f)" "$(fmt "$(med F "$s,$m" hs)" %.0f)" \
                        "$(fmt "$(med F "$s,$m" hp50)" %.0f)" "$(fmt "$(med F "$s,$m" hp99)" %.0f)" "$(fmt "$(med F "$s,$m" def)" %.0f)" \
                        "$(fmt "$(med F "$s,$m" hscpu)" %.1f)"
                done
            done
        fi
    done
    echo
    echo "Raw results: $OUT"
} >"$OUT/table.txt"
cat "$OUT/table.txt"
