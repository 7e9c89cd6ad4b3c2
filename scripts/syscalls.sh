#!/usr/bin/env bash
# Syscalls per echoed message of the real server under wsbench, counted by strace -c.
#
# Usage: scripts/syscalls.sh [SECONDS]      (measured seconds per run, default 3)
#
# Runs, each against a fresh wsecho (pinned to CPU 0; wsbench on CPU 1):
#   pipelined  100 connections x 20 B, 16 in flight per connection
#   1-in-flight 100 connections x 20 B, 1 in flight
# strace -c -f attaches to the server once it listens and detaches after wsbench has closed its
# connections, so the counts cover the whole load (upgrades, echo, closes) and nothing of the
# server's start-up. Messages are the server's own count (wsecho_messages_sent_total from
# /metrics, read after strace detached). Prints, per run, every syscall with its calls per echoed
# message, then a summary: read (recvfrom), write (sendto), epoll_wait, total per message.
# strace stops the server at every syscall, so the server runs slower than without it and each
# read may find more queued messages than it would otherwise; scripts/profile.sh counts the same
# with perf's syscall tracepoints, which barely slow it down.
# Output: target/profile/syscalls/. Environment: SYSCALLS_PORT (first port to try, default
# 19451), CARGO_TARGET_DIR. Every step is time-bounded; processes are stopped on exit.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=syscalls.sh
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
DUR="${1:-3}"
case "$DUR" in -h|--help) usage; exit 0 ;; esac
case "$DUR" in ''|*[!0-9.]*) echo "syscalls.sh: SECONDS must be a number" >&2; exit 2 ;; esac

RUNS=(
    "pipelined|-c 100 -s 20 -k 16"
    "1-in-flight|-c 100 -s 20 -k 1"
)

need_cmd strace strace
build_bins
OUT="$ROOT/target/profile/syscalls"
mkdir -p "$OUT"

SPID=""
TPID=""
BPID=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    [ -n "$BPID" ] && kill -KILL "$BPID" 2>/dev/null
    [ -n "$TPID" ] && kill -INT "$TPID" 2>/dev/null && sleep 0.5
    [ -n "$SPID" ] && kill -KILL "$SPID" 2>/dev/null
    wait 2>/dev/null
}
on_exit cleanup

pin_cpus
PORT=$((${SYSCALLS_PORT:-19451} - 1))

SUMMARY=()
for r in "${RUNS[@]}"; do
    name=${r%%|*}
    read -r -a args <<< "${r#*|}"
    PORT=$(free_port $((PORT + 1)))

    "${PIN_SRV[@]}" "$WSECHO" --listen "127.0.0.1:$PORT" > "$OUT/$name.wsecho.log" 2>&1 &
    SPID=$!
    wait_port "$PORT" "$SPID" || { echo "syscalls.sh: wsecho did not listen on port $PORT" >&2; cat "$OUT/$name.wsecho.log" >&2; exit 1; }

    strace -c -f -p "$SPID" -o "$OUT/$name.strace" 2> "$OUT/$name.strace.log" &
    TPID=$!
    # strace prints "Process N attached" once it holds the process.
    wait_until 5 grep -qs attached "$OUT/$name.strace.log"
    grep -q attached "$OUT/$name.strace.log" \
        || { echo "syscalls.sh: strace could not attach to wsecho (ptrace not permitted?):" >&2; cat "$OUT/$name.strace.log" >&2; exit 1; }

    echo "== $name: wsbench ${args[*]} -d $DUR under strace -c -f -p $SPID"
    timeout -s INT 120 "${PIN_CLI[@]}" "$WSBENCH" -q "${args[@]}" -d "$DUR" --json "$OUT/$name.json" \
        "ws://127.0.0.1:$PORT/" > "$OUT/$name.wsbench.txt" 2>&1 &
    BPID=$!
    wait "$BPID"
    rc=$?
    BPID=""
    [ $rc -eq 0 ] || echo "   wsbench exited with status $rc (see $OUT/$name.wsbench.txt)"

    kill -INT "$TPID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$TPID" 2>/dev/null || break; sleep 0.1; done
    wait "$TPID" 2>/dev/null
    TPID=""
    MSGS=$(fetch_metrics "$PORT" | awk '$1 == "wsecho_messages_sent_total" { print $2 }')
    stop_pids TERM 5 "$SPID"
    SPID=""
    RATE=$(jnum "$OUT/$name.json" msgs_per_sec)

    if [ -z "$MSGS" ] || [ "$MSGS" = 0 ] || [ ! -s "$OUT/$name.strace" ]; then
        echo "syscalls.sh: $name: no messages or no strace summary" >&2
        exit 1
    fi
    echo "   $MSGS messages echoed by the server ($(awk -v r="${RATE:-0}" 'BEGIN { printf "%.0f", r }') msg/s under strace)"
    printf '   %-14s %10s %12s\n' syscall calls 'per message'
    # strace -c rows: % time, seconds, usecs/call, calls, [errors], syscall; last row: total.
    awk -v n="$MSGS" '$1 ~ /^[0-9.]+$/ && NF >= 5 { printf "   %-14s %10d %12.4f\n", $NF, $4, $4 / n }' "$OUT/$name.strace"
    row=$(awk -v n="$MSGS" -v name="$name" '$1 ~ /^[0-9.]+$/ && NF >= 5 {
            c[$NF] = $4 }
        END {
            rd = c["recvfrom"] + c["read"] + c["recvmsg"] + c["readv"]
            wr = c["sendto"] + c["write"] + c["sendmsg"] + c["writev"]
            ep = c["epoll_wait"] + c["epoll_pwait"] + c["epoll_pwait2"]
            printf "%-12s %10d %14.4f %14.4f %12.4f %12.4f", name, n, rd / n, wr / n, ep / n, c["total"] / n
        }' "$OUT/$name.strace")
    SUMMARY+=("$row")
done

echo
echo "== syscalls per echoed message (strace -c -f over the whole load; read = recvfrom, write = sendto)"
printf '%-12s %10s %14s %14s %12s %12s\n' run messages read/recvfrom write/sendto epoll_wait total
printf '%s\n' "${SUMMARY[@]}"
echo "   strace summaries: $OUT/<run>.strace"
