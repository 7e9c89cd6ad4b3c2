#!/usr/bin/env bash
# permessage-deflate speed (issue 11): server CPU per message of wsecho's compressed echo paths
# against its plain echo, and against uWebSockets measured with uWebSockets' own client.
#
#   scripts/deflate-bench.sh [--quick] [--rounds N] [--no-build] [--out DIR]
#   UWS_SRC=/path/to/uWebSockets scripts/deflate-bench.sh      # with the uWebSockets part
#
# Part 1, wsbench as the client: 100 connections x 1 KiB of JSON-like text (wsbench --text-kind
# json: about 3.2:1 with deflate level 6), 1 message in flight per connection, then 16 pipelined,
# against
#   plain       wsecho                                    (wsbench without --deflate)
#   pass        wsecho --deflate                          pass-through: inflate to validate, echo
#                                                         the client's compressed bytes
#   recompress  wsecho --deflate --deflate-recompress     inflate + deflate (level 1) every echo
#   uws-z       uws-echo --compression shared --compress-echo (only with UWS_SRC): uWebSockets'
#               shared compressor, every echo inflated and deflated again (level 6)
# wsbench compresses each payload once before the run (its per-message CPU is an inflate of the
# echo and a compare) and checks every echo: any mismatch, fidelity error or lost connection marks
# the row FAIL.
#
# Part 2 (UWS_SRC): uWebSockets' benchmarks/load_test.c as the client (built by
# scripts/peers/uws.sh; run through benches/peers/uws/load_test_pipelined.c with
# LOAD_TEST_PIPELINE=K and LOAD_TEST_PROBE=1, see there): `load_test 100 127.0.0.1 PORT 0 1 1024`
# sends one precompressed binary frame, the same for every message and connection: its 307-byte
# JSON placeholder repeated to 1024 bytes, deflated once at level 6 to 233 bytes (4.4:1; the
# repetition makes it easy to inflate: long back-references), with an all-zero mask. It offers a
# bare `permessage-deflate` and counts echoed bytes (the probe tells it the echo's length), 1 in
# flight per connection, then 16. Against
#   plain          wsecho (load_test without deflate: 1024 'T' bytes, the reference echo)
#   pass           wsecho --deflate
#   recompress     wsecho --deflate --deflate-recompress
#   uws-inflate    uws-echo --compression shared       inflate only (echo sent uncompressed)
#   uws-ded-infl   uws-echo --compression dedicated    inflate only, a 32 KiB inflater per
#                  connection: uWebSockets' examples/EchoServer.cpp
#   uws-z          uws-echo --compression shared --compress-echo   shared compressor (level 6)
# (uWebSockets' dedicated compressor with compressed echoes cannot be measured with load_test: its
# answer to the bare offer keeps context, so every echo of the identical message after the first
# is a few bytes of back-references, and load_test counts bytes.)
#
# Each run starts the server afresh pinned to CPU 0 and the client pinned to CPU 1 (taskset); rows
# are interleaved (round 1: every server for k=1, then for k=16; round 2: ...), medians over the
# rounds with [min-max]. Server CPU per message = the server's utime+stime (/proc/PID/stat)
# over the measured window / messages in it: wsbench's MEASURE_START..MEASURE_END (as
# scripts/bench.sh), load_test's first..last "Msg/sec" report (each covers 4 s; messages =
# Msg/sec x 4 x K). Also shown: the client's CPU (% of its core: near 100 means client-bound)
# and what else ran on the server's core ("other", % of CPU 0 not used by the server: noise).
# Ratios are taken within each round (the same minute of machine noise), then the median.
#
# Options:
#   --quick      shorter runs: wsbench 2 s (+0.5 s warm-up), load_test 1 report (4 s); 2 rounds
#   --rounds N   rounds [default: 3]
#   --no-build   use the binaries already built
#   --out DIR    samples, commands and the summary [default: <target dir>/deflate-bench/<UTC time>]
# Environment: UWS_SRC (and USOCKETS_SRC), as scripts/peers/uws.sh; DEFLATE_BENCH_PORT (first port
# to try, default 19601). Every run is bounded; servers are stopped on exit.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="deflate-bench.sh"
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"

QUICK=0 ROUNDS="" BUILD=1 OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS=${2:?--rounds needs a number}; shift ;;
        --no-build) BUILD=0 ;;
        --out) OUT=${2:?--out needs a directory}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "$SCRIPT: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then DUR=2; WARM=0.5; LT_REPORTS=1; ROUNDS=${ROUNDS:-2}; else DUR=5; WARM=1; LT_REPORTS=2; ROUNDS=${ROUNDS:-3}; fi
case "$ROUNDS" in '' | *[!0-9]* | 0) echo "$SCRIPT: --rounds must be a positive number" >&2; exit 2 ;; esac
CONNS=100 SIZE=1024 KS=(1 16)

if [ "$BUILD" = 1 ]; then
    build_bins
else
    WSECHO="$(target_dir)/release/wsecho" WSBENCH="$(target_dir)/release/wsbench"
fi
for b in "$WSECHO" "$WSBENCH"; do [ -x "$b" ] || { echo "$SCRIPT: $b missing (build it, or drop --no-build)" >&2; exit 1; }; done
UWS_DIR=""
if [ -n "${UWS_SRC:-}" ]; then
    UWS_DIR=$("$ROOT/scripts/peers/uws.sh" --print-dir) || { echo "$SCRIPT: scripts/peers/uws.sh failed" >&2; exit 1; }
else
    echo "== UWS_SRC not set: the uWebSockets rows and part 2 (load_test) are skipped"
fi
need_cmd taskset util-linux
need_cmd stdbuf coreutils
raise_nofile
pin_cpus
HZ=$(getconf CLK_TCK)
[ -n "$OUT" ] || OUT="$(target_dir)/deflate-bench/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT" || exit 1
WORK=$(mktemp -d /tmp/deflate-bench.XXXXXX)
SRV_PID=""
cleanup() {
    [ -n "$SRV_PID" ] && stop_pids KILL 1 "$SRV_PID"
    rm -rf "$WORK"
}
on_exit cleanup
PORT=${DEFLATE_BENCH_PORT:-19601}
echo "== $(date -u '+%F %T') UTC; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); out: $OUT"
echo "== wsecho $(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null)$( [ -n "$(git -C "$ROOT" status --porcelain -- src 2>/dev/null)" ] && echo ' + uncommitted changes in src/')" | tee "$OUT/commands.txt"
[ -n "$UWS_DIR" ] && echo "== $(cat "$UWS_DIR/VERSION" 2>/dev/null)" | tee -a "$OUT/commands.txt"

# ---------------------------------------------------------------- sampling
# ticks VAR PID: utime+stime of PID (clock ticks, all threads) into VAR; empty when it is gone.
ticks() {
    local _l _f
    printf -v "$1" '%s' ""
    { read -r _l <"/proc/$2/stat"; } 2>/dev/null || return 0
    _l=${_l##*) }
    read -r -a _f <<<"$_l"
    printf -v "$1" '%s' "$((_f[11] + _f[12]))"
}
# cpu0_busy VAR: busy jiffies of CPU 0 (all but idle and iowait).
cpu0_busy() {
    local n u ni sy irq si st rest
    while read -r n u ni sy _ _ irq si st rest; do
        [ "$n" = cpu0 ] && { printf -v "$1" '%s' "$((u + ni + sy + irq + si + st))"; return; }
    done </proc/stat
}
now_us() { local t=${EPOCHREALTIME/[.,]/}; printf -v "$1" '%s' "$((10#$t))"; }
# sample PREFIX SRV_PID CLI_PID: sets PREFIX_s PREFIX_c PREFIX_b PREFIX_t.
sample() {
    ticks "${1}_s" "$2"; ticks "${1}_c" "$3"; cpu0_busy "${1}_b"; now_us "${1}_t"
}

# ---------------------------------------------------------------- servers
# start_server NAME: a fresh server for NAME on a free port, pinned to CPU 0; sets SRV_PID, PORT.
start_server() {
    local cmd
    case "$1" in
        plain) cmd=("$WSECHO") ;;
        pass) cmd=("$WSECHO" --deflate) ;;
        recompress) cmd=("$WSECHO" --deflate --deflate-recompress) ;;
        uws-inflate) cmd=("$UWS_DIR/uws-echo" --compression shared) ;;
        uws-ded-infl) cmd=("$UWS_DIR/uws-echo" --compression dedicated) ;;
        uws-z) cmd=("$UWS_DIR/uws-echo" --compression shared --compress-echo) ;;
        *) echo "$SCRIPT: unknown server $1" >&2; exit 1 ;;
    esac
    PORT=$(free_port $((PORT + 1)))
    "${PIN_SRV[@]}" "${cmd[@]}" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
    SRV_PID=$!
    SRV_CMD="${PIN_SRV[*]} ${cmd[*]} --listen 127.0.0.1:$PORT"
    if ! wait_port "$PORT" "$SRV_PID"; then
        echo "$SCRIPT: $1 did not start:" >&2
        cat "$WORK/server.log" >&2
        exit 1
    fi
}
stop_server() { stop_pids TERM 5 "$SRV_PID"; SRV_PID=""; }

# watchdog PID SECONDS SIGNAL: sends SIGNAL to PID if it is still running after SECONDS; returns
# at once, the watchdog ends by itself within 0.1 s of PID. (Background jobs of a script ignore
# SIGINT: load_test, which sets no handler, needs TERM; wsbench takes INT and prints its result.)
watchdog() {
    local pid=$1 n=$(($2 * 10)) sig=$3
    { for ((i = 0; i < n; i++)); do alive "$pid" || exit 0; sleep 0.1; done; kill "-$sig" "$pid" 2>/dev/null; } &
}

# One sample line per run: client k server round msg/s cpu_us client% other% echo_bytes status.
: >"$OUT/samples.tsv"
declare -A R
record() { # record CLIENT K SRV ROUND RATE CPU CLI OTHER ECHO STATUS
    local key="$1,$2,$3,$4"
    R[$key,rate]=$5 R[$key,cpu]=$6 R[$key,cli]=$7 R[$key,other]=$8 R[$key,echo]=$9 R[$key,status]=${10}
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$OUT/samples.tsv"
    printf '  %-8s k=%-2s %-13s round %s: %9s msg/s  %7s us/msg  client %5s%%  other %5s%%  echo %4s B  %s\n' "$@"
}
# window_figures: from the a_/b_ samples and the message count MSGS, sets CPU (server us per
# message), CLI (client CPU, % of its core) and OTHER (CPU 0 not used by the server, %). The rate
# comes from the client's own clock (wsbench's JSON, load_test's 4-s reports), not from when this
# script read the marker line (it may lag on a loaded machine).
window_figures() {
    local dt=$((b_t - a_t)) ds=$((b_s - a_s))
    CPU=$(awk -v t="$ds" -v hz="$HZ" -v m="$MSGS" 'BEGIN { if (m > 0) printf "%.2f", t * 1e6 / hz / m; else print "-" }')
    CLI=-
    [ -n "$a_c" ] && [ -n "$b_c" ] && CLI=$(awk -v t="$((b_c - a_c))" -v hz="$HZ" -v d="$dt" 'BEGIN { printf "%.0f", 100 * t / hz / (d / 1e6) }')
    OTHER=$(awk -v b="$((b_b - a_b))" -v s="$ds" -v hz="$HZ" -v d="$dt" 'BEGIN { v = 100 * (b - s) / hz / (d / 1e6); if (v < 0) v = 0; printf "%.0f", v }')
}

# ---------------------------------------------------------------- part 1: wsbench
run_wsbench() { # SRV K ROUND
    local srv=$1 k=$2 round=$3 json="$WORK/ws.json" fifo="$WORK/ws.fifo" line fd pid rc m0="" m1=""
    start_server "$srv"
    local args=(-c "$CONNS" -s "$SIZE" --text-kind json -k "$k" -d "$DUR" --warmup "$WARM" --json "$json")
    [ "$srv" = plain ] || args+=(--deflate)
    echo "$SRV_CMD; ${PIN_CLI[*]} $WSBENCH ${args[*]} ws://127.0.0.1:$PORT/" >>"$OUT/commands.txt"
    rm -f "$json" "$fifo"
    mkfifo "$fifo"
    "${PIN_CLI[@]}" "$WSBENCH" "${args[@]}" "ws://127.0.0.1:$PORT/" >"$fifo" 2>"$WORK/ws.err" &
    pid=$!
    watchdog "$pid" 120 INT
    exec {fd}<"$fifo"
    local a_s="" a_c="" a_b="" a_t="" b_s="" b_c="" b_b="" b_t=""
    while IFS= read -r -u "$fd" line; do
        case "$line" in
            MEASURE_START*) sample a "$SRV_PID" "$pid"; m0=${line#*msgs=} ;;
            MEASURE_END*) sample b "$SRV_PID" "$pid"; m1=${line#*msgs=} ;;
        esac
        echo "$line" >>"$OUT/wsbench.$srv.k$k.r$round.out"
    done
    exec {fd}<&-
    wait "$pid"; rc=$?
    stop_server
    local status=ok CPU=- CLI=- OTHER=- RATE=- echo_b=-
    if [ -n "$m1" ] && [ -n "$a_s" ] && [ -n "$b_s" ]; then
        MSGS=$((m1 - m0))
        window_figures
    fi
    RATE=$(fmt "$(jnum "$json" msgs_per_sec)" %.0f)
    local z zb
    z=$(jnum "$json" deflate_messages); zb=$(jnum "$json" deflate_echo_bytes)
    [ -n "$z" ] && [ "${z:-0}" -gt 0 ] && echo_b=$((zb / z))
    [ "$srv" = plain ] && echo_b=$SIZE
    if [ "$rc" != 0 ]; then
        status="FAIL(exit $rc: mismatches $(jnum "$json" echo_mismatches), fidelity $(jnum "$json" fidelity_errors), lost $(jnum "$json" lost_connections), handshake failures $(jnum "$json" handshake_failures))"
        head -n 3 "$WORK/ws.err" >&2
    fi
    record wsbench "$k" "$srv" "$round" "$RATE" "$CPU" "$CLI" "$OTHER" "$echo_b" "$status"
}

# ---------------------------------------------------------------- part 2: load_test
# run_load_test SRV K ROUND: one load_test run, once more when it fails (load_test opens its
# connections one after the other and starts reporting only when the last is open: now and then
# it never reports; the watchdog ends it).
run_load_test() {
    local attempt
    for attempt in 1 2; do
        load_test_once "$@"
        [ "${R[load_test,$2,$1,$3,status]}" = ok ] && return
        echo "  (load_test $1 k=$2 round $3 failed, attempt $attempt of 2)"
    done
}
load_test_once() { # SRV K ROUND
    local srv=$1 k=$2 round=$3 fifo="$WORK/lt.fifo" line fd pid n=0 deflate=1 echo_b=- err=""
    local out="$OUT/load_test.$srv.k$k.r$round.out"
    [ "$srv" = plain ] && deflate=0
    start_server "$srv"
    local cmd=(env LOAD_TEST_PIPELINE="$k" LOAD_TEST_PROBE=1 "${PIN_CLI[@]}" stdbuf -oL "$UWS_DIR/load_test_pipelined" "$CONNS" 127.0.0.1 "$PORT" 0 "$deflate" "$SIZE")
    echo "$SRV_CMD; ${cmd[*]}" >>"$OUT/commands.txt"
    rm -f "$fifo"
    mkfifo "$fifo"
    "${cmd[@]}" >"$fifo" 2>&1 &
    pid=$!
    watchdog "$pid" $((4 * LT_REPORTS + 30)) TERM
    exec {fd}<"$fifo"
    local a_s="" a_c="" a_b="" a_t="" b_s="" b_c="" b_b="" b_t="" msgs=0
    : >"$out"
    while IFS= read -r -u "$fd" line; do
        echo "$line" >>"$out"
        case "$line" in
            "Probe: echo frame "*) echo_b=${line#Probe: echo frame }; echo_b=${echo_b%% *} ;;
            "Probe failed"* | ERROR*) err=$line ;;
            Msg/sec:*)
                [ -z "$b_s" ] || continue
                n=$((n + 1))
                if [ "$n" = 1 ]; then
                    sample a "$SRV_PID" "$pid"
                else
                    msgs=$(awk -v m="$msgs" -v r="${line#Msg/sec: }" -v k="$k" 'BEGIN { printf "%.0f", m + r * 4 * k }')
                    if [ "$n" -gt "$LT_REPORTS" ]; then
                        sample b "$SRV_PID" "$pid"
                        kill -TERM "$pid" 2>/dev/null
                    fi
                fi ;;
        esac
    done
    exec {fd}<&-
    wait "$pid" 2>/dev/null
    alive "$SRV_PID" || err="${err:-server died}"
    stop_server
    local status=ok CPU=- CLI=- OTHER=- RATE=-
    if [ -n "$b_s" ] && [ "$msgs" -gt 0 ]; then
        MSGS=$msgs
        window_figures
        RATE=$((msgs / (4 * LT_REPORTS)))
    fi
    # The echo's payload bytes (the frame less its 2- or 4-byte header).
    [ "$echo_b" != - ] && echo_b=$((echo_b - (echo_b > 129 ? 4 : 2)))
    if [ -n "$err" ]; then
        status="FAIL($err)"
    elif [ -z "$b_s" ] || [ "$msgs" = 0 ]; then
        status="FAIL($n reports, $msgs messages)"
    fi
    record load_test "$k" "$srv" "$round" "$RATE" "$CPU" "$CLI" "$OTHER" "$echo_b" "$status"
}

WS_SRVS=(plain pass recompress)
LT_SRVS=()
if [ -n "$UWS_DIR" ]; then
    WS_SRVS+=(uws-z)
    LT_SRVS=(plain pass recompress uws-inflate uws-ded-infl uws-z)
fi
for ((r = 1; r <= ROUNDS; r++)); do
    echo "== round $r of $ROUNDS: wsbench, ${CONNS} x ${SIZE} B JSON-like text, ${DUR} s measured"
    for k in "${KS[@]}"; do for s in "${WS_SRVS[@]}"; do run_wsbench "$s" "$k" "$r"; done; done
    if [ ${#LT_SRVS[@]} -gt 0 ]; then
        echo "== round $r of $ROUNDS: load_test, ${CONNS} x ${SIZE} B, $((4 * LT_REPORTS)) s measured"
        for k in "${KS[@]}"; do for s in "${LT_SRVS[@]}"; do run_load_test "$s" "$k" "$r"; done; done
    fi
done

# ---------------------------------------------------------------- summary
# med FIELD CLIENT K SRV FORMAT: "median [min-max]" over the rounds (rows that failed left out).
med() {
    local v=() r x
    for ((r = 1; r <= ROUNDS; r++)); do
        [ "${R[$2,$3,$4,$r,status]:-}" = ok ] || continue
        x=${R[$2,$3,$4,$r,$1]:--}
        [ "$x" = - ] || v+=("$x")
    done
    [ ${#v[@]} -gt 0 ] || { echo "-"; return; }
    printf '%s\n' "${v[@]}" | sort -g | awk -v f="$5" '{ a[NR] = $1 } END {
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        if (NR == 1) printf f, m; else printf f " [" f "-" f "]", m, a[1], a[NR] }'
}
# ratio CLIENT K A B: median over the rounds of CPU(A) / CPU(B) within each round, [min-max].
ratio() {
    local v=() r a b
    for ((r = 1; r <= ROUNDS; r++)); do
        if [ "${R[$1,$2,$3,$r,status]:-}" != ok ] || [ "${R[$1,$2,$4,$r,status]:-}" != ok ]; then continue; fi
        a=${R[$1,$2,$3,$r,cpu]:--} b=${R[$1,$2,$4,$r,cpu]:--}
        [ "$a" = - ] || [ "$b" = - ] || v+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }')")
    done
    [ ${#v[@]} -gt 0 ] || { echo "-"; return; }
    printf '%s\n' "${v[@]}" | sort -g | awk '{ a[NR] = $1 } END {
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        if (NR == 1) printf "%.2f", m; else printf "%.2f [%.2f-%.2f]", m, a[1], a[NR] }'
}
fails() { local c=0 r; for ((r = 1; r <= ROUNDS; r++)); do [ "${R[$1,$2,$3,$r,status]:-ok}" = ok ] || c=$((c + 1)); done; echo "$c"; }
table() { # CLIENT SRVS...
    local c=$1 k s
    shift
    printf '| k | server | msg/s | server CPU us/msg | client CPU %% | other on CPU 0 %% | echo B | failed runs |\n'
    printf '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n'
    for k in "${KS[@]}"; do
        for s in "$@"; do
            printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$k" "$s" "$(med rate "$c" "$k" "$s" %.0f)" \
                "$(med cpu "$c" "$k" "$s" %.2f)" "$(med cli "$c" "$k" "$s" %.0f)" "$(med other "$c" "$k" "$s" %.0f)" \
                "$(med echo "$c" "$k" "$s" %.0f)" "$(fails "$c" "$k" "$s")/$ROUNDS"
        done
    done
}
# verdict LABEL RATIO_TEXT LIMIT: "met"/"missed" by the median ratio against LIMIT (strictly below
# when LIMIT starts with <).
verdict() {
    local m=${2%% *} lim=$3
    [ "$m" = - ] && { echo "$1: no figure"; return; }
    awk -v m="$m" -v l="${lim#<}" -v strict="$([ "${lim:0:1}" = "<" ] && echo 1 || echo 0)" -v label="$1" -v t="$2" \
        'BEGIN { ok = strict ? (m < l) : (m <= l); printf "%s: %s (target %s%s) %s\n", label, t, strict ? "< " : "<= ", l, ok ? "met" : "MISSED" }'
}

{
    echo "permessage-deflate speed, $(date -u '+%F %H:%M') UTC, $ROUNDS interleaved rounds (medians [min-max])"
    echo
    echo "wsbench: $CONNS connections x $SIZE B JSON-like text (level-6 compressed by the client once, ~320 B), ${DUR} s measured:"
    echo
    table wsbench "${WS_SRVS[@]}"
    echo
    echo "Ratios of server CPU per message, within each round:"
    for k in "${KS[@]}"; do
        verdict "  k=$k pass-through / plain" "$(ratio wsbench "$k" pass plain)" 1.5
        echo "  k=$k recompress / plain: $(ratio wsbench "$k" recompress plain)"
        [ -n "$UWS_DIR" ] && verdict "  k=$k recompress / uWebSockets shared compressor (wsbench)" "$(ratio wsbench "$k" recompress uws-z)" 0.8
    done
    if [ ${#LT_SRVS[@]} -gt 0 ]; then
        echo
        echo "uWebSockets' load_test: $CONNS connections x $SIZE B (one identical level-6 frame of 233 B; plain: 1024 'T's), $((4 * LT_REPORTS)) s measured:"
        echo
        table load_test "${LT_SRVS[@]}"
        echo
        echo "Ratios of server CPU per message, within each round:"
        for k in "${KS[@]}"; do
            verdict "  k=$k pass-through / plain" "$(ratio load_test "$k" pass plain)" 1.5
            verdict "  k=$k pass-through / uWebSockets inflate-only (shared)" "$(ratio load_test "$k" pass uws-inflate)" "<1"
            verdict "  k=$k pass-through / uWebSockets inflate-only (dedicated)" "$(ratio load_test "$k" pass uws-ded-infl)" "<1"
            verdict "  k=$k recompress / uWebSockets shared compressor" "$(ratio load_test "$k" recompress uws-z)" 0.8
        done
    fi
    echo
    echo "client CPU near 100%: that row measures the client as much as the server; 'other': CPU 0"
    echo "time not used by the server (other processes), noise. Samples: $OUT/samples.tsv; commands: $OUT/commands.txt"
} | tee "$OUT/summary.md"
