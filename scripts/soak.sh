#!/usr/bin/env bash
# Soak test of wsecho: many connections for minutes under random traffic and churn, every echo
# verified, server memory checked for flatness.
#
# Usage: scripts/soak.sh [MINUTES] [--connections N] [--ci] [--seed N]
#   MINUTES          soak time, fractions allowed                              [default: 10]
#   --connections N  connections kept open (several source addresses when many) [default: 50000]
#   --ci             20 seconds with 2,000 connections (the CI version)
#   --seed N         wsbench's seed (the run prints the one it used)            [default: random]
#
# Runs `wsbench --mode soak` (see `wsbench --help`): messages of 0-64 KiB, text (valid UTF-8 with
# multi-byte characters) or binary, in 1-8 fragments cut at random bytes, pings between
# fragments, and per message a 0.2% chance of a clean close (1000) or an abrupt FIN/RST drop in
# the middle of the message, each followed by a reconnect; every echo and pong is verified byte
# for byte. Over ~15,000 connections, several `wsecho --reuse-port` processes share the port (one
# process holds at most the open-file limit) and wsbench forks worker processes likewise. Servers
# are pinned to CPU 0 and wsbench to CPU 1 when there are two CPUs (taskset).
#
# Server RSS (VmRSS from /proc/PID/status, summed over the server processes) is sampled at the
# start (after ramp-up and warm-up), in the middle and at the end of the soak, with the
# connections open. Exit status 0 only when: no echo mismatch, no lost connection (server close,
# reset, EOF, or an echo timeout; planned disconnects do not count), no connect/upgrade failure,
# every server process still alive, and end RSS <= start RSS x 1.2 + 8 MiB (flat).
# Environment: WSBENCH_PORT (first port to try, default 19101), CARGO_TARGET_DIR (as for cargo).
# Everything is bounded (timeout) and every process is cleaned up on exit.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=soak.sh
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
MINUTES=10
CONNS=50000
CI=0
SEED=()
while [ $# -gt 0 ]; do
    case "$1" in
        --ci) CI=1 ;;
        --connections|-c)
            [ $# -ge 2 ] || { echo "soak.sh: $1 needs a value" >&2; exit 2; }
            CONNS=$2; shift ;;
        --connections=*) CONNS=${1#*=} ;;
        --seed)
            [ $# -ge 2 ] || { echo "soak.sh: --seed needs a value" >&2; exit 2; }
            SEED=(--seed "$2"); shift ;;
        -h|--help) usage; exit 0 ;;
        *)
            if [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]]; then MINUTES=$1
            else echo "soak.sh: unknown argument '$1' (see --help)" >&2; exit 2; fi ;;
    esac
    shift
done
if ! [[ "$CONNS" =~ ^[0-9]+$ ]] || [ "$CONNS" -eq 0 ]; then echo "soak.sh: --connections must be a positive number" >&2; exit 2; fi
if [ "$CI" = 1 ]; then
    TOTAL=20; CONNS=2000
else
    TOTAL=$(awk -v m="$MINUTES" 'BEGIN { s = int(m * 60 + 0.5); print (s < 4 ? 4 : s) }')
fi
# Warm-up (pools and allocator reach their working size) before the start sample; it is part of
# the soak time. Then the measured soak.
WARM=$(awk -v t="$TOTAL" 'BEGIN { w = int(t / 10); if (w < 2) w = 2; if (w > 30) w = 30; print w }')
DUR=$((TOTAL - WARM))

build_bins

raise_nofile
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
# Servers: the kernel spreads SO_REUSEPORT connections by hash, not evenly, so keep each process
# at 75% of its open-file limit. Clients: wsbench needs connections + 64 per process.
PER_SRV=$((NOFILE * 3 / 4))
SERVERS=$(( (CONNS + PER_SRV - 1) / PER_SRV ))
PER_CLI=$((NOFILE - 1000))
[ "$PER_CLI" -lt 1000 ] && PER_CLI=$((NOFILE - 100))
PROCS=$(( (CONNS + PER_CLI - 1) / PER_CLI ))
[ "$SERVERS" -gt 1 ] && ! "$WSECHO" --help 2>&1 | grep -q -- '--reuse-port' && {
    echo "soak.sh: $CONNS connections need $SERVERS wsecho processes, but wsecho has no --reuse-port" >&2; exit 2; }
pin_cpus
command -v taskset > /dev/null || { PIN_SRV=(); PIN_CLI=(); }
echo "== soak: $CONNS connections, ${TOTAL} s (warm-up ${WARM} s + ${DUR} s), $SERVERS wsecho process(es)," \
     "$PROCS wsbench process(es); open files $NOFILE; CPUs $(nproc)${PIN_SRV:+ (servers on CPU 0, wsbench on CPU 1)}"

WORK="$(mktemp -d /tmp/wsecho-soak.XXXXXX)"
SERVER_PIDS=()
HELPER_PIDS=()
BENCH_PID=""
stop_servers() {
    stop_pids TERM 5 "${SERVER_PIDS[@]}"
    SERVER_PIDS=()
}
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local p
    [ -n "$BENCH_PID" ] && kill -INT "$BENCH_PID" 2>/dev/null
    for p in "${HELPER_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    [ -n "$BENCH_PID" ] && { sleep 1; kill -KILL "$BENCH_PID" 2>/dev/null; }
    stop_servers
    rm -rf "$WORK"
}
on_exit cleanup

PORT=$(free_port "${WSBENCH_PORT:-19101}")

REUSE=()
[ "$SERVERS" -gt 1 ] && REUSE=(--reuse-port)
for ((i = 0; i < SERVERS; i++)); do
    "${PIN_SRV[@]}" "$WSECHO" --listen "127.0.0.1:$PORT" "${REUSE[@]}" > "$WORK/server-$i.log" 2>&1 &
    SERVER_PIDS+=($!)
done
up=0
wait_port "$PORT" "${SERVER_PIDS[@]}" && up=1
# SO_REUSEPORT: every process must be listening, not just the first.
sleep 0.2
for p in "${SERVER_PIDS[@]}"; do
    alive "$p" || { echo "soak.sh: wsecho exited:" >&2; cat "$WORK"/server-*.log >&2; exit 1; }
done
[ "$up" = 1 ] || { echo "soak.sh: wsecho did not listen on port $PORT within 5 s" >&2; exit 1; }
echo "== wsecho pid(s) ${SERVER_PIDS[*]} on 127.0.0.1:$PORT"

# Server RSS in KiB, summed over the server processes.
srv_rss() { status_kb VmRSS "${SERVER_PIDS[@]}"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
kib() { awk -v k="$1" 'BEGIN { printf "%d KiB (%.1f MiB)", k, k / 1024 }'; }
elapsed() { echo $(( $(date +%s) - T0 )); }

JSON="$WORK/result.json"
ARGS=(--mode soak -c "$CONNS" -p "$PROCS" --warmup "$WARM" -d "$DUR" "${SEED[@]}" --json "$JSON" "ws://127.0.0.1:$PORT/")
# Ramp-up (bounded by --ramp-timeout, 120 s) + soak + close (a few s) + margin.
LIMIT=$((TOTAL + 240))
echo "\$ ${PIN_CLI[*]} wsbench $(printf '%q ' "${ARGS[@]}")"
# stdout and stderr in one ordered stream (markers, progress, mismatch descriptions, the table).
exec {fd}< <(timeout --signal=INT --kill-after=20 "$LIMIT" "${PIN_CLI[@]}" "$WSBENCH" "${ARGS[@]}" 2>&1 &
    echo "PID $!"; wait $!; echo "EXIT $?")
T0=$(date +%s)
RSS_START="" RSS_MID="" RSS_END="" RSS_UP="" RC="" PROGRESS=0
TRACE="$WORK/rss-trace"
: > "$TRACE"
while IFS= read -r -t $((LIMIT + 60)) -u "$fd" line; do
    case "$line" in
        PID\ *) BENCH_PID=${line#PID } ;;
        ALL_UPGRADED*|UPGRADE_INCOMPLETE*)
            RSS_UP=$(srv_rss)
            echo "  [$(elapsed) s] $line (server RSS $(mib "$RSS_UP"))" ;;
        MEASURE_START*)
            RSS_START=$(srv_rss)
            echo "  [$(elapsed) s] soak window starts after warm-up: server RSS $(mib "$RSS_START") (start)"
            # The middle sample, and a trace every tenth of the soak, from a helper.
            ( step=$(awk -v d="$DUR" 'BEGIN { printf "%.3f", d / 10 }')
              for k in $(seq 1 10); do
                  sleep "$step"
                  r=$(srv_rss); echo "$(awk -v k="$k" -v s="$step" 'BEGIN { printf "%g", k * s }') $r" >> "$TRACE"
                  [ "$k" = 5 ] && echo "$r" > "$WORK/rss-mid"
              done ) &
            HELPER_PIDS+=($!) ;;
        MEASURE_END*)
            RSS_END=$(srv_rss)
            echo "  [$(elapsed) s] soak window ends: server RSS $(mib "$RSS_END") (end)" ;;
        EXIT\ *) RC=${line#EXIT }; break ;;
        wsbench\ \[*)
            # Progress: one line in ten (about every 10 s).
            [ $((PROGRESS % 10)) = 0 ] && echo "  $line"
            PROGRESS=$((PROGRESS + 1)) ;;
        *) echo "  $line" ;;
    esac
done
exec {fd}<&-
BENCH_PID=""
for p in "${HELPER_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
HELPER_PIDS=()
[ -z "$RC" ] && RC=timeout
[ -s "$WORK/rss-mid" ] && RSS_MID=$(cat "$WORK/rss-mid")
DEAD=()
for p in "${SERVER_PIDS[@]}"; do alive "$p" || DEAD+=("$p"); done
stop_servers

j() { jnum "$JSON" "$1"; }
MSGS=$(j messages); MISM=$(j echo_mismatches); LOST=$(j lost_connections)
CLEAN=$(j clean_reconnects); DROPS=$(j abrupt_drops); RECON=$(j reconnects)
PINGS=$(j pings); PONGS=$(j pongs); FRAGS=$(j fragments); USED_SEED=$(j seed)
CF=$(j connect_failures); HF=$(j handshake_failures)

echo
echo "== soak summary ($CONNS connections, ${TOTAL} s, seed ${USED_SEED:-?})"
printf '  %-20s %s\n' "messages" "${MSGS:-?} verified (${FRAGS:-?} fragments, ${PINGS:-?} pings, ${PONGS:-?} pongs verified)"
printf '  %-20s %s\n' "mismatches" "${MISM:-?}"
printf '  %-20s %s\n' "lost connections" "${LOST:-?}"
printf '  %-20s %s\n' "disconnects" "${CLEAN:-?} clean + ${DROPS:-?} abrupt, ${RECON:-?} reconnects"
printf '  %-20s %s\n' "connect/upgrade fail" "${CF:-?} / ${HF:-?}"
if [ -s "$TRACE" ]; then
    printf '  %-20s %s\n' "server RSS trace" "$(awk '{ printf "+%ss %.1f  ", $1, $2 / 1024 }' "$TRACE")(MiB at seconds after start)"
fi
LIMIT_KB=""
[ -n "$RSS_START" ] && LIMIT_KB=$(awk -v s="$RSS_START" 'BEGIN { printf "%d", s * 1.2 + 8192 }')
printf '  %-20s start %s, middle %s, end %s (limit for end: start x 1.2 + 8 MiB = %s)\n' "server RSS" \
    "${RSS_START:+$(kib "$RSS_START")}" "${RSS_MID:+$(kib "$RSS_MID")}" "${RSS_END:+$(kib "$RSS_END")}" \
    "${LIMIT_KB:+$(kib "$LIMIT_KB")}"

FAIL=()
[ "$RC" != 0 ] && FAIL+=("wsbench exit status $RC")
{ [ -z "$MISM" ] || [ "$MISM" != 0 ]; } && FAIL+=("mismatches ${MISM:-unknown}")
{ [ -z "$LOST" ] || [ "$LOST" != 0 ]; } && FAIL+=("lost connections ${LOST:-unknown}")
[ ${#DEAD[@]} -gt 0 ] && FAIL+=("wsecho process(es) ${DEAD[*]} died")
if [ -z "$RSS_START" ] || [ -z "$RSS_END" ]; then
    FAIL+=("server RSS not sampled (the soak window did not complete)")
elif [ "$RSS_END" -gt "$LIMIT_KB" ]; then
    FAIL+=("server RSS grew: $(mib "$RSS_START") -> $(mib "$RSS_END") (limit $(mib "$LIMIT_KB"))")
fi
if [ ${#FAIL[@]} -eq 0 ]; then
    printf '  %-20s %s\n' "verdict" "PASS"
    exit 0
fi
printf '  %-20s FAIL: %s\n' "verdict" "$(IFS=';'; f="${FAIL[*]}"; echo "${f//;/; }")"
for ((i = 0; i < SERVERS; i++)); do
    [ -s "$WORK/server-$i.log" ] && { echo "--- wsecho $i log (last lines)"; tail -n 20 "$WORK/server-$i.log"; }
done
exit 1
