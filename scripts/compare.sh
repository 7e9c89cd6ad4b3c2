#!/usr/bin/env bash
# Side-by-side comparison: wsecho against two echo servers built from published crates
# (benches/peers: peer-tungstenite on tokio-tungstenite, peer-fastwebsockets on fastwebsockets),
# all three on one thread, measured with wsbench.
#
#   scripts/compare.sh [OPTIONS] [SCENARIO...]
#   scripts/compare.sh            # 5 s measured per run: ~2 minutes after the builds
#   scripts/compare.sh --quick    # 2 s measured per run: ~1 minute
# (up to ~3x that when other processes keep the CPUs busy and rows are run again: --retries)
#
# Scenarios (numbered as in scripts/bench.sh; default: all):
#   1  100 connections x 20 B      (1 in flight per connection, then 16 pipelined)
#   2  10 connections x 1 KiB      (1 in flight, then 16)
#   3  200 connections x 16 KiB    (1 in flight, then 16)
#   4  10,000 idle connections: server RSS per connection
#
# Options:
#   --quick            shorter runs (2 s measured, 0.5 s warm-up, 1 s idle hold)
#   --no-build         use the binaries already built
#   --servers LIST     comma-separated subset of: wsecho,peer-tungstenite,peer-fastwebsockets
#   --idle-conns N     connections for the idle-memory scenario [default: 10000]
#   --retries N        run a row again when other processes took >= 15% of a pinned CPU during
#                      it, at most N more times, and keep the quietest run [default: 2]
#   --port-base P      servers listen on 127.0.0.1:P+1, P+2, P+3 [default: 9410]
#   --out DIR          where logs, wsbench JSON and the table go
#                      [default: <target dir>/compare/<UTC timestamp>]
#
# What it does, per scenario and per server: start the server afresh pinned to CPU 0
# (`taskset -c 0`), run wsbench pinned to CPU 1 (`taskset -c 1`), and stop the server (a trap stops
# anything still running on exit, Ctrl-C included).
#   echo scenarios   100 conns x 20 B, 10 conns x 1 KiB, 200 conns x 16 KiB; each with 1 message
#                    in flight per connection and with 16 pipelined. wsbench gives msg/s and
#                    p50/p99 round-trip latency over its measured window; server CPU per message
#                    is the server's utime+stime (/proc/PID/stat) sampled when wsbench prints
#                    MEASURE_START and MEASURE_END, divided by the messages echoed in between (as
#                    scripts/bench.sh does). The server's and wsbench's CPU use (% of one core) in
#                    that window are shown too: wsbench near 100% while the server has CPU to spare
#                    means that row measures the client, not the server ("client-bound").
#   idle scenario    N connections upgraded and held (wsbench --mode idle); server memory per
#                    connection = (VmRSS after ALL_UPGRADED - VmRSS before) / N.
# Ratios are wsecho / best peer: msg/s against the peer with the most msg/s (higher is better);
# latency, CPU per message and memory against the peer with the least (lower is better).
# Targets checked: pipelined msg/s >= 1.5x, one-in-flight msg/s >= 1.0x, idle memory <= 1/25.
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

die() { echo "compare: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --servers) SERVERS=${2:?--servers needs a list}; shift ;;
        --servers=*) SERVERS=${1#*=} ;;
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
    "3 200 16384 16 200c x 16 KiB, 16 pipelined"
)
[ ${#PICK[@]} -gt 0 ] || PICK=(1 2 3 4)
SCENARIOS=()
for sc in "${ALL_SCENARIOS[@]}"; do
    case " ${PICK[*]} " in *" ${sc%% *} "*) SCENARIOS+=("${sc#* }") ;; esac
done
RUN_IDLE=0
case " ${PICK[*]} " in *" 4 "*) RUN_IDLE=1 ;; esac
ALL_SERVERS=(wsecho peer-tungstenite peer-fastwebsockets)

IFS=, read -r -a RUN_SERVERS <<<"$SERVERS"
for s in "${RUN_SERVERS[@]}"; do
    case " ${ALL_SERVERS[*]} " in *" $s "*) ;; *) die "unknown server '$s' (wsecho, peer-tungstenite, peer-fastwebsockets)" ;; esac
done
case "$IDLE_N" in '' | *[!0-9]*) die "--idle-conns: '$IDLE_N' is not a number" ;; esac
case "$RETRIES" in '' | *[!0-9]*) die "--retries: '$RETRIES' is not a number" ;; esac
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
WSECHO="$TARGET_DIR/release/wsecho"
WSBENCH="$TARGET_DIR/release/wsbench"
declare -A BIN=(
    [wsecho]="$WSECHO"
    [peer-tungstenite]="$PEERS_TARGET/release/peer-tungstenite"
    [peer-fastwebsockets]="$PEERS_TARGET/release/peer-fastwebsockets"
)
declare -A PORT=(
    [wsecho]=$((PORT_BASE + 1))
    [peer-tungstenite]=$((PORT_BASE + 2))
    [peer-fastwebsockets]=$((PORT_BASE + 3))
)
for b in "$WSBENCH" "${BIN[@]}"; do
    [ -x "$b" ] || die "missing $b (run without --no-build)"
done

[ -n "$OUT" ] || OUT="$TARGET_DIR/compare/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT" || die "cannot create $OUT"

# ---------------------------------------------------------------- process control
SERVER_PID=""
BENCH_PID=""

cleanup() {
    # shellcheck disable=SC2086 # an empty PID drops out
    stop_pids TERM 1 $BENCH_PID $SERVER_PID
    BENCH_PID="" SERVER_PID=""
}
on_exit cleanup

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
    taskset -c 0 "${BIN[$name]}" --listen "127.0.0.1:$port" >>"$log" 2>&1 &
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
        [ -f "$json" ] && why="$why (lost $(jnum "$json" lost_connections), mismatches $(jnum "$json" echo_mismatches), connect failures $(jnum "$json" connect_failures), handshake failures $(jnum "$json" handshake_failures))"
    fi
    echo "$why"
}

# ---------------------------------------------------------------- scenarios
# Results: R[scenario,server,field]
declare -A R
FIELDS=(rate p50 p99 cpu srvpct clipct other status)
TRY=1

run_echo() {
    local sc=$1 name=$2 conns=$3 size=$4 k=$5
    local base="$OUT/$sc.$name.run$TRY" port=${PORT[$2]}
    local json="$base.json"
    rm -f "$json"
    R[$sc,$name,status]="FAIL"
    start_server "$name" "$base.server.log" || { R[$sc,$name,status]="FAIL: server did not start"; return; }
    local cmd=(taskset -c 1 "$WSBENCH" -q -c "$conns" -s "$size" -k "$k" -d "$DUR" --warmup "$WARM"
        --close-timeout 1 --ramp-timeout 20 --json "$json" "ws://127.0.0.1:$port/")
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
    local cmd=(taskset -c 1 "$WSBENCH" -q -m idle -c "$IDLE_N" -d "$IDLE_HOLD" --close-timeout 3
        --ramp-timeout 60 --json "$json" "ws://127.0.0.1:$port/")
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
    echo "  machine     $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), Linux $(uname -r), load average before start $load1"
    echo "  setup       server on CPU 0 (taskset -c 0), wsbench on CPU 1 (taskset -c 1), loopback, fresh server per row"
} >"$OUT/header.txt"
cat "$OUT/header.txt" >&2
if awk -v l="$load1" 'BEGIN { exit !(l > 0.7) }'; then
    echo "compare: warning: load average $load1 before start; something else is using the CPUs and the numbers will be noisy" >&2
fi
: >"$OUT/commands.txt"
: >"$OUT/samples.txt"

# ---------------------------------------------------------------- run
declare -A SCEN_LABEL SCEN_K
for i in "${!SCENARIOS[@]}"; do
    read -r conns size k label <<<"${SCENARIOS[$i]}"
    sc="s$((i + 1))"
    SCEN_LABEL[$sc]=$label SCEN_K[$sc]=$k
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

# ---------------------------------------------------------------- table
# best_peer SC FIELD max|min: prints "value name" of the best peer with a result, or nothing.
best_peer() {
    local sc=$1 f=$2 how=$3 best="" bname="" v name
    for name in "${RUN_SERVERS[@]}"; do
        [ "$name" = wsecho ] && continue
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
wsecho_ok() { [[ "${R[$1,wsecho,status]:-}" == ok* ]]; }

{
    cat "$OUT/header.txt"
    echo
    printf '%-34s %-22s %11s %9s %9s %11s %8s %8s  %s\n' \
        "scenario" "server" "msg/s" "p50 us" "p99 us" "CPU us/msg" "srv CPU" "wsbench" "status"
    for i in "${!SCENARIOS[@]}"; do
        sc="s$((i + 1))"
        first=1
        for name in "${RUN_SERVERS[@]}"; do
            label=""
            [ "$first" = 1 ] && label=${SCEN_LABEL[$sc]}
            first=0
            printf '%-34s %-22s %11s %9s %9s %11s %8s %8s  %s\n' "$label" "$name" \
                "$(fmt "${R[$sc,$name,rate]:-}" %.0f)" \
                "$(fmt "${R[$sc,$name,p50]:-}" %.1f)" "$(fmt "${R[$sc,$name,p99]:-}" %.1f)" "$(fmt "${R[$sc,$name,cpu]:-}" %.2f)" \
                "${R[$sc,$name,srvpct]:+${R[$sc,$name,srvpct]}%}" "${R[$sc,$name,clipct]:+${R[$sc,$name,clipct]}%}" \
                "${R[$sc,$name,status]:-not run}"
        done
        bp_rate=$(best_peer "$sc" rate max)
        if [ -n "$bp_rate" ] && [[ " ${RUN_SERVERS[*]} " == *" wsecho "* ]]; then
            bp_p50=$(best_peer "$sc" p50 min) bp_p99=$(best_peer "$sc" p99 min) bp_cpu=$(best_peer "$sc" cpu min)
            if wsecho_ok "$sc"; then
                r_rate=$(ratio "${R[$sc,wsecho,rate]:-}" "${bp_rate%% *}")
                r_p50=$(ratio "${R[$sc,wsecho,p50]:-}" "${bp_p50%% *}")
                r_p99=$(ratio "${R[$sc,wsecho,p99]:-}" "${bp_p99%% *}")
                r_cpu=$(ratio "${R[$sc,wsecho,cpu]:-}" "${bp_cpu%% *}")
            else
                r_rate="-" r_p50="-" r_p99="-" r_cpu="-"
            fi
            if [ "${SCEN_K[$sc]}" -gt 1 ]; then target=1.5; else target=1.0; fi
            verdict="NOT MET"
            awk -v r="${r_rate%x}" -v t="$target" 'BEGIN { exit !(r != "-" && r + 0 >= t) }' && verdict="MET"
            printf '%-34s %-22s %11s %9s %9s %11s %8s %8s  %s\n' "" "wsecho/best peer" "$r_rate" "$r_p50" "$r_p99" "$r_cpu" "" "" \
                "msg/s target >= ${target}x: $verdict (best peer by msg/s: ${bp_rate#* })"
        fi
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
    if [ -n "$bp_mem" ] && [[ " ${RUN_SERVERS[*]} " == *" wsecho "* ]]; then
        r_mem="-"
        wsecho_ok idle && r_mem=$(awk -v a="${R[idle,wsecho,perconn]:-}" -v b="${bp_mem%% *}" \
            'BEGIN { if (a != "" && b + 0 > 0) printf "%.4fx (1/%.0f)", a / b, (a > 0 ? b / a : 0); else printf "-" }')
        verdict="NOT MET"
        awk -v r="${r_mem%%x*}" 'BEGIN { exit !(r != "-" && r + 0 <= 0.04) }' && verdict="MET"
        printf '%-34s %-22s %11s %11s %14s  %s\n' "" "wsecho/best peer" "" "" "$r_mem" \
            "target <= 1/25 (0.04x): $verdict (best peer: ${bp_mem#* })"
    fi
    fi
    echo
    echo "msg/s and latency from wsbench's measured window (round trip per message, us); CPU us/msg = server"
    echo "utime+stime / messages; srv CPU / wsbench = % of one core each used in that window. Ratios:"
    echo "msg/s vs the peer with the most, latency/CPU/memory vs the peer with the least (lower is better)."
    echo "'noisy': CPU time on the pinned CPUs that was neither the server's nor wsbench's (other processes)."
    echo "Raw results: $OUT"
} >"$OUT/table.txt"

echo >&2
cat "$OUT/table.txt"
