#!/usr/bin/env bash
# What permessage-deflate costs the server in memory per connection, measured: server RSS delta
# divided by the number of connections, for connections held open by scripts/clients/hold.py.
#
# Usage: scripts/deflate-memory.sh [--n N] [--takeover-n N] [--half-n N]
#   --n N           idle connections with and without the extension          [default: 10000]
#   --takeover-n N  connections keeping context (--deflate-context-takeover)  [default: 10000]
#   --half-n N      connections holding half a compressed frame               [default: 1000]
#
# Four runs, each against a fresh release wsecho (pinned to CPU 0, the clients to CPU 1):
#   plain     `wsecho --deflate`, N connections offering no extension, idle
#   deflate   `wsecho --deflate`, N connections offering `permessage-deflate;
#             client_max_window_bits` (accepted: no context takeover), idle
#   takeover  `wsecho --deflate --deflate-context-takeover`, the same offer (which does not forbid
#             context takeover), one compressed 1 KiB text message per connection, echo checked;
#             the server keeps an inflater and a deflater per connection
#   half      `wsecho --deflate`, the first half of a ~40 KiB compressed text frame per connection
#             (the server holds the frame: one 64 KiB hold buffer and one inflater in use; the design
#             bound is 65,536 + 47,672 bytes per connection)
# For each: server VmRSS before the clients connect and once all connections are open and the
# server has read every byte sent (wsecho_bytes_received_total), delta / N. Clients run in as many
# processes as the open-file limit needs (15,000 connections per process at most). The takeover
# run is scaled down when MemAvailable is below 1.2 MB per connection. Everything is bounded
# (timeout) and cleaned up on exit. Environment: MEMORY_PORT (first port to try, default 19401).
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=deflate-memory.sh
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
N=10000
TN=10000
HN=1000
num() { if ! [[ "$2" =~ ^[0-9]+$ ]] || [ "$2" -eq 0 ]; then echo "$SCRIPT: $1 takes a positive number" >&2; exit 2; fi; }
while [ $# -gt 0 ]; do
    case "$1" in
        --n|--takeover-n|--half-n)
            [ $# -ge 2 ] || { echo "$SCRIPT: $1 needs a value" >&2; exit 2; }
            num "$1" "$2"
            case "$1" in --n) N=$2 ;; --takeover-n) TN=$2 ;; --half-n) HN=$2 ;; esac
            shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "$SCRIPT: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

cargo_build --release --bin wsecho
WSECHO="$(target_dir)/release/wsecho"
raise_nofile
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
PER_PROC=$((NOFILE - 1000))
[ "$PER_PROC" -gt 15000 ] && PER_PROC=15000
[ "$PER_PROC" -lt 100 ] && { echo "$SCRIPT: open-file limit $NOFILE is too low" >&2; exit 1; }
for n in "$N" "$TN" "$HN"; do
    [ "$n" -le $((NOFILE - 100)) ] || { echo "$SCRIPT: $n connections need an open-file limit above $n for the server (ulimit -n is $NOFILE)" >&2; exit 1; }
done
AVAIL_KB=$(awk '$1 == "MemAvailable:" { print $2 }' /proc/meminfo)
if [ $((TN * 1200)) -gt "$AVAIL_KB" ]; then
    TN=$((AVAIL_KB / 1200))
    echo "== only $((AVAIL_KB / 1024)) MiB available: the takeover run uses $TN connections"
fi
pin_cpus
command -v taskset >/dev/null || { PIN_SRV=(); PIN_CLI=(); }
TMP=$(mktemp -d)
SRV_PID=""
CLI_PIDS=()
cleanup() {
    [ ${#CLI_PIDS[@]} -gt 0 ] && stop_pids TERM 10 "${CLI_PIDS[@]}"
    [ -n "$SRV_PID" ] && stop_pids TERM 10 "$SRV_PID"
    rm -rf "$TMP"
}
on_exit cleanup
PORT=$(free_port "${MEMORY_PORT:-19401}")
metric() { fetch_metrics "$PORT" | awk -v k="$1" '$1 == k { print $2 }'; }

RESULTS=()
# measure NAME MODE N SERVER_FLAGS...: one run; appends its line to RESULTS.
measure() {
    local name=$1 mode=$2 n=$3 procs i left k rss0 rss1 sent line ready neg ext t0
    shift 3
    "${PIN_SRV[@]}" "$WSECHO" --listen "127.0.0.1:$PORT" "$@" 2>"$TMP/server.log" &
    SRV_PID=$!
    wait_port "$PORT" "$SRV_PID" || { echo "$SCRIPT: wsecho $* did not start: $(tail -n1 "$TMP/server.log")" >&2; exit 1; }
    sleep 0.5
    rss0=$(status_kb VmRSS "$SRV_PID")
    procs=$(( (n + PER_PROC - 1) / PER_PROC ))
    left=$n
    CLI_PIDS=()
    t0=$(date +%s)
    for i in $(seq 1 "$procs"); do
        k=$(( (left + procs - i) / (procs - i + 1) ))
        left=$((left - k))
        rm -f "$TMP/ready.$i"
        "${PIN_CLI[@]}" timeout 600 python3 "$ROOT/scripts/clients/hold.py" "$mode" "$PORT" "$k" "$TMP/ready.$i" 300 \
            >"$TMP/client.$i.log" 2>&1 &
        CLI_PIDS+=($!)
    done
    for i in $(seq 1 "$procs"); do
        wait_until 240 test -s "$TMP/ready.$i" || { echo "$SCRIPT: $name: client $i not ready after 240 s: $(tail -n2 "$TMP/client.$i.log")" >&2; exit 1; }
        grep -q '^ready' "$TMP/ready.$i" || { echo "$SCRIPT: $name: client $i: $(cat "$TMP/ready.$i")" >&2; exit 1; }
    done
    sent=0; neg=0
    for i in $(seq 1 "$procs"); do
        line=$(cat "$TMP/ready.$i")
        k=${line#* sent_bytes=}; sent=$((sent + ${k%% *}))
        k=${line#* negotiated=}; neg=$((neg + ${k%% *}))
        ext=$(sed -n 's/.* ext=//p' <<<"$line")
    done
    # The server has read everything the clients wrote (the half frames included).
    got_all() { [ "$(metric wsecho_bytes_received_total)" -ge "$sent" ] 2>/dev/null; }
    wait_until 30 got_all || { echo "$SCRIPT: $name: the server read $(metric wsecho_bytes_received_total) of $sent bytes" >&2; exit 1; }
    sleep 1
    rss1=$(status_kb VmRSS "$SRV_PID")
    ready=$(metric wsecho_connections_open)
    alive "$SRV_PID" || { echo "$SCRIPT: $name: the server died" >&2; exit 1; }
    [ "${ready:-0}" -ge "$n" ] || { echo "$SCRIPT: $name: $ready connections open, expected $n" >&2; exit 1; }
    RESULTS+=("$(awk -v name="$name" -v n="$n" -v a="$rss0" -v b="$rss1" -v neg="$neg" -v s="$(($(date +%s) - t0))" -v ext="${ext:-none}" 'BEGIN {
        printf "%-38s %6d  %8.1f MiB -> %8.1f MiB  %+9.1f MiB  %9.0f B/conn  (%d negotiated: %s; %d s)",
            name, n, a / 1024, b / 1024, (b - a) / 1024, (b - a) * 1024 / n, neg, ext, s }')")
    echo "${RESULTS[-1]}"
    stop_pids TERM 10 "${CLI_PIDS[@]}"; CLI_PIDS=()
    stop_pids TERM 10 "$SRV_PID"; SRV_PID=""
    PER_CONN=$(awk -v n="$n" -v a="$rss0" -v b="$rss1" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
}

echo "== deflate memory: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(awk '$1 == "MemTotal:" { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $("$WSECHO" --version 2>/dev/null || echo wsecho)"
echo "   run                                        N   server RSS before -> after   delta           per connection"
measure "idle, no extension (--deflate)" plain "$N" --deflate
measure "idle, permessage-deflate (--deflate)" deflate "$N" --deflate
measure "context takeover, 1 message each" takeover "$TN" --deflate --deflate-context-takeover
measure "half a ~40 KiB compressed frame held" half "$HN" --deflate
HALF=$PER_CONN
BOUND=$((65536 + 47672))
echo "== summary ($(date -u +%Y-%m-%d))"
printf '%s\n' "${RESULTS[@]}"
if [ "$HALF" -le "$BOUND" ]; then
    echo "half frame held: $HALF B per connection, within the design bound of $BOUND B (64 KiB hold buffer + 47,672 B inflater)"
else
    echo "half frame held: $HALF B per connection, OVER the design bound of $BOUND B (64 KiB hold buffer + 47,672 B inflater)"
fi
