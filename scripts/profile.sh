#!/usr/bin/env bash
# Profiles wsecho under a wsbench load: a flamegraph (perf record), perf stat counters per
# message, and syscalls per message.
#
# Usage: scripts/profile.sh [SCENARIO] [SECONDS]
#   SCENARIO  small  100 connections x 20 B, 16 pipelined per connection        [default]
#             kb     10 connections x 1 KiB, 16 pipelined
#             large  200 connections x 16 KiB, 1 in flight
#             idle   10,000 idle connections, server pings each every second (--ping-interval 1);
#                    the recording starts with the ramp-up, so it covers accept + upgrade too
#   SECONDS   length of the perf record window [default: 10]; perf stat and the syscall count
#             then take min(SECONDS, 5) s each
#
# Steps: build `--profile profiling` (release + line tables) with frame pointers; install perf
# (Debian linux-perf) and inferno (cargo install --locked inferno) when missing; start wsecho
# pinned to CPU 0 and wsbench on CPU 1; once wsbench measures (idle: right away), run
#   perf record -g -p PID          (SECONDS s)      -> perf.data, stacks.folded, flamegraph.svg
#   perf stat -e cycles,instructions,context-switches,cpu-clock,task-clock -p PID   -> perf-stat.txt
#   perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_{recvfrom,sendto,...} -p PID
#             (or, when tracepoints are not permitted, strace -c -f -p PID)         -> syscalls.txt
# with the server's own counter (wsecho_messages_sent_total, idle: wsecho_pings_sent_total) read
# from /metrics at both ends of each window, inside perf's counting window, to turn counts into
# per-message figures. Events this machine does not support (e.g. cycles and instructions in a VM
# without a PMU) are reported as such; sampling then uses cpu-clock. When perf_event_paranoid
# forbids perf, it says so and still produces the syscall counts (strace).
#
# Output: target/profile/SCENARIO/ (summary.txt, flamegraph.svg, stacks.folded, top-frames.txt,
# perf.data, perf-stat.txt, syscalls.txt, wsbench.txt, wsecho.log).
# Environment: PROFILE_CALLGRAPH=fp (default: -g, frame pointers; stacks stop at glibc's syscall
# wrappers, which have none) or dwarf (--call-graph dwarf at 999 Hz: whole stacks, ~15 MB/s of
# perf.data); PROFILE_PERF=user|none (act as if perf were restricted, to try the fallbacks);
# PROFILE_PORT (first port to try, default 19401); CARGO_TARGET_DIR as for cargo.
# Every step is time-bounded; the server, wsbench and perf are stopped on exit.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=profile.sh
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
SCEN="${1:-small}"
DUR="${2:-10}"
case "$SCEN" in -h|--help) usage; exit 0 ;; esac
case "$DUR" in ''|*[!0-9]*|0) echo "profile.sh: SECONDS must be a positive whole number" >&2; exit 2 ;; esac
WIN=$(( DUR < 5 ? DUR : 5 ))

SRV_ARGS=()
UNIT="message"
COUNTER="wsecho_messages_sent_total"
case "$SCEN" in
    small) BENCH_ARGS=(-c 100 -s 20 -k 16) ;;
    kb) BENCH_ARGS=(-c 10 -s 1KiB -k 16) ;;
    large) BENCH_ARGS=(-c 200 -s 16KiB -k 1) ;;
    idle)
        BENCH_ARGS=(--mode idle -c 10000)
        SRV_ARGS=(--ping-interval 1)
        UNIT="ping"
        COUNTER="wsecho_pings_sent_total"
        ;;
    *) echo "profile.sh: unknown scenario '$SCEN' (small, kb, large, idle; see --help)" >&2; exit 2 ;;
esac
CALLGRAPH="${PROFILE_CALLGRAPH:-fp}"
case "$CALLGRAPH" in fp|dwarf) ;; *) echo "profile.sh: PROFILE_CALLGRAPH must be fp or dwarf" >&2; exit 2 ;; esac

OUT="$ROOT/target/profile/$SCEN"
rm -rf "$OUT"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
say() { echo "$*" | tee -a "$SUMMARY"; }

# ---------------------------------------------------------------- tools
if ! command -v perf >/dev/null 2>&1; then
    echo "== installing perf (apt-get install linux-perf)"
    apt_install linux-perf || echo "profile.sh: could not install linux-perf (need root and apt-get)" >&2
fi
if ! command -v inferno-flamegraph >/dev/null 2>&1 || ! command -v inferno-collapse-perf >/dev/null 2>&1; then
    export PATH="$HOME/.cargo/bin:$PATH"
    if ! command -v inferno-flamegraph >/dev/null 2>&1; then
        echo "== installing inferno (cargo install --locked inferno; a few minutes, once)"
        timeout 1200 cargo install --locked --quiet inferno || echo "profile.sh: could not install inferno: no flamegraph" >&2
    fi
fi
command -v strace >/dev/null 2>&1 || apt_install strace || true

# What perf may do here: full (kernel + user), user (user space only), none.
PARANOID=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo '?')
PERF=none
if command -v perf >/dev/null 2>&1; then
    if timeout 20 perf stat -e cpu-clock -- true >/dev/null 2>&1; then
        PERF=full
    elif timeout 20 perf stat -e cpu-clock:u -- true >/dev/null 2>&1; then
        PERF=user
    fi
fi
# PROFILE_PERF=user|none: behave as if perf were restricted (to check the fallbacks).
case "${PROFILE_PERF:-}" in
    none) PERF=none; PARANOID="$PARANOID, forced by PROFILE_PERF=none" ;;
    user) [ "$PERF" = full ] && PERF=user; PARANOID="$PARANOID, forced by PROFILE_PERF=user" ;;
esac
case "$PERF" in
    none) NOTE_PERF="perf events are not permitted here (kernel.perf_event_paranoid=$PARANOID, uid $(id -u), or perf missing): no flamegraph or counters, syscalls via strace only" ;;
    user) NOTE_PERF="kernel samples are not permitted here (kernel.perf_event_paranoid=$PARANOID, uid $(id -u)): user-space samples and counters only; syscalls via strace" ;;
    full) NOTE_PERF="" ;;
esac
SFX=""
[ "$PERF" = user ] && SFX=":u"
TRACEPOINTS=0
if [ "$PERF" = full ] && timeout 20 perf stat -e syscalls:sys_enter_close -- true >/dev/null 2>&1; then
    TRACEPOINTS=1
fi
# Hardware counters: a VM without a virtual PMU has none; sampling then uses cpu-clock.
HW=0
if [ "$PERF" != none ] && timeout 20 perf stat -x, -e "cycles$SFX" -- true 2>&1 | grep -q "cycles"; then
    timeout 20 perf stat -x, -e "cycles$SFX" -- true 2>&1 | grep -q '<not supported>' || HW=1
fi

# ---------------------------------------------------------------- build
BUILD_SHOWN='RUSTFLAGS="-C force-frame-pointers=yes" cargo build --profile profiling --bins' \
    RUSTFLAGS="${RUSTFLAGS:-} -C force-frame-pointers=yes" cargo_build --profile profiling --bins
TGT=$(target_dir)
WSECHO="$TGT/profiling/wsecho"
WSBENCH="$TGT/profiling/wsbench"

# ---------------------------------------------------------------- processes
SPID=""
BPID=""
PERF_PIDS=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    local p
    # perf runs under timeout, which leads its own process group (perf and its workload).
    for p in "${PERF_PIDS[@]}"; do kill -INT -- "-$p" 2>/dev/null || kill -INT "$p" 2>/dev/null; done
    [ -n "$BPID" ] && kill -KILL "$BPID" 2>/dev/null
    [ -n "$SPID" ] && kill -KILL "$SPID" 2>/dev/null
    wait 2>/dev/null
}
on_exit cleanup

raise_nofile
pin_cpus
PINNING="one CPU: no pinning"
[ ${#PIN_SRV[@]} -eq 0 ] || PINNING="wsecho on CPU 0, wsbench on CPU 1"

PORT=$(free_port "${PROFILE_PORT:-19401}")
# fetch_metrics (common.sh) runs in perf's workload shells too, with this PORT.
export PORT
export -f fetch_metrics http_get
# metric FILE NAME: one counter from a saved /metrics text.
metric() { awk -v k="$2" '$1 == k { print $2; exit }' "$1" 2>/dev/null; }
# A shell command that saves /metrics to $1.metrics, sleeps $2 s, saves it to $1-end.metrics: run
# as perf's workload, so the counter difference covers exactly perf's counting window.
window_cmd() { echo "fetch_metrics > '$OUT/$1.metrics'; sleep $2; fetch_metrics > '$OUT/$1-end.metrics'"; }
# window_msgs NAME: counter difference over a window.
window_msgs() {
    local a b
    a=$(metric "$OUT/$1.metrics" "$COUNTER"); b=$(metric "$OUT/$1-end.metrics" "$COUNTER")
    [ -n "$a" ] && [ -n "$b" ] && echo $((b - a))
}

"${PIN_SRV[@]}" "$WSECHO" --listen "127.0.0.1:$PORT" "${SRV_ARGS[@]}" > "$OUT/wsecho.log" 2>&1 &
SPID=$!
wait_port "$PORT" "$SPID"
case $? in
    0) ;;
    1) echo "profile.sh: wsecho exited:" >&2; cat "$OUT/wsecho.log" >&2; exit 1 ;;
    *) echo "profile.sh: wsecho did not listen on port $PORT within 5 s" >&2; exit 1 ;;
esac

# wsbench runs longer than all the windows together; it is stopped (SIGINT) when they are done.
BENCH_D=$((DUR + 2 * WIN + 30))
"${PIN_CLI[@]}" "$WSBENCH" "${BENCH_ARGS[@]}" -d "$BENCH_D" --warmup 1 --json "$OUT/wsbench.json" \
    "ws://127.0.0.1:$PORT/" > "$OUT/wsbench.txt" 2> "$OUT/wsbench.err" &
BPID=$!

: > "$SUMMARY"
say "== profile.sh $SCEN: wsbench ${BENCH_ARGS[*]} ws://127.0.0.1:$PORT/ against wsecho${SRV_ARGS[*]:+ ${SRV_ARGS[*]}} (pid $SPID); $PINNING"
if [ "$PERF" = none ]; then HWSAY="unknown"
elif [ $HW = 1 ]; then HWSAY="yes"
else HWSAY="none (no PMU exposed, e.g. a VM): sampling and counting on cpu-clock"; fi
say "   perf: $PERF (kernel.perf_event_paranoid=$PARANOID, uid $(id -u)); hardware counters: $HWSAY; syscall tracepoints: $([ $TRACEPOINTS = 1 ] && echo yes || echo no)"
[ -n "$NOTE_PERF" ] && say "   NOTE: $NOTE_PERF"

# wait_marker WORD SECS: waits for a wsbench marker line.
wait_marker() {
    for _ in $(seq 1 $(($2 * 10))); do
        grep -q "^$1" "$OUT/wsbench.txt" 2>/dev/null && return 0
        kill -0 "$BPID" 2>/dev/null || { echo "profile.sh: wsbench exited early:" >&2; cat "$OUT/wsbench.err" "$OUT/wsbench.txt" >&2; return 1; }
        sleep 0.1
    done
    echo "profile.sh: no $1 from wsbench within $2 s" >&2
    return 1
}
if [ "$SCEN" != idle ]; then
    wait_marker MEASURE_START 130 || exit 1
fi

# server_alive: false (and says so once) when wsecho has exited.
server_alive() {
    kill -0 "$SPID" 2>/dev/null && return 0
    [ -n "${DEAD_SAID:-}" ] || say "profile.sh: wsecho exited early; skipping the remaining measurements (see $OUT/wsecho.log)"
    DEAD_SAID=1
    return 1
}

# ---------------------------------------------------------------- perf record
EVENT="cpu-clock$SFX"; COUNTNAME=ns
[ $HW = 1 ] && { EVENT="cycles$SFX"; COUNTNAME=cycles; }
if [ "$PERF" != none ] && server_alive; then
    # shellcheck disable=SC2054 # "dwarf,16384" is one argument
    if [ "$CALLGRAPH" = dwarf ]; then CG=(-F 999 --call-graph dwarf,16384); else CG=(-g); fi
    say "== perf record -e $EVENT ${CG[*]} -p $SPID for $DUR s"
    timeout -s INT $((DUR + 30)) perf record -e "$EVENT" "${CG[@]}" -o "$OUT/perf.data" -p "$SPID" \
        -- bash -c "$(window_cmd record "$DUR")" > "$OUT/perf-record.log" 2>&1 &
    PERF_PIDS=($!)
    wait "${PERF_PIDS[0]}" || say "   perf record failed: $(tail -n 3 "$OUT/perf-record.log")"
    PERF_PIDS=()
    say "   $(grep -o 'Captured and wrote[^]]*' "$OUT/perf-record.log" | head -n1)"
fi
if [ "$SCEN" = idle ]; then
    wait_marker ALL_UPGRADED 130 || exit 1
fi

# ---------------------------------------------------------------- perf stat
if [ "$PERF" != none ] && server_alive; then
    EVS="cycles$SFX,instructions$SFX,context-switches$SFX,cpu-clock$SFX,task-clock$SFX"
    timeout -s INT $((WIN + 30)) perf stat -x, -e "$EVS" -o "$OUT/perf-stat.csv" -p "$SPID" \
        -- bash -c "$(window_cmd stat "$WIN")" > /dev/null 2>&1
    N=$(window_msgs stat)
    {
        echo "# perf stat -e $EVS -p $SPID over $WIN s: $N ${UNIT}s"
        printf '%-18s %16s %8s %16s\n' event value unit "per $UNIT"
        grep -v '^#' "$OUT/perf-stat.csv" | awk -F, -v n="${N:-0}" 'NF > 2 {
            v = $1; per = "-"
            if (v ~ /^[0-9.]+$/ && n > 0) {
                if ($2 == "msec") per = sprintf("%.1f ns", v * 1e6 / n); else per = sprintf("%.4f", v / n)
            }
            printf "%-18s %16s %8s %16s\n", $3, v, $2, per }'
    } > "$OUT/perf-stat.txt"
    say "== perf stat over $WIN s (${N:-?} ${UNIT}s: $COUNTER)"
    sed 's/^/   /' "$OUT/perf-stat.txt" | grep -v '^   #' | tee -a "$SUMMARY"
    UNSUP=$(awk -F, '$1 ~ /not supported/ { printf "%s%s", s, $3; s = ", " }' "$OUT/perf-stat.csv")
    UNCNT=$(awk -F, '$1 ~ /not counted/ { printf "%s%s", s, $3; s = ", " }' "$OUT/perf-stat.csv")
    [ -n "$UNSUP" ] && say "   not supported on this machine: $UNSUP (no hardware PMU exposed); cpu-clock/task-clock used instead"
    [ -n "$UNCNT" ] && say "   not counted: $UNCNT"
fi

# ---------------------------------------------------------------- syscalls
TRACEFS=""
for d in /sys/kernel/tracing /sys/kernel/debug/tracing; do [ -d "$d/events/syscalls" ] && TRACEFS=$d && break; done
if ! server_alive; then
    SRC=""
elif [ $TRACEPOINTS = 1 ]; then
    # Named syscalls plus raw_syscalls:sys_enter (all of them): "other" = total - named. (The
    # whole syscalls:sys_enter_* glob works too but takes ~15 s to set up.)
    EVS="raw_syscalls:sys_enter"
    for s in read write recvfrom sendto readv writev recvmsg sendmsg epoll_wait epoll_pwait epoll_pwait2 \
        epoll_ctl accept4 close shutdown futex; do
        if [ -z "$TRACEFS" ] || [ -d "$TRACEFS/events/syscalls/sys_enter_$s" ]; then EVS="$EVS,syscalls:sys_enter_$s"; fi
    done
    timeout -s INT $((WIN + 60)) perf stat -x, -e "$EVS" -o "$OUT/syscalls.csv" -p "$SPID" \
        -- bash -c "$(window_cmd syscalls "$WIN")" > /dev/null 2>&1
    N=$(window_msgs syscalls)
    {
        echo "# perf stat (syscall tracepoints) -p $SPID over $WIN s: $N ${UNIT}s"
        printf '%-14s %12s %14s\n' syscall calls "per $UNIT"
        grep -v '^#' "$OUT/syscalls.csv" | awk -F, -v n="${N:-0}" 'NF > 2 {
            name = $3; sub(/^syscalls:sys_enter_/, "", name); v = $1 + 0
            if (name == "raw_syscalls:sys_enter") { total = v; next }
            named += v
            if (v > 0) printf "%-14s %12d %14s\n", name, v, (n > 0 ? sprintf("%.4f", v / n) : "-")
        } END {
            # The counters do not open at the same instant: a few calls of skew either way.
            if (total < named) total = named
            printf "%-14s %12d %14s\n", "other", total - named, (n > 0 ? sprintf("%.4f", (total - named) / n) : "-")
            printf "%-14s %12d %14s\n", "total", total, (n > 0 ? sprintf("%.4f", total / n) : "-")
        }'
    } > "$OUT/syscalls.txt"
    SRC="perf syscall tracepoints"
elif command -v strace >/dev/null 2>&1; then
    [ "$PERF" = full ] && say "   syscall tracepoints not permitted: falling back to strace -c (slows the server down)"
    timeout -s INT $((WIN + 30)) bash -c "fetch_metrics > '$OUT/syscalls.metrics'; \
        timeout -s INT $WIN strace -c -f -p $SPID -o '$OUT/strace.txt'; fetch_metrics > '$OUT/syscalls-end.metrics'" \
        > /dev/null 2>&1
    N=$(window_msgs syscalls)
    {
        echo "# strace -c -f -p $SPID over $WIN s: $N ${UNIT}s (strace slows the server: batching differs)"
        printf '%-14s %12s %14s\n' syscall calls "per $UNIT"
        # % time, seconds, usecs/call, calls, [errors], syscall; the last row is the total.
        awk -v n="${N:-0}" '$1 ~ /^[0-9.]+$/ && NF >= 5 {
            printf "%-14s %12d %14s\n", $NF, $4, (n > 0 ? sprintf("%.4f", $4 / n) : "-")
        }' "$OUT/strace.txt" 2>/dev/null
    } > "$OUT/syscalls.txt"
    SRC="strace -c"
    [ -s "$OUT/strace.txt" ] || say "   strace could not attach (ptrace not permitted?)"
else
    SRC=""
    say "   no syscall counts: neither perf tracepoints nor strace available"
fi
if [ -n "$SRC" ]; then
    say "== syscalls per $UNIT ($SRC, $WIN s, ${N:-?} ${UNIT}s: $COUNTER)"
    grep -v '^#' "$OUT/syscalls.txt" | sed 's/^/   /' | tee -a "$SUMMARY"
fi

# ---------------------------------------------------------------- stop the load
stop_pids INT 15 "$BPID"
BPID=""
RATE=$(jnum "$OUT/wsbench.json" msgs_per_sec)
[ -n "$RATE" ] && [ "$SCEN" != idle ] && say "== wsbench: $(awk -v r="$RATE" 'BEGIN { printf "%.0f", r }') msg/s over its whole measured window (profilers attached most of it)"
stop_pids TERM 10 "$SPID"
SPID=""

# ---------------------------------------------------------------- flamegraph
if [ -s "$OUT/perf.data" ]; then
    if command -v inferno-collapse-perf >/dev/null 2>&1 && command -v inferno-flamegraph >/dev/null 2>&1; then
        timeout 600 perf script -i "$OUT/perf.data" 2> "$OUT/perf-script.log" \
            | inferno-collapse-perf --kernel > "$OUT/stacks.folded"
        timeout 300 inferno-flamegraph --title "wsecho: $SCEN (wsbench ${BENCH_ARGS[*]})" \
            --subtitle "perf record -e $EVENT ${CG[*]}, $DUR s. Orange: kernel, yellow: Rust, red: C (glibc)" \
            --colors java --countname "$COUNTNAME" \
            < "$OUT/stacks.folded" > "$OUT/flamegraph.svg" 2> "$OUT/flamegraph.log" \
            || say "   inferno-flamegraph failed: $(tail -n 2 "$OUT/flamegraph.log")"
        # Self (leaf frame) and inclusive shares of the samples; "cut" = stacks not rooted at _start
        # or main: cut off at a glibc syscall wrapper, which has no frame pointer.
        awk '{
            n = $NF; total += n; sub(/ [0-9]+$/, "")
            k = split($0, f, ";"); self[f[k]] += n
            if (f[2] != "_start" && f[2] != "__libc_start_call_main" && f[2] != "main") cut += n
            delete seen
            for (i = 2; i <= k; i++) if (!(f[i] in seen)) { seen[f[i]] = 1; incl[f[i]] += n }
        } END {
            if (total == 0) exit
            printf "total: %.0f %s; stacks cut at a libc wrapper: %.1f%%\n", total, unit, 100 * cut / total
            print "## self (leaf frame)"
            for (g in self) printf "%6.2f%%  %s\n", 100 * self[g] / total, g | "sort -rn | head -n 20"
            close("sort -rn | head -n 20")
            print "## user space only (self, % of all samples; samples with a kernel leaf left out)"
            for (g in self) if (g !~ /_\[k\]$/) printf "%6.2f%%  %s\n", 100 * self[g] / total, g | "sort -rn | head -n 15"
            close("sort -rn | head -n 15")
            print "## inclusive (frame anywhere on the stack)"
            for (g in incl) printf "%6.2f%%  %s\n", 100 * incl[g] / total, g | "sort -rn | head -n 40"
            close("sort -rn | head -n 40")
        }' unit="$COUNTNAME" "$OUT/stacks.folded" > "$OUT/top-frames.txt"
        RN=$(window_msgs record)
        awk -v t="$(sed -n 's/^total: \([0-9]*\) .*/\1/p' "$OUT/top-frames.txt")" -v d="$DUR" -v n="${RN:-0}" \
            -v u="$UNIT" -v hw="$HW" 'BEGIN {
                if (hw == 0) printf "== record window: server on CPU %.0f%% of the %d s", 100 * t / (d * 1e9), d
                else printf "== record window: %d s", d
                if (n > 0) printf ", %d %ss (%.0f/s)", n, u, n / d
                print ""
            }' | tee -a "$SUMMARY"
        say "== hottest frames (self; full list in top-frames.txt)"
        sed -n '3,14p' "$OUT/top-frames.txt" | sed 's/^/   /' | tee -a "$SUMMARY"
        CUT=$(sed -n 's/.*cut at a libc wrapper: \([0-9.]*\)%.*/\1/p' "$OUT/top-frames.txt")
        if [ "$CALLGRAPH" = fp ] && [ -n "$CUT" ] && awk -v c="$CUT" 'BEGIN { exit !(c > 5) }'; then
            say "   $CUT% of the stacks stop at a glibc syscall wrapper (__send, __libc_recv, epoll_wait: no frame"
            say "   pointers), so their Rust callers are missing; PROFILE_CALLGRAPH=dwarf unwinds through them."
        fi
    else
        say "   inferno missing: no flamegraph (perf report -i $OUT/perf.data)"
    fi
fi

say "== reports in $OUT/"
for f in flamegraph.svg summary.txt top-frames.txt stacks.folded perf-stat.txt syscalls.txt perf.data wsbench.txt; do
    [ -s "$OUT/$f" ] && say "   $OUT/$f"
done
exit 0
