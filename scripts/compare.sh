#!/usr/bin/env bash
# Side-by-side comparison: wsecho against two echo servers built from published crates
# (benches/peers: peer-tungstenite on tokio-tungstenite, peer-fastwebsockets on fastwebsockets)
# and, when UWS_SRC names a uWebSockets checkout, a uWebSockets echo server (peer-uws, built by
# scripts/peers/uws.sh), all on one thread, measured with wsbench (frame fidelity check on).
#
#   scripts/compare.sh [OPTIONS] [SCENARIO...]
#   scripts/compare.sh            # 5 s measured per run: ~2 minutes after the builds
#   scripts/compare.sh --quick    # 2 s measured per run: ~1 minute
# (up to ~3x that when other processes keep the CPUs busy and rows are run again: --retries)
#
# Scenarios (numbered as in scripts/bench.sh; default: all):
#   1  100 connections x 20 B      (1 in flight per connection, then 16 pipelined)
#   2  10 connections x 1 KiB      (1 in flight, then 16)
#   3  200 connections x 16 KiB    (1 in flight, then 4, then 16), then
#      100 connections x 64 KiB    (4 in flight): deep backlogs (issue 15, docs/fairness.md)
#   4  10,000 idle connections: server RSS per connection
#
# wss:// (--tls): the same scenarios over TLS. Every server then also runs as a TLS variant, named
# NAME-tls: wsecho-tls (wsecho --tls-cert/--tls-key), peer-tungstenite-tls and
# peer-fastwebsockets-tls (the same binaries with --tls-cert/--tls-key: tokio-rustls, aws-lc-rs)
# and, with UWS_SRC, peer-uws-tls (uws-echo-tls: uWebSockets on OpenSSL); wsbench connects to
# wss:// with --insecure. The certificate is a throwaway self-signed ECDSA P-256 one made by
# `openssl req` in the output directory (never committed). Ratios are then wsecho-tls against
# the best TLS peer, and a second ratio line compares wsecho-tls with plain wsecho (what TLS costs).
#
# Options:
#   --quick            shorter runs (2 s measured, 0.5 s warm-up, 1 s idle hold)
#   --tls              wss://: servers wsecho (plain, the reference), wsecho-tls and the TLS
#                      peers (see above) unless --servers names others; any NAME-tls may be named
#                      with or without --tls. peer-uws-tls-lowmem is uws-echo-tls --tls-low-memory
#                      (OpenSSL's SSL_MODE_RELEASE_BUFFERS), run only when named.
#   --no-build         use the binaries already built
#   --servers LIST     comma-separated subset of: wsecho,peer-tungstenite,peer-fastwebsockets,
#                      peer-uws [default: all; peer-uws only when UWS_SRC is set]
#   --baseline BIN     also run another wsecho binary (e.g. built from an older commit) as server
#                      "wsecho-baseline", on 127.0.0.1:P+5: a before/after in one interleaved run;
#                      not a peer (ratios stay wsecho / best peer)
#   --load-test        also run uWebSockets' own load generator (benchmarks/load_test.c, needs
#                      UWS_SRC) on scenario 3's rows (with --tls also on scenario 1's) against every
#                      server (TLS variants: load_test_tls, its ssl argument 1): msg/s and server CPU
#                      per message, and whether it saw more bytes than it sent (an echo that is not
#                      frame for frame; load_test checks echoes by counting bytes). One message in
#                      flight is load_test as it is; K in flight is benches/peers/uws's wrapper that
#                      sends K of its frames per write. ~15 s per row and server (and round: with
#                      --rounds these runs are interleaved too, medians shown).
#   --idle-conns N     connections for the idle-memory scenario [default: 10000]
#   --retries N        run a row again when other processes took >= 15% of a pinned CPU during
#                      it, at most N more times, and keep the quietest run [default: 2]
#   --rounds N         run each echo scenario N times, the servers interleaved (A B C A B C ...),
#                      and show the median of each figure over the rounds that succeeded;
#                      --retries is not used then [default: 1]
#   --nice N           run at scheduling priority N (e.g. -10; negative needs root): with the
#                      kernel's autogroup scheduling (sched_autogroup_enabled=1) every busy session
#                      gets an equal share of a CPU, so on a shared machine the pinned server and
#                      wsbench may get a fraction of theirs whatever their own nice; N is set on
#                      this script's autogroup (/proc/self/autogroup) and restored at exit, or
#                      with renice when autogroups are off
#   --port-base P      servers listen on 127.0.0.1:P+1 .. P+5 [default: 9410]
#   --out DIR          where logs, wsbench JSON and the table go
#                      [default: <target dir>/compare/<UTC timestamp>]
#
# What it does, per scenario and per server: start the server afresh pinned to CPU 0
# (`taskset -c 0`), run wsbench pinned to CPU 1 (`taskset -c 1`), and stop the server (a trap stops
# anything still running on exit, Ctrl-C included).
#   echo scenarios   100 conns x 20 B, 10 conns x 1 KiB, 200 conns x 16 KiB; each with 1 message
#                    in flight per connection and with 16 pipelined (16 KiB also with 4), and 100
#                    conns x 64 KiB with 4. wsbench gives msg/s and p50/p99/p99.9 round-trip
#                    latency over its measured window, and checks every echo byte for byte and
#                    every echoed frame for FIN, opcode and length ("errors": echo mismatches +
#                    fidelity errors, 0 expected; any fails the row); server CPU per message
#                    is the server's utime+stime (/proc/PID/stat) sampled when wsbench prints
#                    MEASURE_START and MEASURE_END, divided by the messages echoed in between (as
#                    scripts/bench.sh does). The server's and wsbench's CPU use (% of one core) in
#                    that window are shown too: wsbench near 100% while the server has CPU to spare
#                    means that row measures the client, not the server ("client-bound").
#   idle scenario    N connections upgraded and held (wsbench --mode idle); server memory per
#                    connection = (VmRSS after ALL_UPGRADED - VmRSS before) / N.
# Ratios are wsecho / best peer: msg/s against the peer with the most msg/s (higher is better);
# latency, CPU per message and memory against the peer with the least (lower is better).
# Targets checked: pipelined msg/s >= 1.5x, one-in-flight msg/s >= 1.0x, idle memory <= 1/25,
# and for the deep-backlog rows (16 KiB or more, 4 or more in flight) p99 <= 1.0x the best peer's.
#
# Environment: UWS_SRC (uWebSockets checkout with uSockets in its uSockets/ folder; USOCKETS_SRC
# overrides that; see scripts/peers/uws.sh). Without it the peer-uws rows and --load-test are
# skipped, with one line saying so.
#
# Keep the scenario list in step with scripts/bench.sh.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
SCRIPT=compare
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"

QUICK=0
BUILD=1
SERVERS="wsecho,peer-tungstenite,peer-fastwebsockets"
IDLE_N=10000
PORT_BASE=9410
OUT=""
PICK=()
RETRIES=2
LOAD_TEST=0
SERVERS_GIVEN=0
ROUNDS=1
NICE=""
BASELINE=""
TLS=0

die() { echo "compare: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --tls) TLS=1 ;;
        --no-build) BUILD=0 ;;
        --servers) SERVERS=${2:?--servers needs a list} SERVERS_GIVEN=1; shift ;;
        --servers=*) SERVERS=${1#*=} SERVERS_GIVEN=1 ;;
        --load-test) LOAD_TEST=1 ;;
        --baseline) BASELINE=${2:?--baseline needs a wsecho binary}; shift ;;
        --baseline=*) BASELINE=${1#*=} ;;
        --rounds) ROUNDS=${2:?--rounds needs a number}; shift ;;
        --rounds=*) ROUNDS=${1#*=} ;;
        --nice) NICE=${2:?--nice needs a number}; shift ;;
        --nice=*) NICE=${1#*=} ;;
        --idle-conns) IDLE_N=${2:?--idle-conns needs a number}; shift ;;
        --idle-conns=*) IDLE_N=${1#*=} ;;
        --port-base) PORT_BASE=${2:?--port-base needs a port}; shift ;;
        --port-base=*) PORT_BASE=${1#*=} ;;
        --retries) RETRIES=${2:?--retries needs a number}; shift ;;
        --retries=*) RETRIES=${1#*=} ;;
        --out) OUT=${2:?--out needs a directory}; shift ;;
        --out=*) OUT=${1#*=} ;;
        -h | --help) usage; exit 0 ;;
        [1-4]) PICK+=("$1") ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    DUR_MS=2000 WARM_MS=500 IDLE_HOLD_MS=1000 MODE_NAME="quick: 2 s measured + 0.5 s warm-up per scenario"
else
    DUR_MS=5000 WARM_MS=1000 IDLE_HOLD_MS=2000 MODE_NAME="full: 5 s measured + 1 s warm-up per scenario"
fi
# Seconds as wsbench takes them. (Time arithmetic stays in bash integers: mawk's printf %d stops
# at 2^31.)
secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
DUR=$(secs $DUR_MS) WARM=$(secs $WARM_MS) IDLE_HOLD=$(secs $IDLE_HOLD_MS)

# group conns size-bytes pipeline label
ALL_SCENARIOS=(
    "1 100 20 1 100c x 20 B, 1 in flight"
    "1 100 20 16 100c x 20 B, 16 pipelined"
    "2 10 1024 1 10c x 1 KiB, 1 in flight"
    "2 10 1024 16 10c x 1 KiB, 16 pipelined"
    "3 200 16384 1 200c x 16 KiB, 1 in flight"
    "3 200 16384 4 200c x 16 KiB, 4 pipelined"
    "3 200 16384 16 200c x 16 KiB, 16 pipelined"
    "3 100 65536 4 100c x 64 KiB, 4 pipelined"
)
[ ${#PICK[@]} -gt 0 ] || PICK=(1 2 3 4)
SCENARIOS=()
for sc in "${ALL_SCENARIOS[@]}"; do
    case " ${PICK[*]} " in *" ${sc%% *} "*) SCENARIOS+=("${sc#* }") ;; esac
done
RUN_IDLE=0
case " ${PICK[*]} " in *" 4 "*) RUN_IDLE=1 ;; esac
ALL_SERVERS=(wsecho peer-tungstenite peer-fastwebsockets peer-uws wsecho-baseline
    wsecho-tls peer-tungstenite-tls peer-fastwebsockets-tls peer-uws-tls peer-uws-tls-lowmem)
# is_tls NAME: the server speaks wss://.
is_tls() { [[ "$1" == *-tls || "$1" == *-tls-lowmem ]]; }
# The server whose ratios are checked: wsecho, or wsecho-tls with --tls.
SUBJECT=wsecho
if [ "$TLS" = 1 ]; then
    SUBJECT=wsecho-tls
    [ "$SERVERS_GIVEN" = 1 ] || SERVERS="wsecho,wsecho-tls,peer-tungstenite-tls,peer-fastwebsockets-tls"
fi
# peer-uws: built from the uWebSockets checkout the user names (UWS_SRC), never fetched.
UWS_SKIP=""
if [ -z "${UWS_SRC:-}" ]; then
    UWS_SKIP="peer-uws (uWebSockets) skipped: UWS_SRC is not set (a uWebSockets checkout with uSockets in its uSockets/ folder; see scripts/peers/uws.sh)"
    [ "$LOAD_TEST" = 0 ] || die "--load-test needs UWS_SRC (uWebSockets' benchmarks/load_test.c is built from it)"
elif [ "$SERVERS_GIVEN" = 0 ]; then
    if [ "$TLS" = 1 ]; then SERVERS="$SERVERS,peer-uws-tls"; else SERVERS="$SERVERS,peer-uws"; fi
fi
if [ -n "$BASELINE" ]; then
    [ -x "$BASELINE" ] || die "--baseline: '$BASELINE' is not an executable"
    BASELINE=$(cd "$(dirname "$BASELINE")" && pwd)/$(basename "$BASELINE")
    case ",$SERVERS," in *,wsecho-baseline,*) ;; *) SERVERS="wsecho-baseline,$SERVERS" ;; esac
fi

IFS=, read -r -a RUN_SERVERS <<<"$SERVERS"
for s in "${RUN_SERVERS[@]}"; do
    case " ${ALL_SERVERS[*]} " in *" $s "*) ;; *) die "unknown server '$s' (wsecho, peer-tungstenite, peer-fastwebsockets, peer-uws, each also as NAME-tls)" ;; esac
    [[ "$s" != peer-uws* ]] || [ -n "${UWS_SRC:-}" ] || die "$s needs UWS_SRC (see scripts/peers/uws.sh)"
    [ "$s" != wsecho-baseline ] || [ -n "$BASELINE" ] || die "wsecho-baseline needs --baseline BIN"
done
[ -z "$UWS_SKIP" ] || echo "compare: $UWS_SKIP" >&2
case "$IDLE_N" in '' | *[!0-9]*) die "--idle-conns: '$IDLE_N' is not a number" ;; esac
case "$RETRIES" in '' | *[!0-9]*) die "--retries: '$RETRIES' is not a number" ;; esac
case "$ROUNDS" in '' | 0 | *[!0-9]*) die "--rounds: '$ROUNDS' is not a positive number" ;; esac
case "$NICE" in '' | -[0-9] | -1[0-9] | -20 | [0-9] | 1[0-9]) ;; *) die "--nice: '$NICE' is not a priority (-20..19)" ;; esac
case "$PORT_BASE" in '' | *[!0-9]*) die "--port-base: '$PORT_BASE' is not a number" ;; esac

for tool in taskset awk cargo git; do
    command -v "$tool" >/dev/null 2>&1 || die "needs '$tool' (taskset is in util-linux)"
done
NCPU=$(nproc)
if [ "$NCPU" -lt 2 ]; then
    die "needs 2 CPUs (server on CPU 0, wsbench on CPU 1); this machine has $NCPU"
fi
CLK_TCK=$(getconf CLK_TCK)
[ -n "${EPOCHREALTIME:-}" ] || die "needs bash 5 or later (EPOCHREALTIME)"

# ---------------------------------------------------------------- build
TARGET_DIR=$(target_dir)
PEERS_DIR="$ROOT/benches/peers"
PEERS_TARGET="$PEERS_DIR/target"
if [ "$BUILD" = 1 ]; then
    echo "compare: building wsecho, wsbench (release) and the peers" >&2
    cargo build --release --bin wsecho --bin wsbench || die "cargo build of wsecho/wsbench failed"
    cargo build --release --manifest-path "$PEERS_DIR/Cargo.toml" --target-dir "$PEERS_TARGET" \
        || die "cargo build of benches/peers failed"
fi
UWS_DIR="$TARGET_DIR/uws"
if [ -n "${UWS_SRC:-}" ]; then
    # Builds only what is out of date (also with --no-build: it checks the sources' times).
    UWS_DIR=$(bash "$ROOT/scripts/peers/uws.sh" --out "$UWS_DIR" --print-dir) || die "scripts/peers/uws.sh failed (UWS_SRC=$UWS_SRC)"
fi
WSECHO="$TARGET_DIR/release/wsecho"
WSBENCH="$TARGET_DIR/release/wsbench"
declare -A BIN=(
    [wsecho]="$WSECHO"
    [peer-tungstenite]="$PEERS_TARGET/release/peer-tungstenite"
    [peer-fastwebsockets]="$PEERS_TARGET/release/peer-fastwebsockets"
    [peer-uws]="$UWS_DIR/uws-echo"
    [wsecho-baseline]="$BASELINE"
    [wsecho-tls]="$WSECHO"
    [peer-tungstenite-tls]="$PEERS_TARGET/release/peer-tungstenite"
    [peer-fastwebsockets-tls]="$PEERS_TARGET/release/peer-fastwebsockets"
    [peer-uws-tls]="$UWS_DIR/uws-echo-tls"
    [peer-uws-tls-lowmem]="$UWS_DIR/uws-echo-tls"
)
declare -A PORT=(
    [wsecho]=$((PORT_BASE + 1))
    [peer-tungstenite]=$((PORT_BASE + 2))
    [peer-fastwebsockets]=$((PORT_BASE + 3))
    [peer-uws]=$((PORT_BASE + 4))
    [wsecho-baseline]=$((PORT_BASE + 5))
    [wsecho-tls]=$((PORT_BASE + 6))
    [peer-tungstenite-tls]=$((PORT_BASE + 7))
    [peer-fastwebsockets-tls]=$((PORT_BASE + 8))
    [peer-uws-tls]=$((PORT_BASE + 9))
    [peer-uws-tls-lowmem]=$((PORT_BASE + 10))
)
for s in "${RUN_SERVERS[@]}"; do
    [ -x "${BIN[$s]}" ] || die "missing ${BIN[$s]} (run without --no-build)"
done
[ -x "$WSBENCH" ] || die "missing $WSBENCH (run without --no-build)"
LOAD_TEST_BIN="$UWS_DIR/load_test" LOAD_TEST_K_BIN="$UWS_DIR/load_test_pipelined"

[ -n "$OUT" ] || OUT="$TARGET_DIR/compare/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT" || die "cannot create $OUT"

# wss://: a throwaway self-signed ECDSA P-256 certificate for 127.0.0.1, made here for this run.
TLS_CERT="$OUT/tls-cert.pem" TLS_KEY="$OUT/tls-key.pem" ANY_TLS=0
for s in "${RUN_SERVERS[@]}"; do is_tls "$s" && ANY_TLS=1; done
if [ "$ANY_TLS" = 1 ]; then
    command -v openssl >/dev/null 2>&1 || die "--tls needs openssl (for a throwaway certificate)"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$TLS_KEY" -out "$TLS_CERT" >"$OUT/openssl-req.log" 2>&1 \
        || die "openssl req failed (see $OUT/openssl-req.log)"
fi
# server_args NAME: the arguments after --listen ADDR (one per line).
server_args() {
    is_tls "$1" || return 0
    printf '%s\n' --tls-cert "$TLS_CERT" --tls-key "$TLS_KEY"
    [[ "$1" != *-lowmem ]] || echo --tls-low-memory
}
# bench_target NAME PORT: wsbench's URL and, for wss://, --insecure before it (one per line).
bench_target() {
    if is_tls "$1"; then printf '%s\n' --insecure "wss://127.0.0.1:$2/"; else echo "ws://127.0.0.1:$2/"; fi
}

# ---------------------------------------------------------------- process control
SERVER_PID=""
BENCH_PID=""

cleanup() {
    # shellcheck disable=SC2086 # an empty PID drops out
    stop_pids TERM 1 $BENCH_PID $SERVER_PID
    BENCH_PID="" SERVER_PID=""
}
on_exit cleanup

# --nice: on this script's autogroup (restored by an EXIT trap of its own), else on the script.
AUTOGROUP_WAS=""
restore_autogroup() { [ -z "$AUTOGROUP_WAS" ] || echo "$AUTOGROUP_WAS" >/proc/self/autogroup 2>/dev/null || true; }
if [ -n "$NICE" ]; then
    if [ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null)" = 1 ] && [ -w /proc/self/autogroup ]; then
        AUTOGROUP_WAS=$(sed -n 's/.* nice \(-\{0,1\}[0-9]*\)$/\1/p' /proc/self/autogroup)
        if echo "$NICE" >/proc/self/autogroup 2>/dev/null; then
            trap 'restore_autogroup; cleanup' EXIT
            echo "compare: autogroup $(cat /proc/self/autogroup) (was nice $AUTOGROUP_WAS)" >&2
        else
            AUTOGROUP_WAS=""
            echo "compare: warning: cannot set the autogroup's nice to $NICE (not root?); going on without" >&2
        fi
    else
        renice -n "$NICE" -p $$ >/dev/null 2>&1 || echo "compare: warning: renice $NICE failed; going on without" >&2
    fi
fi

# The sampling below runs while the servers are measured, so it sticks to builtins (no fork).
# now_ns VAR: wall-clock nanoseconds into VAR.
now_ns() {
    local t=${EPOCHREALTIME/[.,]/}
    printf -v "$1" '%s' "$((10#$t * 1000))"
}

# cpu_ticks VAR PID: utime+stime (clock ticks, all threads) of a process into VAR; empty if gone.
cpu_ticks() {
    local _ct_line _ct_f
    printf -v "$1" '%s' ""
    { read -r _ct_line <"/proc/$2/stat"; } 2>/dev/null || return 0
    _ct_line=${_ct_line##*) }
    read -r -a _ct_f <<<"$_ct_line"
    printf -v "$1" '%s' "$((_ct_f[11] + _ct_f[12]))"
}

# cpu_jiffies VAR0 VAR1: "busy total" jiffies of CPU 0 and CPU 1 from /proc/stat (busy = all but
# idle and iowait).
cpu_jiffies() {
    local _cj_name _cj_u _cj_n _cj_sy _cj_id _cj_io _cj_irq _cj_si _cj_st _cj_rest _cj_busy
    while read -r _cj_name _cj_u _cj_n _cj_sy _cj_id _cj_io _cj_irq _cj_si _cj_st _cj_rest; do
        _cj_busy=$((_cj_u + _cj_n + _cj_sy + _cj_irq + _cj_si + _cj_st))
        case "$_cj_name" in
            cpu0) printf -v "$1" '%s' "$_cj_busy $((_cj_busy + _cj_id + _cj_io))" ;;
            cpu1) printf -v "$2" '%s' "$_cj_busy $((_cj_busy + _cj_id + _cj_io))"; break ;;
        esac
    done </proc/stat
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# True when something listens on TCP port $1 (any address, v4 or v6).
port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# start_server NAME LOG: starts it pinned to CPU 0 and waits for its port; sets SERVER_PID.
start_server() {
    local name=$1 log=$2 port=${PORT[$1]}
    if port_listening "$port"; then
        echo "compare: port $port is already in use; pick another --port-base" >&2
        return 1
    fi
    local extra=()
    mapfile -t extra < <(server_args "$name")
    taskset -c 0 "${BIN[$name]}" --listen "127.0.0.1:$port" "${extra[@]}" >>"$log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 250); do
        port_listening "$port" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.02
    done
    echo "compare: $name did not start listening on $port (see $log)" >&2
    cleanup
    return 1
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    stop_pids TERM 2.5 "$SERVER_PID"
    SERVER_PID=""
}

# run_bench KIND OUTF TIMEOUT_S COMMAND...: runs wsbench (KIND echo or idle) with its stdout
# through a FIFO and acts on its marker lines as they come:
#   ALL_UPGRADED n=N       (idle) after 0.5 s of settling, the server's VmRSS -> RSS_UP
#   MEASURE_START msgs=M   server and wsbench CPU ticks, time, M -> C0 B0 T0 MSG0
#   MEASURE_END msgs=M     the same -> C1 B1 T1 MSG1
# (the scripts/bench.sh method: CPU sampled at the markers, divided by the messages in between).
# wsbench's own CPU is sampled at MEASURE_START and last while measuring -> B0, B1 (at TB1).
# Kills wsbench past TIMEOUT_S. Sets those variables, UPGRADED (0/1), UP_LINE, BENCH_RC.
run_bench() {
    local kind=$1 outf=$2 limit=$3
    shift 3
    UPGRADED=0 UP_LINE="" RSS_UP="" C0="" C1="" B0="" B1="" T0="" T1="" TB1="" J0="" J1="" K0="" K1="" MSG0="" MSG1="" BENCH_RC=""
    local fifo="$OUT/.wsbench.fifo" fd line deadline left st timed_out=0
    rm -f "$fifo"
    mkfifo "$fifo" || die "cannot create $fifo"
    "$@" >"$fifo" 2>"${outf%.out}.err" &
    BENCH_PID=$!
    exec {fd}<"$fifo"
    rm -f "$fifo"
    : >"$outf"
    deadline=$((SECONDS + limit))
    local measuring=0 chunk partial=""
    while :; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            timed_out=1
            break
        fi
        # Short read timeouts: while measuring, wsbench's own CPU is sampled every 0.1 s (it may
        # exit, and be reaped by bash, right after MEASURE_END, so its last sample is taken here).
        IFS= read -r -t 0.1 -u "$fd" chunk
        st=$?
        if [ "$st" -gt 128 ]; then
            partial+=$chunk # a timed-out read keeps what it got of the line
            if [ "$measuring" = 1 ]; then
                cpu_ticks left "$BENCH_PID"
                [ -z "$left" ] || { B1=$left; now_ns TB1; }
            fi
            continue
        fi
        line=$partial$chunk partial=""
        [ "$st" = 0 ] || break
        echo "$line" >>"$outf"
        case "$line" in
            ALL_UPGRADED*)
                UPGRADED=1 UP_LINE=$line
                if [ "$kind" = idle ]; then
                    sleep 0.5
                    RSS_UP=$(rss_kb "$SERVER_PID")
                fi
                ;;
            UPGRADE_INCOMPLETE*) UP_LINE=$line ;;
            MEASURE_START*)
                cpu_ticks C0 "$SERVER_PID"
                cpu_ticks B0 "$BENCH_PID"
                now_ns T0
                cpu_jiffies J0 K0
                MSG0=${line#*msgs=}
                measuring=1
                ;;
            MEASURE_END*)
                cpu_ticks C1 "$SERVER_PID"
                now_ns T1
                cpu_jiffies J1 K1
                MSG1=${line#*msgs=}
                cpu_ticks left "$BENCH_PID"
                [ -z "$left" ] || B1=$left TB1=$T1
                measuring=0
                ;;
        esac
    done
    if [ "$timed_out" = 1 ]; then
        echo "compare: wsbench still running after ${limit}s; stopping it" >&2
        kill -TERM "$BENCH_PID" 2>/dev/null
        sleep 2
        kill -KILL "$BENCH_PID" 2>/dev/null
    fi
    # Whatever wsbench still prints (its table) after the loop stopped reading.
    cat <&"$fd" >>"$outf" 2>/dev/null
    exec {fd}<&-
    wait "$BENCH_PID" 2>/dev/null
    BENCH_RC=$?
    BENCH_PID=""
}

# Why a run failed, from wsbench's status and JSON ('' when it did not).
failure() {
    local json=$1 rc=$2 alive=$3 why=""
    [ "$UPGRADED" = 1 ] || why="not all connections upgraded (${UP_LINE:-no ALL_UPGRADED line})"
    [ "$alive" = 1 ] || why="${why:+$why; }server died"
    [ -f "$json" ] || why="${why:+$why; }no result"
    if [ "$rc" != 0 ]; then
        why="${why:+$why; }wsbench exit $rc"
        [ -f "$json" ] && why="$why (lost $(jnum "$json" lost_connections), mismatches $(jnum "$json" echo_mismatches), fidelity errors $(jnum "$json" fidelity_errors), connect failures $(jnum "$json" connect_failures), handshake failures $(jnum "$json" handshake_failures))"
    fi
    echo "$why"
}

# ---------------------------------------------------------------- scenarios
# Results: R[scenario,server,field]
declare -A R
FIELDS=(rate p50 p99 p999 errors cpu srvpct clipct other status)
TRY=1

run_echo() {
    local sc=$1 name=$2 conns=$3 size=$4 k=$5
    local base="$OUT/$sc.$name.run$TRY" port=${PORT[$2]}
    local json="$base.json"
    rm -f "$json"
    R[$sc,$name,status]="FAIL"
    start_server "$name" "$base.server.log" || { R[$sc,$name,status]="FAIL: server did not start"; return; }
    local url=()
    mapfile -t url < <(bench_target "$name" "$port")
    local cmd=(taskset -c 1 "$WSBENCH" -q -c "$conns" -s "$size" -k "$k" -d "$DUR" --warmup "$WARM"
        --close-timeout 1 --ramp-timeout 20 --json "$json" "${url[@]}")
    echo "${cmd[*]}" >>"$OUT/commands.txt"
    run_bench echo "$base.wsbench.out" $(((WARM_MS + DUR_MS) / 1000 + 30)) "${cmd[@]}"
    local rc=$BENCH_RC alive=1
    kill -0 "$SERVER_PID" 2>/dev/null || alive=0
    stop_server
    echo "$sc $name run $TRY rc=$rc $UP_LINE window_ns=$((${T1:-0} - ${T0:-0})) msgs=${MSG0:-?}..${MSG1:-?}" \
        "server_ticks=${C0:-?}..${C1:-?} cpu0_busy_total=${J0:-?}..${J1:-?} cpu1_busy_total=${K0:-?}..${K1:-?} wsbench_ticks=${B0:-?}..${B1:-?} over $((${TB1:-0} - ${T0:-0})) ns (CLK_TCK $CLK_TCK)" >>"$OUT/samples.txt"

    R[$sc,$name,rate]=$(jnum "$json" msgs_per_sec)
    R[$sc,$name,p50]=$(jlat "$json" latency_us p50)
    R[$sc,$name,p99]=$(jlat "$json" latency_us p99)
    R[$sc,$name,p999]=$(jlat "$json" latency_us p99_9)
    local mism fid
    mism=$(jnum "$json" echo_mismatches) fid=$(jnum "$json" fidelity_errors)
    [ -z "$mism$fid" ] || R[$sc,$name,errors]=$((${mism:-0} + ${fid:-0}))
    if [ -n "$C0" ] && [ -n "$C1" ] && [ -n "$MSG0" ] && [ -n "$MSG1" ] && [ "$MSG1" -gt "$MSG0" ]; then
        local dt=$((T1 - T0))
        R[$sc,$name,cpu]=$(awk -v c="$((C1 - C0))" -v hz="$CLK_TCK" -v m="$((MSG1 - MSG0))" \
            'BEGIN { printf "%.3f", c / hz * 1e6 / m }')
        R[$sc,$name,srvpct]=$(awk -v c="$((C1 - C0))" -v hz="$CLK_TCK" -v t="$dt" 'BEGIN { printf "%.0f", c / hz / (t / 1e9) * 100 }')
        if [ -n "$B0" ] && [ -n "$B1" ] && [ "$((TB1 - T0))" -gt 500000000 ]; then
            R[$sc,$name,clipct]=$(awk -v c="$((B1 - B0))" -v hz="$CLK_TCK" -v t="$((TB1 - T0))" 'BEGIN { printf "%.0f", c / hz / (t / 1e9) * 100 }')
        fi
    fi
    # CPU time on CPU 0 / CPU 1 that was not the server's / wsbench's (other processes, or
    # interrupts and softirqs; loopback networking is mostly charged to the two processes).
    if [ -n "$J0" ] && [ -n "$J1" ] && [ -n "${R[$sc,$name,srvpct]:-}" ]; then
        R[$sc,$name,other]=$(awk -v a="$J0" -v b="$J1" -v c="$K0" -v d="$K1" -v s="${R[$sc,$name,srvpct]}" \
            -v w="${R[$sc,$name,clipct]:-}" 'BEGIN {
                split(a, x, " "); split(b, y, " "); split(c, u, " "); split(d, v, " ")
                o0 = (y[2] > x[2]) ? (y[1] - x[1]) / (y[2] - x[2]) * 100 - s : 0
                o1 = (v[2] > u[2] && w != "") ? (v[1] - u[1]) / (v[2] - u[2]) * 100 - w : 0
                o = (o0 > o1) ? o0 : o1
                printf "%.0f", (o > 0) ? o : 0 }')
    fi
    local why
    why=$(failure "$json" "$rc" "$alive")
    # wsbench has exited 0 with no message echoed in the whole window (every connection stalled,
    # 100 close timeouts): not a result.
    if [ -z "$why" ] && [ -n "$MSG0" ] && [ "$MSG1" = "$MSG0" ]; then
        why="no message echoed in the measured window (a stall: see $base.wsbench.out)"
    fi
    if [ -z "$why" ]; then
        R[$sc,$name,status]="ok"
        if [ "${R[$sc,$name,clipct]:-0}" -ge 95 ] && [ "${R[$sc,$name,srvpct]:-100}" -lt 90 ]; then
            R[$sc,$name,status]="ok, client-bound"
        fi
        if [ "${R[$sc,$name,other]:-0}" -ge 15 ]; then
            R[$sc,$name,status]="${R[$sc,$name,status]}; noisy: ${R[$sc,$name,other]}% of a pinned CPU went elsewhere"
        fi
    else
        R[$sc,$name,status]="FAIL: $why"
    fi
    printf 'compare: %-26s %-20s %12s msg/s  %s\n' "${SCEN_LABEL[$sc]}" "$name" "${R[$sc,$name,rate]:--}" "${R[$sc,$name,status]}" >&2
}

run_idle() {
    local name=$1 sc=idle
    local base="$OUT/$sc.$name" port=${PORT[$1]}
    local json="$base.json"
    rm -f "$json"
    R[$sc,$name,status]="FAIL"
    start_server "$name" "$base.server.log" || { R[$sc,$name,status]="FAIL: server did not start"; return; }
    sleep 0.2
    local rss0
    rss0=$(rss_kb "$SERVER_PID")
    local url=()
    mapfile -t url < <(bench_target "$name" "$port")
    local cmd=(taskset -c 1 "$WSBENCH" -q -m idle -c "$IDLE_N" -d "$IDLE_HOLD" --close-timeout 3
        --ramp-timeout 60 --json "$json" "${url[@]}")
    echo "${cmd[*]}" >>"$OUT/commands.txt"
    run_bench idle "$base.wsbench.out" $((IDLE_HOLD_MS / 1000 + 75)) "${cmd[@]}"
    local rc=$BENCH_RC alive=1 n=""
    kill -0 "$SERVER_PID" 2>/dev/null || alive=0
    stop_server
    echo "idle $name rc=$rc ${UP_LINE} VmRSS_kB=${rss0:-?}..${RSS_UP:-?}" >>"$OUT/samples.txt"
    R[$sc,$name,rss0]=$rss0 R[$sc,$name,rss1]=$RSS_UP
    [ "$UPGRADED" = 1 ] && n=${UP_LINE#*n=}
    if [ -n "$RSS_UP" ] && [ -n "$n" ] && [ "$n" -gt 0 ]; then
        R[$sc,$name,perconn]=$(awk -v a="$rss0" -v b="$RSS_UP" -v n="$n" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
    fi
    local why
    why=$(failure "$json" "$rc" "$alive")
    if [ -z "$why" ]; then R[$sc,$name,status]="ok"; else R[$sc,$name,status]="FAIL: $why"; fi
    printf 'compare: %-26s %-20s %12s B/conn %s\n' "idle $IDLE_N conns" "$name" "${R[$sc,$name,perconn]:--}" "${R[$sc,$name,status]}" >&2
}

# run_load_test SC NAME CONNS SIZE K: uWebSockets' load_test against a fresh server for LT_SECS (K > 1:
# the wrapper that sends K frames per write). It prints "Msg/sec: X" every 4 s, X counting rounds
# of K messages; the first report (with the ramp-up) is dropped, server CPU is sampled at the
# second and the last. It exits at once, printing "ERROR: outstanding bytes negative!", when more
# bytes come back than it sent (an echo that is not frame for frame carries extra headers).
# Sets L[SC,NAME,rate|cpu|status].
declare -A L
run_load_test() {
    local sc=$1 name=$2 conns=$3 size=$4 k=$5
    local base="$OUT/$sc.$name.load_test" port=${PORT[$2]} bin=$LOAD_TEST_BIN ssl=0
    [ "$k" = 1 ] || bin=$LOAD_TEST_K_BIN
    if is_tls "$name"; then ssl=1 bin=${bin}_tls; fi
    L[$sc,$name,status]="FAIL"
    start_server "$name" "$base.server.log" || { L[$sc,$name,status]="FAIL: server did not start"; return; }
    local cmd=(env LOAD_TEST_PIPELINE="$k" taskset -c 1 timeout "$LT_SECS" stdbuf -oL "$bin" "$conns" 127.0.0.1 "$port" "$ssl" 0 "$size")
    echo "${cmd[*]}" >>"$OUT/commands.txt"
    local n=0 c0="" c1="" t0="" t1="" msgs=0 line err="" zero=0
    : >"$base.out"
    while IFS= read -r line; do
        echo "$line" >>"$base.out"
        case "$line" in
            Msg/sec:*)
                n=$((n + 1))
                awk -v r="${line#Msg/sec: }" 'BEGIN { exit !(r + 0 == 0) }' && zero=$((zero + 1))
                if [ "$n" = 2 ]; then
                    cpu_ticks c0 "$SERVER_PID"; now_ns t0
                elif [ "$n" -gt 2 ]; then
                    cpu_ticks c1 "$SERVER_PID"; now_ns t1
                    msgs=$(awk -v m="$msgs" -v r="${line#Msg/sec: }" -v k="$k" 'BEGIN { printf "%.0f", m + r * 4 * k }')
                fi
                ;;
            ERROR*) err=$line ;;
        esac
    done < <("${cmd[@]}" 2>&1)
    local alive=1
    kill -0 "$SERVER_PID" 2>/dev/null || alive=0
    stop_server
    echo "$sc $name load_test k=$k reports=$n msgs=$msgs server_ticks=${c0:-?}..${c1:-?} window_ns=$((${t1:-0} - ${t0:-0})) ${err}" >>"$OUT/samples.txt"
    if [ -n "$c1" ] && [ "$msgs" -gt 0 ]; then
        L[$sc,$name,rate]=$(awk -v m="$msgs" -v t="$((t1 - t0))" 'BEGIN { printf "%.0f", m / (t / 1e9) }')
        L[$sc,$name,cpu]=$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v m="$msgs" 'BEGIN { printf "%.3f", c / hz * 1e6 / m }')
    fi
    if [ -n "$err" ]; then
        L[$sc,$name,status]="FAIL: load_test: $err (more bytes came back than were sent)"
    elif [ "$alive" = 0 ]; then
        L[$sc,$name,status]="FAIL: server died"
    elif [ "$n" -lt 3 ]; then
        L[$sc,$name,status]="FAIL: $n Msg/sec reports in ${LT_SECS} s"
    elif [ "$zero" -ge $((n - 1)) ]; then
        L[$sc,$name,status]="FAIL: no echoes completed (0 msg/s: fewer bytes came back than were sent)"
    else
        L[$sc,$name,status]="ok"
    fi
    printf 'compare: %-26s %-20s %12s msg/s  %s (load_test)\n' "${SCEN_LABEL[$sc]}" "$name" "${L[$sc,$name,rate]:--}" "${L[$sc,$name,status]}" >&2
}

# median VALUE...: the median of the numbers given (empty when none).
median() {
    [ $# -gt 0 ] || return 0
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# run_rounds SC CONNS SIZE K: --rounds: ROUNDS rounds of every server in turn (interleaved, so
# that a noisy stretch hits all of them), then each figure is the median over the rounds that
# succeeded; a server that failed a round says so in its status.
run_rounds() {
    local sc=$1 conns=$2 size=$3 k=$4 r name f
    declare -A RR=()
    for ((r = 1; r <= ROUNDS; r++)); do
        for name in "${RUN_SERVERS[@]}"; do
            TRY=$r
            run_echo "$sc" "$name" "$conns" "$size" "$k"
            for f in "${FIELDS[@]}"; do RR[$name,$r,$f]=${R[$sc,$name,$f]:-}; done
        done
    done
    for name in "${RUN_SERVERS[@]}"; do
        local ok=0 fails="" noisy=0
        for ((r = 1; r <= ROUNDS; r++)); do
            if [[ "${RR[$name,$r,status]}" == ok* ]]; then ok=$((ok + 1)); else fails="${fails:+$fails; }round $r: ${RR[$name,$r,status]}"; fi
            [[ "${RR[$name,$r,status]}" != *noisy* ]] || noisy=$((noisy + 1))
        done
        for f in "${FIELDS[@]}"; do
            [ "$f" = status ] && continue
            local vals=()
            for ((r = 1; r <= ROUNDS; r++)); do
                [[ "${RR[$name,$r,status]}" == ok* ]] && [ -n "${RR[$name,$r,$f]}" ] && vals+=("${RR[$name,$r,$f]}")
            done
            R[$sc,$name,$f]=$(median "${vals[@]}")
        done
        if [ "$ok" = 0 ]; then
            R[$sc,$name,status]="FAIL: $fails"
        else
            R[$sc,$name,status]="ok (median of $ok of $ROUNDS rounds$([ "$noisy" = 0 ] || echo ", $noisy noisy"))"
            [ -z "$fails" ] || R[$sc,$name,status]="${R[$sc,$name,status]}; $fails"
        fi
    done
}

# ---------------------------------------------------------------- header
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock benches/peers 2>/dev/null)" ]; then
    commit="$commit + uncommitted changes"
fi
lockver() { awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$PEERS_DIR/Cargo.lock"; }
load1=$(cut -d' ' -f1 /proc/loadavg)
{
    echo "wsecho vs peers ($MODE_NAME), $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "  commit      $commit"
    if [ "$BUILD" = 1 ]; then built="built from this tree by this run"; else
        built="--no-build: as found, wsecho built $(date -u -r "$WSECHO" '+%Y-%m-%d %H:%M UTC'), so maybe not from this commit"; fi
    echo "  binaries    $("$WSECHO" --version), $("$WSBENCH" --version), $(rustc -V 2>/dev/null); $built"
    echo "              in $TARGET_DIR/release and $PEERS_TARGET/release"
    echo "  peers       tokio-tungstenite $(lockver tokio-tungstenite) (tungstenite $(lockver tungstenite)), fastwebsockets $(lockver fastwebsockets) (hyper $(lockver hyper)), tokio $(lockver tokio)"
    if [ -n "${UWS_SRC:-}" ]; then
        echo "              peer-uws: $(cat "$UWS_DIR/VERSION" 2>/dev/null) from UWS_SRC=$UWS_SRC (benches/peers/uws/echo.cpp)"
    else
        echo "              $UWS_SKIP"
    fi
    if [ "$ANY_TLS" = 1 ]; then
        echo "  tls         NAME-tls servers: wss:// with a throwaway self-signed ECDSA P-256 certificate ($TLS_CERT), wsbench --insecure;"
        echo "              peers on tokio-rustls $(lockver tokio-rustls) (rustls $(lockver rustls), aws-lc-rs $(lockver aws-lc-rs)); peer-uws-tls on $(openssl version 2>/dev/null)"
    fi
    echo "  machine     $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), Linux $(uname -r), load average before start $load1"
    echo "  setup       server on CPU 0 (taskset -c 0), wsbench on CPU 1 (taskset -c 1), loopback, fresh server per row"
    [ "$ROUNDS" = 1 ] || echo "              $ROUNDS rounds per scenario, servers interleaved; figures are medians over the rounds"
    [ -z "$BASELINE" ] || echo "  baseline    wsecho-baseline = $BASELINE ($("$BASELINE" --version 2>/dev/null), built $(date -u -r "$BASELINE" '+%Y-%m-%d %H:%M UTC'))"
    [ -z "$NICE" ] || echo "              --nice $NICE ($(if [ -n "$AUTOGROUP_WAS" ]; then echo "on this script's autogroup"; else echo "renice"; fi))"
} >"$OUT/header.txt"
cat "$OUT/header.txt" >&2
if awk -v l="$load1" 'BEGIN { exit !(l > 0.7) }'; then
    echo "compare: warning: load average $load1 before start; something else is using the CPUs and the numbers will be noisy" >&2
fi
: >"$OUT/commands.txt"
: >"$OUT/samples.txt"

# ---------------------------------------------------------------- run
declare -A SCEN_LABEL SCEN_K SCEN_SIZE
for i in "${!SCENARIOS[@]}"; do
    read -r conns size k label <<<"${SCENARIOS[$i]}"
    sc="s$((i + 1))"
    SCEN_LABEL[$sc]=$label SCEN_K[$sc]=$k SCEN_SIZE[$sc]=$size
    if [ "$ROUNDS" -gt 1 ]; then
        run_rounds "$sc" "$conns" "$size" "$k"
        continue
    fi
    for name in "${RUN_SERVERS[@]}"; do
        TRY=1
        run_echo "$sc" "$name" "$conns" "$size" "$k"
        # On a shared machine: run a noisy row again (at most RETRIES times), keep the quietest.
        while [ "$TRY" -le "$RETRIES" ] && [[ "${R[$sc,$name,status]}" == *noisy* ]]; do
            declare -A KEEP=()
            for f in "${FIELDS[@]}"; do KEEP[$f]=${R[$sc,$name,$f]:-}; done
            TRY=$((TRY + 1))
            echo "compare: ${SCEN_LABEL[$sc]} / $name was noisy; run $TRY of $((RETRIES + 1))" >&2
            sleep 1
            run_echo "$sc" "$name" "$conns" "$size" "$k"
            if [[ "${R[$sc,$name,status]}" != ok* ]] || [ "${R[$sc,$name,other]:-0}" -gt "${KEEP[other]:-0}" ]; then
                for f in "${FIELDS[@]}"; do R[$sc,$name,$f]=${KEEP[$f]}; done
            fi
        done
        [ "$TRY" = 1 ] || R[$sc,$name,status]="${R[$sc,$name,status]} (best of $TRY runs)"
    done
done
if [ "$RUN_IDLE" = 1 ]; then
    for name in "${RUN_SERVERS[@]}"; do
        run_idle "$name"
    done
fi
LT_SCS=()
if [ "$LOAD_TEST" = 1 ]; then
    if [ "$QUICK" = 1 ]; then LT_SECS=14; else LT_SECS=22; fi
    for i in "${!SCENARIOS[@]}"; do
        read -r conns size k label <<<"${SCENARIOS[$i]}"
        # 16 KiB and more; over TLS also 20 B (the issue's uWebSockets figure is load_test's 100 x 20 B).
        [ "$size" -ge 16384 ] || { [ "$TLS" = 1 ] && [ "$size" -le 20 ]; } || continue
        sc="s$((i + 1))"
        LT_SCS+=("$sc")
        # --rounds: interleaved like the echo rows; each figure the median of the rounds that passed.
        declare -A LR=()
        for ((r = 1; r <= ROUNDS; r++)); do
            for name in "${RUN_SERVERS[@]}"; do
                run_load_test "$sc" "$name" "$conns" "$size" "$k"
                LR[$name,$r,rate]=${L[$sc,$name,rate]:-} LR[$name,$r,cpu]=${L[$sc,$name,cpu]:-} LR[$name,$r,status]=${L[$sc,$name,status]}
            done
        done
        [ "$ROUNDS" = 1 ] && continue
        for name in "${RUN_SERVERS[@]}"; do
            rates=() cpus=() fails=""
            for ((r = 1; r <= ROUNDS; r++)); do
                if [ "${LR[$name,$r,status]}" = ok ] && [ -n "${LR[$name,$r,cpu]}" ]; then
                    rates+=("${LR[$name,$r,rate]}") cpus+=("${LR[$name,$r,cpu]}")
                else
                    fails="${fails:+$fails; }round $r: ${LR[$name,$r,status]}"
                fi
            done
            L[$sc,$name,rate]=$(median "${rates[@]}") L[$sc,$name,cpu]=$(median "${cpus[@]}")
            if [ ${#cpus[@]} = 0 ]; then L[$sc,$name,status]="FAIL: $fails"; else
                L[$sc,$name,status]="ok (median of ${#cpus[@]} of $ROUNDS rounds; CPU us/msg $(printf '%s ' "${cpus[@]}"))${fails:+; $fails}"; fi
        done
    done
fi

# ---------------------------------------------------------------- table
# best_peer SC FIELD max|min: prints "value name" of the best peer with a result, or nothing.
best_peer() {
    local sc=$1 f=$2 how=$3 best="" bname="" v name
    for name in "${RUN_SERVERS[@]}"; do
        case "$name" in wsecho*) continue ;; esac
        # Peers on the subject's side only: TLS peers against wsecho-tls, plain ones against wsecho.
        if is_tls "$SUBJECT"; then is_tls "$name" || continue; else ! is_tls "$name" || continue; fi
        [[ "${R[$sc,$name,status]:-}" == ok* ]] || continue
        v=${R[$sc,$name,$f]:-}
        [ -n "$v" ] || continue
        if [ -z "$best" ] || awk -v a="$v" -v b="$best" -v h="$how" 'BEGIN { exit !((h == "max") ? a > b : a < b) }'; then
            best=$v bname=$name
        fi
    done
    [ -n "$best" ] && echo "$best $bname"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b + 0 > 0) printf "%.2fx", a / b; else printf "-" }'; }
wsecho_ok() { [[ "${R[$1,$SUBJECT,status]:-}" == ok* ]]; }
# tls_cost SC: with --tls, the line wsecho-tls / wsecho (what TLS costs wsecho), when both ran.
tls_cost() {
    local sc=$1
    [ "$TLS" = 1 ] && [[ "${R[$sc,wsecho,status]:-}" == ok* ]] && [[ "${R[$sc,wsecho-tls,status]:-}" == ok* ]] || return 0
    printf '%-34s %-22s %11s %9s %9s %9s %6s %11s %8s %8s  %s
' "" "wsecho-tls/wsecho" \
        "$(ratio "${R[$sc,wsecho-tls,rate]:-}" "${R[$sc,wsecho,rate]:-}")" "$(ratio "${R[$sc,wsecho-tls,p50]:-}" "${R[$sc,wsecho,p50]:-}")" \
        "$(ratio "${R[$sc,wsecho-tls,p99]:-}" "${R[$sc,wsecho,p99]:-}")" "$(ratio "${R[$sc,wsecho-tls,p999]:-}" "${R[$sc,wsecho,p999]:-}")" "" \
        "$(ratio "${R[$sc,wsecho-tls,cpu]:-}" "${R[$sc,wsecho,cpu]:-}")" "" "" "what TLS costs wsecho"
}

{
    cat "$OUT/header.txt"
    echo
    printf '%-34s %-22s %11s %9s %9s %9s %6s %11s %8s %8s  %s\n' \
        "scenario" "server" "msg/s" "p50 us" "p99 us" "p99.9 us" "errors" "CPU us/msg" "srv CPU" "wsbench" "status"
    for i in "${!SCENARIOS[@]}"; do
        sc="s$((i + 1))"
        first=1
        for name in "${RUN_SERVERS[@]}"; do
            label=""
            [ "$first" = 1 ] && label=${SCEN_LABEL[$sc]}
            first=0
            printf '%-34s %-22s %11s %9s %9s %9s %6s %11s %8s %8s  %s\n' "$label" "$name" \
                "$(fmt "${R[$sc,$name,rate]:-}" %.0f)" \
                "$(fmt "${R[$sc,$name,p50]:-}" %.1f)" "$(fmt "${R[$sc,$name,p99]:-}" %.1f)" "$(fmt "${R[$sc,$name,p999]:-}" %.1f)" \
                "${R[$sc,$name,errors]:--}" "$(fmt "${R[$sc,$name,cpu]:-}" %.2f)" \
                "${R[$sc,$name,srvpct]:+${R[$sc,$name,srvpct]}%}" "${R[$sc,$name,clipct]:+${R[$sc,$name,clipct]}%}" \
                "${R[$sc,$name,status]:-not run}"
        done
        bp_rate=$(best_peer "$sc" rate max)
        if [ -n "$bp_rate" ] && [[ " ${RUN_SERVERS[*]} " == *" $SUBJECT "* ]]; then
            bp_p50=$(best_peer "$sc" p50 min) bp_p99=$(best_peer "$sc" p99 min) bp_cpu=$(best_peer "$sc" cpu min)
            bp_p999=$(best_peer "$sc" p999 min)
            if wsecho_ok "$sc"; then
                r_rate=$(ratio "${R[$sc,$SUBJECT,rate]:-}" "${bp_rate%% *}")
                r_p50=$(ratio "${R[$sc,$SUBJECT,p50]:-}" "${bp_p50%% *}")
                r_p99=$(ratio "${R[$sc,$SUBJECT,p99]:-}" "${bp_p99%% *}")
                r_p999=$(ratio "${R[$sc,$SUBJECT,p999]:-}" "${bp_p999%% *}")
                r_cpu=$(ratio "${R[$sc,$SUBJECT,cpu]:-}" "${bp_cpu%% *}")
            else
                r_rate="-" r_p50="-" r_p99="-" r_p999="-" r_cpu="-"
            fi
            if [ "${SCEN_K[$sc]}" -gt 1 ]; then target=1.5; else target=1.0; fi
            verdict="NOT MET"
            awk -v r="${r_rate%x}" -v t="$target" 'BEGIN { exit !(r != "-" && r + 0 >= t) }' && verdict="MET"
            note="msg/s target >= ${target}x: $verdict (best peer by msg/s: ${bp_rate#* })"
            # Deep backlogs (issue 15): large messages, several in flight: p99 no worse than the best peer's.
            if [ "${SCEN_K[$sc]}" -ge 4 ] && [ "${SCEN_SIZE[$sc]}" -ge 16384 ]; then
                verdict="NOT MET"
                awk -v r="${r_p99%x}" 'BEGIN { exit !(r != "-" && r + 0 <= 1.0) }' && verdict="MET"
                note="$note; p99 target <= 1.0x: $verdict (best peer by p99: ${bp_p99#* })"
            fi
            # Over TLS (issue 12): pipelined msg/s >= 1.5x the better tokio-rustls peer, and server
            # CPU per message <= 0.9x uWebSockets' on OpenSSL.
            if [ "$TLS" = 1 ] && [ "${SCEN_K[$sc]}" -gt 1 ]; then
                bt="" btn=""
                for name in peer-tungstenite-tls peer-fastwebsockets-tls; do
                    [[ "${R[$sc,$name,status]:-}" == ok* ]] || continue
                    if [ -z "$bt" ] || awk -v a="${R[$sc,$name,rate]}" -v b="$bt" 'BEGIN { exit !(a > b) }'; then
                        bt=${R[$sc,$name,rate]} btn=$name
                    fi
                done
                if [ -n "$bt" ]; then
                    local_r=$(ratio "${R[$sc,$SUBJECT,rate]:-}" "$bt")
                    verdict="NOT MET"
                    awk -v r="${local_r%x}" 'BEGIN { exit !(r != "-" && r + 0 >= 1.5) }' && verdict="MET"
                    note="$note; msg/s vs the better tokio-rustls peer ($btn) $local_r, target >= 1.5x: $verdict"
                fi
            fi
            if [ "$TLS" = 1 ] && [[ "${R[$sc,peer-uws-tls,status]:-}" == ok* ]]; then
                local_r=$(ratio "${R[$sc,$SUBJECT,cpu]:-}" "${R[$sc,peer-uws-tls,cpu]:-}")
                verdict="NOT MET"
                awk -v r="${local_r%x}" 'BEGIN { exit !(r != "-" && r + 0 <= 0.9) }' && verdict="MET"
                note="$note; CPU/msg vs peer-uws-tls $local_r, target <= 0.9x: $verdict"
            fi
            printf '%-34s %-22s %11s %9s %9s %9s %6s %11s %8s %8s  %s\n' "" "$SUBJECT/best peer" "$r_rate" "$r_p50" "$r_p99" "$r_p999" "" "$r_cpu" "" "" \
                "$note"
        fi
        tls_cost "$sc"
    done
    if [ "$RUN_IDLE" = 1 ]; then
    echo
    printf '%-34s %-22s %11s %11s %14s  %s\n' "idle memory" "server" "RSS before" "RSS after" "bytes/conn" "status"
    first=1
    for name in "${RUN_SERVERS[@]}"; do
        label=""
        [ "$first" = 1 ] && label="$IDLE_N idle connections"
        first=0
        printf '%-34s %-22s %11s %11s %14s  %s\n' "$label" "$name" \
            "${R[idle,$name,rss0]:+${R[idle,$name,rss0]} kB}" "${R[idle,$name,rss1]:+${R[idle,$name,rss1]} kB}" \
            "${R[idle,$name,perconn]:--}" "${R[idle,$name,status]:-not run}"
    done
    bp_mem=$(best_peer idle perconn min)
    if [ -n "$bp_mem" ] && [[ " ${RUN_SERVERS[*]} " == *" $SUBJECT "* ]]; then
        r_mem="-"
        wsecho_ok idle && r_mem=$(awk -v a="${R[idle,$SUBJECT,perconn]:-}" -v b="${bp_mem%% *}" \
            'BEGIN { if (a != "" && b + 0 > 0) printf "%.4fx (1/%.0f)", a / b, (a > 0 ? b / a : 0); else printf "-" }')
        verdict="NOT MET"
        awk -v r="${r_mem%%x*}" 'BEGIN { exit !(r != "-" && r + 0 <= 0.04) }' && verdict="MET"
        note="target <= 1/25 (0.04x): $verdict (best peer: ${bp_mem#* })"
        [ "$TLS" = 0 ] || note="best TLS peer: ${bp_mem#* } (the 1/25 target is for plain ws)"
        printf '%-34s %-22s %11s %11s %14s  %s\n' "" "$SUBJECT/best peer" "" "" "$r_mem" "$note"
    fi
    # Over TLS (issue 12): <= 2 KiB per idle wss connection.
    if [ "$TLS" = 1 ] && wsecho_ok idle && [ -n "${R[idle,$SUBJECT,perconn]:-}" ]; then
        verdict="NOT MET"
        [ "${R[idle,$SUBJECT,perconn]}" -le 2048 ] && verdict="MET"
        printf '%-34s %-22s %11s %11s %14s  %s\n' "" "$SUBJECT" "" "" "${R[idle,$SUBJECT,perconn]}" \
            "target <= 2048 B per idle wss connection: $verdict"
    fi
    fi
    if [ ${#LT_SCS[@]} -gt 0 ]; then
        echo
        echo "uWebSockets' load_test (benchmarks/load_test.c; k > 1: benches/peers/uws's K-per-write wrapper):"
        printf '%-34s %-22s %11s %11s  %s\n' "load_test" "server" "msg/s" "CPU us/msg" "status"
        for sc in "${LT_SCS[@]}"; do
            first=1
            for name in "${RUN_SERVERS[@]}"; do
                label=""
                [ "$first" = 1 ] && label=${SCEN_LABEL[$sc]}
                first=0
                printf '%-34s %-22s %11s %11s  %s\n' "$label" "$name" "$(fmt "${L[$sc,$name,rate]:-}" %.0f)" \
                    "$(fmt "${L[$sc,$name,cpu]:-}" %.2f)" "${L[$sc,$name,status]:-not run}"
            done
            if [ "$TLS" = 1 ] && [ -n "${L[$sc,wsecho-tls,cpu]:-}" ] && [ -n "${L[$sc,peer-uws-tls,cpu]:-}" ]; then
                local_r=$(ratio "${L[$sc,wsecho-tls,cpu]}" "${L[$sc,peer-uws-tls,cpu]}")
                verdict="NOT MET"
                awk -v r="${local_r%x}" 'BEGIN { exit !(r != "-" && r + 0 <= 0.9) }' && verdict="MET"
                printf '%-34s %-22s %11s %11s  %s\n' "" "wsecho-tls/uws-tls" "" "$local_r" "CPU/msg target <= 0.9x: $verdict"
            fi
        done
    fi
    echo
    echo "errors: wsbench's echo mismatches + frame fidelity errors (each echoed frame must have the sent"
    echo "frame's FIN, opcode and length); any error fails the row."
    echo "msg/s and latency from wsbench's measured window (round trip per message, us); CPU us/msg = server"
    echo "utime+stime / messages; srv CPU / wsbench = % of one core each used in that window. Ratios:"
    echo "msg/s vs the peer with the most, latency/CPU/memory vs the peer with the least (lower is better)."
    echo "'noisy': CPU time on the pinned CPUs that was neither the server's nor wsbench's (other processes)."
    echo "Raw results: $OUT"
} >"$OUT/table.txt"

echo >&2
cat "$OUT/table.txt"
