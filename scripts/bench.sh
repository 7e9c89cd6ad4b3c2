#!/usr/bin/env bash
# Standard load scenarios for wsecho, driven by wsbench; prints one summary table.
#
# Usage: scripts/bench.sh [--quick] [SCENARIO...]
#   --quick     ~3 s per run instead of ~10 s (plus ramp-up/close time)
#   SCENARIO    numbers 1-9 (default: all)
#     1  100 connections x 20 B          (1 in flight per connection, then 16 pipelined)
#     2  10 connections x 1 KiB          (1 in flight, then 16)
#     3  200 connections x 16 KiB        (1 in flight, then 4, then 16), then 100 connections x
#        64 KiB (4 in flight): deep backlogs, fair service (issue 15, docs/fairness.md)
#     4  10,000 idle connections: server RSS per connection
#     5  18,000 connections open, 1,000 active: throughput
#     6  16 MiB messages, one at a time: server peak RSS growth (VmHWM)
#     7  100,000 connections, 6 wsecho processes (--reuse-port), wsbench --processes 6
#     8  --threads scaling: 200 connections x 1 KiB, 16 pipelined, against --threads 1 and then
#        --threads N (N = CPUs/2; server on CPUs 0..N-1, wsbench with N loops on the others);
#        goal: N reactors >= 0.8 x N x one. Needs 4 CPUs or more (skipped otherwise).
#     9  200 connections x 16 KiB text of mixed UTF-8, about half the characters non-ASCII
#        (wsbench --text-kind mixed; 1 in flight, then 16): the server's UTF-8 validation, against
#        scenario 3's binary messages of the same size
#   million [OPTIONS]   alone: a million connections on this box (issue 14): N idle connections
#        over >= 51 wsecho --reuse-port processes (each scraped on its own --metrics-listen port)
#        and as many wsbench processes, 1,000 more echoing beside them, then SIGTERM and the
#        drain; raises sysctls for the run and restores them. scripts/million.sh --help, docs/million.md
#
# wsecho runs pinned to CPU 0 and wsbench to CPU 1 (taskset). Server CPU per message is the
# server's utime+stime (/proc/PID/stat) sampled when wsbench prints MEASURE_START and
# MEASURE_END, divided by the messages echoed in between (so ramp-up and closing are not
# counted). Server RSS is VmRSS (/proc/PID/status), summed over server processes, sampled at
# MEASURE_END (idle: at ALL_UPGRADED). wsbench's frame fidelity check is on (every echoed frame
# must have the sent frame's FIN, opcode and length); "errors" = echo mismatches + fidelity
# errors, 0 expected (any fails wsbench's run and shows its exit status). Environment: WSBENCH_PORT (first port to try, default
# 19001), CARGO_TARGET_DIR (as for cargo). Every run is bounded (timeout), servers are killed on
# exit. Note: on a 2-vCPU VM, the cross-CPU pinning adds wake-up latency to the 1-in-flight runs.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=bench.sh
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
if [ "${1:-}" = million ]; then
    shift
    exec bash "$ROOT/scripts/million.sh" "$@"
fi
QUICK=0
SCENARIOS=()
for a in "$@"; do
    case "$a" in
        --quick) QUICK=1 ;;
        -h|--help) usage; exit 0 ;;
        [1-9]) SCENARIOS+=("$a") ;;
        *) echo "bench.sh: unknown argument '$a' (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#SCENARIOS[@]} -eq 0 ] && SCENARIOS=(1 2 3 4 5 6 7 8 9)

if [ "$QUICK" = 1 ]; then DUR=3; WARM=0; else DUR=10; WARM=1; fi

build_bins

raise_nofile
echo "== open files: $(ulimit -n); CPUs: $(nproc); ephemeral ports: $(tr '\t' '-' < /proc/sys/net/ipv4/ip_local_port_range)"
HZ=$(getconf CLK_TCK)
CPUS=$(nproc)
pin_cpus

WORK="$(mktemp -d /tmp/wsbench-bench.XXXXXX)"
SERVER_PIDS=()
cleanup() {
    for p in "${SERVER_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$WORK"
}
on_exit cleanup

PORT=${WSBENCH_PORT:-19001}

# start_servers COUNT [wsecho args...]: COUNT wsecho processes on 127.0.0.1:$PORT, pinned.
start_servers() {
    local n=$1; shift
    PORT=$(free_port $((PORT + 1)))
    SERVER_PIDS=()
    local i
    for ((i = 0; i < n; i++)); do
        "${PIN_SRV[@]}" "$WSECHO" --listen "127.0.0.1:$PORT" "$@" > "$WORK/server-$i.log" 2>&1 &
        SERVER_PIDS+=($!)
    done
    wait_port "$PORT" "${SERVER_PIDS[@]}"
    case $? in
        0) return 0 ;;
        1) echo "bench.sh: wsecho exited:" >&2; cat "$WORK"/server-*.log >&2 ;;
        *) echo "bench.sh: wsecho did not listen on port $PORT within 5 s" >&2 ;;
    esac
    return 1
}

stop_servers() {
    stop_pids TERM 10 "${SERVER_PIDS[@]}"
    SERVER_PIDS=()
}

# Summed over the server processes: CPU ticks, VmRSS kB, VmHWM kB.
srv_ticks() { local s=0 p v; for p in "${SERVER_PIDS[@]}"; do v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null); s=$((s + ${v:-0})); done; echo $s; }
# User-space CPU ticks only (utime): the server's own code, as opposed to syscalls.
srv_uticks() { local s=0 p v; for p in "${SERVER_PIDS[@]}"; do v=$(awk '{print $14}' "/proc/$p/stat" 2>/dev/null); s=$((s + ${v:-0})); done; echo $s; }
srv_kb() { status_kb "$1" "${SERVER_PIDS[@]}"; }

ROWS=()
# run NAME NOTE-KIND [wsbench args...]: runs wsbench against the current servers, samples the
# servers at its marker lines, adds a summary row.
run() {
    local name=$1 kind=$2; shift 2
    local file; file=$(echo "$name" | tr -c 'A-Za-z0-9=\n' '_')
    local json="$WORK/$file.json" out="$WORK/$file.out"
    local args=("$@" --json "$json" "ws://127.0.0.1:$PORT/")
    local limit=$((DUR + WARM + 240))
    echo
    echo "== scenario $name"
    echo "\$ ${PIN_CLI[*]} wsbench $(printf '%q ' "${args[@]}")"
    local rss0 hwm0 t0="" t1="" u0="" u1="" m0="" m1="" rss_up="" rss_end="" rc=""
    rss0=$(srv_kb VmRSS); hwm0=$(srv_kb VmHWM)
    : > "$out"
    local fd
    exec {fd}< <(timeout --signal=INT --kill-after=15 "$limit" "${PIN_CLI[@]}" "$WSBENCH" "${args[@]}" 2> >(grep -v '^wsbench \[' >&2); echo "EXIT $?")
    local line
    while IFS= read -r -t $((limit + 30)) -u "$fd" line; do
        case "$line" in
            ALL_UPGRADED*|UPGRADE_INCOMPLETE*) rss_up=$(srv_kb VmRSS); echo "  $line (server RSS $((rss_up / 1024)) MiB)" ;;
            MEASURE_START*) t0=$(srv_ticks); u0=$(srv_uticks); m0=${line#*msgs=} ;;
            MEASURE_END*) t1=$(srv_ticks); u1=$(srv_uticks); m1=${line#*msgs=}; rss_end=$(srv_kb VmRSS) ;;
            EXIT\ *) rc=${line#EXIT }; break ;;
            *) echo "$line" >> "$out"; echo "  $line" ;;
        esac
    done
    exec {fd}<&-
    [ -z "$rc" ] && rc="timeout"
    local hwm1; hwm1=$(srv_kb VmHWM)
    local mps mbs p50 p99 cpu rss note
    mps=$(fmt "$(jnum "$json" msgs_per_sec)" %.0f); mbs=$(fmt "$(jnum "$json" mb_per_sec)" %.2f)
    p50=$(fmt "$(jlat "$json" latency_us p50)" %.1f); p99=$(fmt "$(jlat "$json" latency_us p99)" %.1f)
    cpu="-"
    if [ -n "$t0" ] && [ -n "$t1" ] && [ -n "$m0" ] && [ -n "$m1" ] && [ "$m1" -gt "$m0" ]; then
        cpu=$(awk -v t="$((t1 - t0))" -v m="$((m1 - m0))" -v hz="$HZ" 'BEGIN {printf "%.2f", t * 1e6 / hz / m}')
        # /proc/PID/stat counts in clock ticks (10 ms at 100 Hz): few ticks, coarse figure.
        [ $((t1 - t0)) -lt 20 ] && cpu="$cpu*"
    fi
    rss=${rss_end:-${rss_up:-$(srv_kb VmRSS)}}
    rss=$(awk -v k="$rss" 'BEGIN {printf "%.1f", k / 1024}')
    note=""
    # Share of the server's CPU spent in its own code (the rest is the kernel: syscalls).
    if [ -n "$u0" ] && [ -n "$u1" ] && [ -n "$t0" ] && [ $((t1 - t0)) -gt 0 ]; then
        note=$(awk -v u="$((u1 - u0))" -v t="$((t1 - t0))" 'BEGIN {printf "user %.1f%% of srv CPU", 100 * u / t}')
    fi
    case "$kind" in
        perconn)
            local n; n=$(jnum "$json" upgraded)
            if [ -n "$rss_up" ] && [ -n "$n" ] && [ "$n" -gt 0 ]; then
                note="$note $(awk -v a="$rss_up" -v b="$rss0" -v n="$n" 'BEGIN {printf "RSS/conn %.2f KiB (%d conns)", (a - b) / n, n}')"
            fi ;;
        hwm) note="$note $(awk -v a="$hwm1" -v b="$hwm0" 'BEGIN {printf "peak RSS growth %.1f MiB (VmHWM)", (a - b) / 1024}')" ;;
    esac
    local mism fid lost p999 errs="-"
    mism=$(jnum "$json" echo_mismatches); fid=$(jnum "$json" fidelity_errors); lost=$(jnum "$json" lost_connections)
    p999=$(fmt "$(jlat "$json" latency_us p99_9)" %.1f)
    [ -z "$mism$fid" ] || errs=$((${mism:-0} + ${fid:-0}))
    [ "$rc" != 0 ] && note="$note [exit $rc: mismatches ${mism:-?}, fidelity errors ${fid:-?}, lost ${lost:-?}]"
    ROWS+=("$(printf '%-22s %12s %10s %10s %10s %10s %6s %14s %10s  %s' "$name" "${mps:--}" "${mbs:--}" "${p50:--}" "${p99:--}" "${p999:--}" "$errs" "$cpu" "$rss" "$note")")
}

has_reuse_port() { "$WSECHO" --help 2>&1 | grep -q -- '--reuse-port'; }

D=(-d "$DUR" --warmup "$WARM")
for s in "${SCENARIOS[@]}"; do
    case "$s" in
        1|2|3)
            case "$s" in 1) c=100; sz=20 ;; 2) c=10; sz=1KiB ;; 3) c=200; sz=16KiB ;; esac
            ks=(1 16)
            [ "$s" = 3 ] && ks=(1 4 16)
            for k in "${ks[@]}"; do
                start_servers 1 || exit 1
                run "$s ${c}x${sz} k=$k" plain -c "$c" -s "$sz" -k "$k" "${D[@]}"
                stop_servers
            done
            if [ "$s" = 3 ]; then
                start_servers 1 || exit 1
                run "3 100x64KiB k=4" plain -c 100 -s 64KiB -k 4 "${D[@]}"
                stop_servers
            fi ;;
        4)
            start_servers 1 || exit 1
            run "4 10000 idle" perconn -m idle -c 10000 -d "$DUR"
            stop_servers ;;
        5)
            start_servers 1 || exit 1
            run "5 18000 (1000 act)" plain -c 18000 --active 1000 "${D[@]}"
            stop_servers ;;
        6)
            start_servers 1 || exit 1
            run "6 16MiB x1" hwm -m rate --rate 1 -k 1 -c 1 -s 16MiB -d "$DUR"
            stop_servers ;;
        7)
            if ! has_reuse_port; then
                echo
                echo "== scenario 7 skipped: 'wsecho --help' does not list --reuse-port"
                ROWS+=("$(printf '%-22s %s' "7 100000 x6 procs" "skipped: wsecho has no --reuse-port")")
                continue
            fi
            start_servers 6 --reuse-port || exit 1
            run "7 100000 x6 procs" perconn -c 100000 -p 6 "${D[@]}"
            stop_servers ;;
        8)
            if [ "$CPUS" -lt 4 ]; then
                echo
                echo "== scenario 8 skipped: $CPUS CPUs; scaling needs N CPUs for the server and N for wsbench"
                ROWS+=("$(printf '%-22s %s' "8 --threads scaling" "skipped: needs >= 4 CPUs (have $CPUS)")")
                continue
            fi
            n=$((CPUS / 2))
            SAVE_SRV=("${PIN_SRV[@]}"); SAVE_CLI=("${PIN_CLI[@]}")
            PIN_CLI=(taskset -c "$n-$((CPUS - 1))")
            for t in 1 "$n"; do
                PIN_SRV=(taskset -c "0-$((t - 1))")
                start_servers 1 --threads "$t" || exit 1
                run "8 threads=$t" plain -c 200 -s 1KiB -k 16 -t "$n" "${D[@]}"
                stop_servers
            done
            PIN_SRV=("${SAVE_SRV[@]}"); PIN_CLI=("${SAVE_CLI[@]}") ;;
        9)
            for k in 1 16; do
                start_servers 1 || exit 1
                run "9 200x16KiB mixed k=$k" plain -c 200 -s 16KiB --text-kind mixed -k "$k" "${D[@]}"
                stop_servers
            done ;;
    esac
done

echo
echo "== summary ($( [ "$QUICK" = 1 ] && echo quick: ) ${DUR} s measured per run; latency in us; server CPU in us per message; server RSS in MiB)"
printf '%-22s %12s %10s %10s %10s %10s %6s %14s %10s  %s\n' scenario msg/s MB/s p50 p99 p99.9 errors "srv-CPU/msg" "srv-RSS" notes
for r in "${ROWS[@]}"; do echo "$r"; done
echo "* server CPU from fewer than 20 clock ticks (1 tick = $((1000 / HZ)) ms): coarse"
echo "Latency in echo mode (1 or 16 in flight per connection, closed loop) includes queueing: with"
echo "N messages in flight at rate X, the mean is about N/X (Little's law), e.g. scenario 7."

