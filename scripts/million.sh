#!/usr/bin/env bash
# A million connections on one box (issue 14; run through `scripts/bench.sh million [OPTIONS]`).
#
# Usage: scripts/million.sh [--connections N] [--servers S] [--clients P] [--hold SECS]
#                           [--echo SECS] [--shutdown-timeout SECS] [--yes]
#   --connections N        upgraded connections to hold (default 1000000)
#   --servers S            wsecho --reuse-port processes (default: N / 18,000 rounded up, >= 2)
#   --clients P            wsbench --processes (default: the same)
#   --hold SECS            hold all N at least this long after the last upgrade (default 60)
#   --echo SECS            measured echo window of the 1,000 echoing connections (default 20)
#   --shutdown-timeout S   the servers' --shutdown-timeout (default 120: the drain of a million
#                          close handshakes is CPU-bound on 2 vCPUs)
#   --yes                  do not ask before changing sysctls (the default when stdin is no tty)
#
# What it does, in order (every step bounded; everything it started is killed on exit):
#  1. prints the limits that matter (ulimit -Hn, fs.file-max, fs.nr_open, nf_conntrack_max when
#     conntrack is loaded, somaxconn, the port range, tcp_mem, tcp_max_orphans, ...) and checks
#     that N fits the open-file limit of S servers and P wsbench processes and this machine's free
#     memory (MemAvailable against ~12.5 KB per loopback connection: both sockets, conntrack,
#     epoll, ours); stops with one clear line when it would not fit;
#  2. raises what must be raised for the run (never lowers anything) and restores every value it
#     changed on exit (trap) -- conntrack's limit only once the table has drained below it;
#  3. starts S `wsecho --reuse-port` processes (CPU 0), each with --metrics-listen on a port of
#     its own; measures each process's base RSS;
#  4. 1,000 connections echo 20 B, one in flight, --echo seconds on the empty servers (CPU 1);
#  5. wsbench --mode idle opens N connections over P processes and automatic loopback source
#     addresses (CPU 1): upgrades/s while ramping; then server RSS, wsbench PSS, kernel memory
#     (/proc/meminfo Slab, /proc/net/sockstat, nf_conntrack_count) per connection;
#  6. while the N are held, the same 1,000-connection echo run: msg/s and p50/p99/p99.9 beside
#     the empty-server run (target: p99 <= 2x);
#  7. scrapes every process's metrics port: the per-process open counts must add up to N
#     (+1,000 during the echo run);
#  8. after --hold seconds, SIGTERM to every server at once: each connection must get close 1001
#     (wsbench counts closes by code) and every process must exit 0 inside --shutdown-timeout;
#     the drain time is from the signal to the last exit.
# Logs and JSON stay in the printed directory. Exit status 0 when every target was met.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=million.sh
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"

N=1000000; S=""; P=""; HOLD=60; ECHO=20; SHUTDOWN=120; YES=0
[ -t 0 ] || YES=1
while [ $# -gt 0 ]; do
    case $1 in
        --connections|-c) N=${2:?}; shift 2 ;;
        --servers) S=${2:?}; shift 2 ;;
        --clients) P=${2:?}; shift 2 ;;
        --hold) HOLD=${2:?}; shift 2 ;;
        --echo) ECHO=${2:?}; shift 2 ;;
        --shutdown-timeout) SHUTDOWN=${2:?}; shift 2 ;;
        --yes) YES=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "$SCRIPT: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for v in "$N" "$HOLD" "$ECHO" "$SHUTDOWN" ${S:+"$S"} ${P:+"$P"}; do
    case $v in '' | *[!0-9]*) echo "$SCRIPT: numbers only (got '$v')" >&2; exit 2 ;; esac
done
PER=18000                      # connections per process: 90% of the 20,000 open files here
[ -z "$S" ] && S=$(( (N + PER - 1) / PER )) && [ "$S" -lt 2 ] && S=2
[ -z "$P" ] && P=$S
ECHO_C=1000

WORK="$(mktemp -d /tmp/wsecho-million.XXXXXX)"
SERVER_PIDS=()
BENCH_PIDS=()
RESTORE=()                     # "key value" pairs to write back
CT_RESTORE=""
cleanup() {
    local p
    for p in "${BENCH_PIDS[@]}" "${SERVER_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    for p in "${BENCH_PIDS[@]}" "${SERVER_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    restore_sysctls
    echo "== logs and JSON: $WORK"
}
on_exit cleanup

sysctl_get() { local f="/proc/sys/${1//.//}"; [ -r "$f" ] && tr -s '\t ' ' ' < "$f"; }
sysctl_set() { printf '%s' "$2" > "/proc/sys/${1//.//}" 2>/dev/null; }
# raise KEY MIN: sets KEY to MIN when it is lower (single-number keys), remembering the old value.
raise() {
    local k=$1 want=$2 cur
    cur=$(sysctl_get "$k") || return 0
    [ -z "$cur" ] && return 0
    if [ "$cur" -lt "$want" ]; then
        if sysctl_set "$k" "$want"; then
            echo "   raised $k: $cur -> $want (restored on exit)"
            if [ "$k" = net.netfilter.nf_conntrack_max ]; then CT_RESTORE=$cur; else RESTORE+=("$k $cur"); fi
        else
            echo "$SCRIPT: cannot raise $k from $cur to $want (not root, or read-only /proc/sys)" >&2
            exit 1
        fi
    fi
}
restore_sysctls() {
    local kv
    for kv in "${RESTORE[@]}"; do
        sysctl_set "${kv%% *}" "${kv#* }" && echo "   restored ${kv%% *} = ${kv#* }"
    done
    RESTORE=()
    if [ -n "$CT_RESTORE" ]; then
        # Lowering the limit below the entries still tracked (TIME_WAIT, CLOSE: up to 120 s) would
        # drop every new loopback connection on this shared machine until they expire: wait.
        local i c
        for i in $(seq 1 600); do
            c=$(cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo 0)
            [ "$c" -lt $((CT_RESTORE * 9 / 10)) ] && break
            [ $((i % 30)) = 1 ] && echo "   waiting for conntrack to drain below $CT_RESTORE before restoring its limit ($c entries)"
            sleep 1
        done
        sysctl_set net.netfilter.nf_conntrack_max "$CT_RESTORE" && echo "   restored net.netfilter.nf_conntrack_max = $CT_RESTORE"
        CT_RESTORE=""
    fi
}

mem_kb() { awk -v k="$1:" '$1 == k {print $2}' /proc/meminfo; }
sock() { awk -v p="$1" -v f="$2" '$1 == p":" { for (i = 2; i < NF; i++) if ($i == f) print $(i + 1) }' /proc/net/sockstat; }
ct_count() { cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo -; }
# pss_kb PID...: proportional set size (kB) summed over the processes: shared pages (the binary,
# a forked parent's pages) counted once in all, unlike a sum of VmRSS.
pss_kb() {
    local s=0 p v
    for p in "$@"; do
        v=$(awk '$1 == "Pss:" {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) || v=0
        s=$((s + ${v:-0}))
    done
    echo "$s"
}
# pss_tree PID...: pss_kb of the processes and their children (wsbench's forked workers).
pss_tree() {
    local all=() p
    for p in "$@"; do all+=("$p"); mapfile -t -O "${#all[@]}" all < <(pgrep -P "$p"); done
    pss_kb "${all[@]}"
}
# kstat NAME: a counter of /proc/net/netstat (TcpExt) or /proc/net/snmp.
kstat() {
    awk -v k="$1" 'FNR % 2 == 1 { for (i = 2; i <= NF; i++) h[i] = $i; next }
        { for (i = 2; i <= NF; i++) if (h[i] == k) { print $i; exit } }' /proc/net/netstat /proc/net/snmp
}
# slab_snap FILE: "cache bytes" per slab cache (active objects x object size; /proc/slabinfo).
slab_snap() { awk 'NR > 2 {printf "%s %.0f\n", $1, $2 * $4}' /proc/slabinfo > "$1" 2>/dev/null || true; }
# slab_diff BEFORE AFTER N: the caches that grew most, in bytes per connection.
slab_diff() {
    awk -v n="$3" 'NR == FNR {b[$1] = $2; next} {d = $2 - b[$1]; if (d > 0) printf "%.0f %s\n", d, $1}' "$1" "$2" | sort -rn | head -n 12 \
        | awk -v n="$3" '{printf "   %-28s %8.0f B per connection\n", $2, $1 / n}'
}
KSTATS=(ListenOverflows TCPMemoryPressures TCPAbortOnMemory TCPAbortOnTimeout TCPAbortOnData)
kstats() { local k o=""; for k in "${KSTATS[@]}"; do o="$o $k=$(kstat "$k")"; done; echo "${o# }"; }
gib() { awk -v k="$1" 'BEGIN {printf "%.2f GiB", k / 1048576}'; }
per_conn() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.0f", (a - b) * 1024 / n; else print "-" }'; }

# ---------------------------------------------------------------- 1. limits and fit
build_bins
raise_nofile
HARD=$(ulimit -Hn)
echo "== $N connections: $S wsecho processes, wsbench --processes $P; open-file limit $HARD (ulimit -Hn) per process"
echo "== host settings (before)"
for k in fs.file-max fs.nr_open fs.file-nr net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_count \
    net.netfilter.nf_conntrack_buckets net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.core.netdev_max_backlog \
    net.ipv4.ip_local_port_range net.ipv4.tcp_mem net.ipv4.tcp_max_orphans net.ipv4.tcp_max_tw_buckets \
    vm.overcommit_memory; do
    v=$(sysctl_get "$k") && [ -n "$v" ] && printf '   %-36s %s\n' "$k" "$v"
done
[ -r /proc/sys/net/netfilter/nf_conntrack_max ] || echo "   (conntrack not loaded: nothing to raise there)"
echo "   CPUs $(nproc); MemTotal $(gib "$(mem_kb MemTotal)"), MemAvailable $(gib "$(mem_kb MemAvailable)")"

FDS=$(( (N + ECHO_C + S - 1) / S ))
if [ $((FDS + 64)) -gt "$HARD" ]; then
    echo "$SCRIPT: $N connections over $S servers is $FDS open files per process, above the limit $HARD: use --servers $(( (N + ECHO_C) / (HARD - 2000) + 1 ))" >&2
    exit 1
fi
FDC=$(( (N + P - 1) / P ))
if [ $((FDC + 64)) -gt "$HARD" ]; then
    echo "$SCRIPT: $N connections over $P wsbench processes is $FDC open files each, above the limit $HARD: use --clients $(( N / (HARD - 200) + 1 ))" >&2
    exit 1
fi
# Memory: ~5.7 KB of kernel slab per TCP socket (two per loopback connection), conntrack ~0.35
# KB, epoll ~0.2 KB, the server ~0.13 KB, wsbench ~0.5 KB; plus 8 MiB per process and 1 GiB kept
# free for the machine's other users.
NEED_KB=$(awk -v n="$N" -v p="$((S + P))" 'BEGIN {printf "%d", n * 12.5 + p * 8192 + 1048576}')
AVAIL_KB=$(mem_kb MemAvailable)
echo "== memory: need about $(gib "$NEED_KB") (12.5 KB x N + 8 MiB x $((S + P)) processes + 1 GiB spare), available $(gib "$AVAIL_KB")"
if [ "$NEED_KB" -gt "$AVAIL_KB" ]; then
    echo "$SCRIPT: $N connections would not fit: about $(gib "$NEED_KB") needed, $(gib "$AVAIL_KB") available; try --connections $(awk -v a="$AVAIL_KB" -v p="$((S + P))" 'BEGIN {printf "%d", (a - 1048576 - p * 8192) / 12.5 / 1000 * 1000}')" >&2
    exit 1
fi

# ---------------------------------------------------------------- 2. raise for the run
if [ "$YES" != 1 ]; then
    read -r -p "== raise the sysctls below for the run (restored on exit)? [y/N] " a
    case $a in y|Y|yes) ;; *) echo "$SCRIPT: not changing sysctls; stopping"; exit 1 ;; esac
fi
echo "== raising what the run needs"
raise fs.file-max $((2 * N + 262144))           # both ends' sockets are open files
raise net.netfilter.nf_conntrack_max $((N + N / 4 + 65536))   # one entry per loopback connection
raise net.ipv4.tcp_max_orphans $((N + 65536))    # the drain: every server socket closes at once
raise net.core.somaxconn 4096                    # the listeners ask for 4096
raise net.ipv4.tcp_max_syn_backlog 8192
raise net.core.netdev_max_backlog 16384          # loopback packets queue here in bursts
pin_cpus

# ---------------------------------------------------------------- 3. servers
PORT=$(free_port "${WSBENCH_PORT:-19001}")
MPORT=$(free_port "${METRICS_PORT:-29100}")
MPORTS=()
for ((i = 0; i < S; i++)); do
    MPORT=$(free_port "$MPORT")
    MPORTS+=("$MPORT")
    "${PIN_SRV[@]}" "$WSECHO" --listen "127.0.0.1:$PORT" --reuse-port --metrics-listen "127.0.0.1:$MPORT" \
        --shutdown-timeout "$SHUTDOWN" > "$WORK/server-$i.log" 2>&1 &
    SERVER_PIDS+=($!)
    wait_port "$MPORT" "$!" || { echo "$SCRIPT: wsecho $i did not start:" >&2; cat "$WORK/server-$i.log" >&2; exit 1; }
    MPORT=$((MPORT + 1))
done
wait_port "$PORT" "${SERVER_PIDS[@]}" || { echo "$SCRIPT: no listener on $PORT" >&2; exit 1; }
echo "== $S servers on 127.0.0.1:$PORT (--reuse-port), metrics on 127.0.0.1:${MPORTS[0]}..${MPORTS[$((S - 1))]}"
URL="ws://127.0.0.1:$PORT/"

# scrape_sum METRIC: "sum min max" of METRIC over every process's metrics port ("-" for a
# process that did not answer).
scrape_sum() {
    local m sum=0 min="" max=0 v miss=0
    for m in "${MPORTS[@]}"; do
        v=$(fetch_metrics "$m" | awk -v k="$1" '$1 ~ "^"k"({|$)" {print $2; exit}')
        if [ -z "$v" ]; then miss=$((miss + 1)); continue; fi
        sum=$((sum + v)); [ "$v" -gt "$max" ] && max=$v
        if [ -z "$min" ] || [ "$v" -lt "$min" ]; then min=$v; fi
    done
    echo "$sum ${min:--} $max $miss"
}

# echo_run NAME: the 1,000-connection echo run, 20 B one in flight, ECHO seconds measured; prints
# the scrape sum of open connections taken at MEASURE_START.
echo_run() {
    local name=$1 line
    echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg) (this machine is shared: other users' load shows in latency)"
    cut -d' ' -f1 /proc/loadavg > "$WORK/$name.load"
    echo "\$ ${PIN_CLI[*]} wsbench -c $ECHO_C -s 20 -k 1 --warmup 2 -d $ECHO --json $WORK/$name.json $URL"
    exec {efd}< <(timeout --signal=INT --kill-after=15 $((ECHO + 120)) "${PIN_CLI[@]}" "$WSBENCH" -c "$ECHO_C" -s 20 -k 1 \
        --warmup 2 -d "$ECHO" -q --json "$WORK/$name.json" "$URL" 2> "$WORK/$name.err"; echo "EXIT $?")
    while IFS= read -r -u "$efd" line; do
        case "$line" in
            MEASURE_START*) read -r s_sum s_min s_max s_miss <<< "$(scrape_sum wsecho_connections_open)"
                echo "   during the echo run: open connections summed over $S metrics ports = $s_sum (per process $s_min..$s_max, $s_miss not answering)"
                echo "$s_sum" > "$WORK/$name.open" ;;
            EXIT\ *) echo "   wsbench exit ${line#EXIT }"; break ;;
            *) echo "$line" >> "$WORK/$name.out" ;;
        esac
    done
    exec {efd}<&-
}

# ---------------------------------------------------------------- 4. echo on the empty servers
# wsbench's own base per process: the same command shape with one connection per process.
"${PIN_CLI[@]}" "$WSBENCH" -m idle -c "$P" -p "$P" -d 3 -q --ready-file "$WORK/base.ready" "$URL" > "$WORK/base.out" 2>&1 &
bp=$!; BENCH_PIDS+=("$bp")
wait_until 30 test -e "$WORK/base.ready"
sleep 0.5
WSB_BASE=$(pss_tree "$bp")
wait "$bp" 2>/dev/null
echo "== wsbench base: $((WSB_BASE / 1024)) MiB (PSS) over its $((P + 1)) processes with one connection each ($((WSB_BASE / (P + 1))) kB each)"

echo "== 1,000 connections echo on the empty servers"
echo_run echo-empty
srv_kb() { status_kb VmRSS "${SERVER_PIDS[@]}"; }
SRV_BASE=$(srv_kb); SRV_PSS0=$(pss_kb "${SERVER_PIDS[@]}")
echo "== server base: RSS $((SRV_BASE / 1024)) MiB over $S processes ($((SRV_BASE / S)) kB each, after serving the echo run), PSS $((SRV_PSS0 / 1024)) MiB ($((SRV_PSS0 / S)) kB each)"

# ---------------------------------------------------------------- 5. the ramp
SLAB0=$(mem_kb Slab); SUNR0=$(mem_kb SUnreclaim); AVAIL0=$(mem_kb MemAvailable)
TCP0=$(sock TCP inuse); TCPMEM0=$(sock TCP mem); CT0=$(ct_count); KS0=$(kstats); slab_snap "$WORK/slab0"
echo "== before: $KS0"
echo "== before: Slab $(gib "$SLAB0") (unreclaimable $(gib "$SUNR0")), TCP inuse $TCP0, TCP mem $TCPMEM0 pages, conntrack $CT0, MemAvailable $(gib "$AVAIL0")"
echo "== ramping $N connections (wsbench -m idle -p $P)"
# 64 connects+upgrades in flight per process (wsbench's default is 512): with 56 processes that
# is 3,584 at once, which the servers on one CPU take without their accept queues overflowing or
# handshakes waiting past --connect-timeout (512 each: 310 of a million timed out, docs/million.md).
IDLE_ARGS=(-m idle -c "$N" -p "$P" --max-pending 64 -d 3600 --ramp-timeout 600 --json "$WORK/idle.json" "$URL")
echo "\$ ${PIN_CLI[*]} wsbench ${IDLE_ARGS[*]}"
T0=$(date +%s.%N)
exec {ifd}< <("${PIN_CLI[@]}" "$WSBENCH" "${IDLE_ARGS[@]}" 2> "$WORK/idle.err"; echo "EXIT $?")
IDLE_PID=""
# wsbench's parent process (its forked workers carry the same command line).
for _ in $(seq 1 50); do
    IDLE_PID=$(pgrep -f -- "--json $WORK/idle.json" | while read -r p; do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = wsbench ] && [ "$(cat "/proc/$(awk '{print $4}' "/proc/$p/stat")/comm" 2>/dev/null)" != wsbench ] && echo "$p"; done | head -n1)
    [ -n "$IDLE_PID" ] && break
    sleep 0.1
done
[ -n "$IDLE_PID" ] && BENCH_PIDS+=("$IDLE_PID")
UP=""; T1=""
while IFS= read -r -t 900 -u "$ifd" line; do
    echo "$line" >> "$WORK/idle.out"
    case "$line" in
        ALL_UPGRADED*) UP=${line#*n=}; T1=$(date +%s.%N); break ;;
        UPGRADE_INCOMPLETE*) UP=${line#*upgraded=}; UP=${UP%% *}; T1=$(date +%s.%N); break ;;
        EXIT\ *) echo "$SCRIPT: wsbench ended during the ramp (${line}):" >&2; tail -n 20 "$WORK/idle.err" >&2; exit 1 ;;
    esac
done
[ -z "$T1" ] && { echo "$SCRIPT: no ALL_UPGRADED within 900 s" >&2; exit 1; }
RAMP_S=$(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.1f", b - a}')
RATE=$(awk -v n="$UP" -v s="$RAMP_S" 'BEGIN {printf "%.0f", n / s}')
echo "== $UP of $N upgraded in $RAMP_S s: $RATE upgrades/s (from wsbench's start, forks included)"
# Peak upgrades/s from wsbench's progress lines (about one a second on stderr:
# "wsbench [  12.3s] ramp-up | open X/N ...").
PEAK=$(sed -n 's/^wsbench \[ *\([0-9.]*\)s\].*open \([0-9]*\)\/.*/\1 \2/p' "$WORK/idle.err" 2>/dev/null \
    | awk 'BEGIN {t = 0; o = 0} $1 > t { r = ($2 - o) / ($1 - t); if (r > m) m = r } { t = $1; o = $2 } END {printf "%.0f", m}')
sleep 2   # let the reactors publish and the kernel settle
SRV_UP=$(srv_kb); SRV_PSS1=$(pss_kb "${SERVER_PIDS[@]}"); WSB_UP=$(pss_tree "$IDLE_PID")
SLAB1=$(mem_kb Slab); SUNR1=$(mem_kb SUnreclaim); AVAIL1=$(mem_kb MemAvailable)
TCP1=$(sock TCP inuse); TCPMEM1=$(sock TCP mem); CT1=$(ct_count); slab_snap "$WORK/slab1"
read -r H_SUM H_MIN H_MAX H_MISS <<< "$(scrape_sum wsecho_connections_open)"
read -r U_SUM _ _ _ <<< "$(scrape_sum wsecho_upgrades_total)"
echo "== held: open connections summed over $S metrics ports = $H_SUM (per process $H_MIN..$H_MAX, $H_MISS not answering); upgrades so far $U_SUM"
echo "   server RSS $((SRV_UP / 1024)) MiB (+$(( (SRV_UP - SRV_BASE) / 1024 )) MiB): $(per_conn "$SRV_UP" "$SRV_BASE" "$UP") B per connection; PSS $(per_conn "$SRV_PSS1" "$SRV_PSS0" "$UP") B"
echo "   kernel counters: $(kstats)"
echo "   wsbench PSS $((WSB_UP / 1024)) MiB (+$(( (WSB_UP - WSB_BASE) / 1024 )) MiB over its base): $(per_conn "$WSB_UP" "$WSB_BASE" "$UP") B per connection"
echo "   Slab $(gib "$SLAB1") (+$(gib $((SLAB1 - SLAB0)))): $(per_conn "$SLAB1" "$SLAB0" "$UP") B per connection (both ends), unreclaimable +$(gib $((SUNR1 - SUNR0)))"
echo "   slab caches that grew most (/proc/slabinfo; both ends of every connection):"
slab_diff "$WORK/slab0" "$WORK/slab1" "$UP" | tee "$WORK/slab.diff"
echo "   TCP inuse $TCP0 -> $TCP1, TCP mem $TCPMEM0 -> $TCPMEM1 pages, conntrack $CT0 -> $CT1"
echo "   MemAvailable $(gib "$AVAIL0") -> $(gib "$AVAIL1"): $(per_conn "$AVAIL0" "$AVAIL1" "$UP") B per connection in all"

# ---------------------------------------------------------------- 6, 7. echo with the N open
echo "== 1,000 more connections echo while the $UP are held"
echo_run echo-full
sleep 1
read -r A_SUM A_MIN A_MAX _ <<< "$(scrape_sum wsecho_connections_open)"
echo "== after the echo run: open summed over the metrics ports = $A_SUM (per process $A_MIN..$A_MAX)"
# Hold the rest of --hold.
LEFT=$(awk -v t1="$T1" -v h="$HOLD" -v now="$(date +%s.%N)" 'BEGIN {l = t1 + h - now; printf "%d", (l > 0 ? l + 1 : 0)}')
[ "$LEFT" -gt 0 ] && { echo "== holding $LEFT s more (>= $HOLD s in all)"; sleep "$LEFT"; }
HELD_S=$(awk -v t1="$T1" -v now="$(date +%s.%N)" 'BEGIN {printf "%.0f", now - t1}')
read -r F_SUM F_MIN F_MAX _ <<< "$(scrape_sum wsecho_connections_open)"
echo "== held $HELD_S s; open summed over the metrics ports = $F_SUM (per process $F_MIN..$F_MAX)"

# ---------------------------------------------------------------- 8. SIGTERM and drain
echo "== SIGTERM to all $S servers"
TS=$(date +%s.%N)
for p in "${SERVER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
LAST=""
for _ in $(seq 1 $(( (SHUTDOWN + 30) * 20 ))); do
    left=0
    for p in "${SERVER_PIDS[@]}"; do alive "$p" && left=$((left + 1)); done
    [ "$left" = 0 ] && { LAST=$(date +%s.%N); break; }
    sleep 0.05
done
DRAIN=$( [ -n "$LAST" ] && awk -v a="$TS" -v b="$LAST" 'BEGIN {printf "%.1f", b - a}' || echo "> $((SHUTDOWN + 30))")
BADEXIT=0
for p in "${SERVER_PIDS[@]}"; do wait "$p"; st=$?; [ "$st" = 0 ] || BADEXIT=$((BADEXIT + 1)); done
SERVER_PIDS=()
CLOSING=$(cat "$WORK"/server-*.log | sed -n 's/.*shutting down: closing \([0-9]*\) connections.*/\1/p' | awk '{s += $1} END {print s + 0}')
DROPPED=$(cat "$WORK"/server-*.log | sed -n 's/.*shutdown timeout: dropping \([0-9]*\) connections.*/\1/p' | awk '{s += $1} END {print s + 0}')
echo "   every server exited $( [ "$BADEXIT" = 0 ] && echo "with status 0" || echo "- $BADEXIT with a non-zero status") in $DRAIN s; they sent 1001 to $CLOSING connections, dropped $DROPPED at the timeout"
# wsbench: its connections end as the servers close them; wait (30 s at most) until the
# kernel's TCP count is back near where it was, then stop wsbench and read what it counted.
tcp_low() { [ "$(sock TCP inuse)" -lt $((TCP0 + 2000)) ]; }
wait_until 30 tcp_low || echo "   (TCP sockets still in use: $(sock TCP inuse))"
[ -n "$IDLE_PID" ] && kill -INT "$IDLE_PID" 2>/dev/null
while IFS= read -r -t 120 -u "$ifd" line; do
    echo "$line" >> "$WORK/idle.out"
    case "$line" in EXIT\ *) break ;; esac
done
exec {ifd}<&-
C1001=$(grep -o '"1001": [0-9]*' "$WORK/idle.json" 2>/dev/null | head -n1 | sed 's/.*: //')
HSF=$(jnum "$WORK/idle.json" handshake_failures); CF=$(jnum "$WORK/idle.json" connect_failures)
LOST=$(jnum "$WORK/idle.json" lost_connections)
echo "   wsbench: close 1001 received on ${C1001:-0} connections; connect failures ${CF:-?}, handshake failures ${HSF:-?}, connections ended (all by the server's close) ${LOST:-?}"
grep -o '"lost_by_reason": {[^}]*}' "$WORK/idle.json" 2>/dev/null | sed 's/^/   /'

# ---------------------------------------------------------------- report
E0="$WORK/echo-empty"; E1="$WORK/echo-full"
p99_0=$(jlat "$E0.json" latency_us p99); p99_1=$(jlat "$E1.json" latency_us p99)
RATIO=$(awk -v a="$p99_1" -v b="$p99_0" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
echo
echo "== result: $UP connections ($N asked), $S wsecho processes, wsbench --processes $P"
printf '%-44s %s\n' "ramp: upgrades/s (mean over $RAMP_S s; peak 1 s)" "$RATE; $PEAK"
printf '%-44s %s\n' "wsbench handshake p50 / p99 / max (ms)" "$(fmt "$(jlat "$WORK/idle.json" handshake_us p50)" '%.0f' | awk '{printf "%.1f", $1 / 1000}') / $(fmt "$(jlat "$WORK/idle.json" handshake_us p99)" '%.0f' | awk '{printf "%.1f", $1 / 1000}') / $(fmt "$(jlat "$WORK/idle.json" handshake_us max)" '%.0f' | awk '{printf "%.1f", $1 / 1000}')"
printf '%-44s %s\n' "server RSS: base ($S processes) / held" "$((SRV_BASE / 1024)) MiB ($((SRV_BASE / S)) kB each; PSS $((SRV_PSS0 / S)) kB each) / $((SRV_UP / 1024)) MiB"
printf '%-44s %s\n' "server RSS per connection (delta / N)" "$(per_conn "$SRV_UP" "$SRV_BASE" "$UP") B (target <= 128)"
printf '%-44s %s\n' "wsbench PSS per connection (delta / N)" "$(per_conn "$WSB_UP" "$WSB_BASE" "$UP") B (base $((WSB_BASE / 1024)) MiB over $((P + 1)) processes)"
printf '%-44s %s\n' "kernel Slab per connection (both ends)" "$(per_conn "$SLAB1" "$SLAB0" "$UP") B (+$(gib $((SLAB1 - SLAB0))))"
printf '%-44s %s\n' "MemAvailable drop per connection (all)" "$(per_conn "$AVAIL0" "$AVAIL1" "$UP") B"
printf '%-44s %s\n' "sockstat TCP inuse / mem pages" "$TCP0 -> $TCP1 / $TCPMEM0 -> $TCPMEM1"
printf '%-44s %s\n' "metrics: open summed over $S ports" "held $H_SUM, during echo $(cat "$WORK/echo-full.open" 2>/dev/null), before SIGTERM $F_SUM"
printf '%-44s %-26s %s\n' "1,000 x 20 B, 1 in flight, ${ECHO} s" "empty" "with $UP held"
printf '%-44s %-26s %s\n' "  load average (1 min) at the start" "$(cat "$E0.load" 2>/dev/null)" "$(cat "$E1.load" 2>/dev/null)"
printf '%-44s %-26s %s\n' "  msg/s" "$(fmt "$(jnum "$E0.json" msgs_per_sec)" %.0f)" "$(fmt "$(jnum "$E1.json" msgs_per_sec)" %.0f)"
printf '%-44s %-26s %s\n' "  p50 / p99 / p99.9 (us)" "$(fmt "$(jlat "$E0.json" latency_us p50)" %.0f) / $(fmt "$p99_0" %.0f) / $(fmt "$(jlat "$E0.json" latency_us p99_9)" %.0f)" \
    "$(fmt "$(jlat "$E1.json" latency_us p50)" %.0f) / $(fmt "$p99_1" %.0f) / $(fmt "$(jlat "$E1.json" latency_us p99_9)" %.0f)  (p99 ratio $RATIO, target <= 2)"
printf '%-44s %s\n' "  echo errors (mismatches + fidelity)" "$(( $(jnum "$E0.json" echo_mismatches) + $(jnum "$E0.json" fidelity_errors) )) / $(( $(jnum "$E1.json" echo_mismatches) + $(jnum "$E1.json" fidelity_errors) ))"
printf '%-44s %s\n' "kernel counters at the end" "$(kstats) (before: $KS0)"
printf '%-44s %s\n' "SIGTERM: drain (signal to last exit)" "$DRAIN s (--shutdown-timeout $SHUTDOWN); 1001 sent $CLOSING, received ${C1001:-0}; dropped $DROPPED"

OK=1
[ "$UP" = "$N" ] || OK=0
[ "${CF:-1}" = 0 ] && [ "${HSF:-1}" = 0 ] || OK=0
[ "$H_SUM" = "$UP" ] && [ "$F_SUM" = "$UP" ] || OK=0
[ "${C1001:-0}" = "$UP" ] && [ "$CLOSING" = "$UP" ] && [ "$DROPPED" = 0 ] && [ "$BADEXIT" = 0 ] || OK=0
awk -v s="$(per_conn "$SRV_UP" "$SRV_BASE" "$UP")" 'BEGIN {exit !(s <= 128)}' || OK=0
awk -v r="$RATIO" 'BEGIN {exit !(r != "-" && r <= 2)}' || OK=0
echo "== $( [ "$OK" = 1 ] && echo "every target met" || echo "some target missed (see above)")"
[ "$OK" = 1 ]
