#!/usr/bin/env bash
# wsbench from several load generators, merged: the flow of deploy/kubernetes/wsbench-job.yaml on
# one machine, with N wsbench processes on different loopback source addresses instead of pods.
#
#   scripts/scale-out.sh [--shards "2 3 4"] [--connections N] [--pipeline K] [--size BYTES]
#                        [--duration SECS] [--warmup SECS] [--ci] [--keep]
#
# 1. builds the release binaries,
# 2. starts one wsecho on a free port from 9301, pinned to CPU 0 (taskset),
# 3. runs the whole load from one wsbench process (the reference), then, for each N of --shards,
#    N wsbench processes at once, each with N-th of the connections, its own source address
#    (127.0.0.11, .12, ...), the same --start-at (now + 2 s + 1 s per 10,000 connections: ramp-up
#    first, then all measure the same window) and its own --json; every wsbench is pinned to CPU 1,
#    so the N shards have the reference's CPU between them,
# 4. wsbench merge of the N files (--json merged.json), and checks: every run exits 0, the merged
#    counts are the shards' sums (messages, upgraded = --connections), the merged histogram holds
#    one sample per message, the windows overlap for at least 90% of their union,
# 5. prints, per N, each shard's row (connections, messages, msg/s, p50, p99, and "late": how
#    long after --start-at + warm-up its window began) next to the merged row and the reference,
#    then the merged table exactly as wsbench merge prints it.
#
# Defaults: --shards "2 3 4", 2000 connections, 4 in flight each, 64-byte messages, 2 s warm-up,
# 10 s measured. --ci: --shards 2, 200 connections, 2 s, no warm-up (CI runs it). Exit status 0
# when every check held. --keep leaves the run directory (the JSON files and logs).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$repo
SCRIPT=scale-out.sh
# shellcheck source=scripts/lib/common.sh
. "$repo/scripts/lib/common.sh"

shards="2 3 4"
conns=2000
pipeline=4
size=64
duration=10
warmup=2
keep=0
while [ $# -gt 0 ]; do
    case $1 in
        --shards) shards=${2:?}; shift 2 ;;
        --connections|-c) conns=${2:?}; shift 2 ;;
        --pipeline|-k) pipeline=${2:?}; shift 2 ;;
        --size|-s) size=${2:?}; shift 2 ;;
        --duration|-d) duration=${2:?}; shift 2 ;;
        --warmup) warmup=${2:?}; shift 2 ;;
        --ci) shards=2; conns=200; duration=2; warmup=0; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "$SCRIPT: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$conns$pipeline$duration$warmup${shards// /}" in
    *[!0-9]*|"") echo "$SCRIPT: --shards, --connections, --pipeline, --duration and --warmup take whole numbers" >&2; exit 2 ;;
esac
for n in $shards; do
    if [ "$n" -lt 1 ] || [ "$n" -gt 50 ] || [ "$n" -gt "$conns" ]; then
        echo "$SCRIPT: $n shards: 1 to 50, at most --connections" >&2
        exit 2
    fi
done

log() { printf '[scale-out] %s\n' "$*"; }
failures=0
check() { # CONDITION-STATUS WHAT
    if [ "$1" = 0 ]; then log "  ok    $2"; else log "  FAIL  $2"; failures=$((failures + 1)); fi
}

build_bins
raise_nofile
pin_cpus
run=$(mktemp -d /tmp/wsecho-scale-out.XXXXXX)
srv_pid=
cleanup() {
    [ -z "$srv_pid" ] || stop_pids TERM 5 "$srv_pid"
    if [ "$keep" = 1 ]; then log "kept $run"; else rm -rf "$run"; fi
}
on_exit cleanup

port=$(free_port 9301)
"${PIN_SRV[@]}" "$WSECHO" --listen "127.0.0.1:$port" 2>"$run/wsecho.log" &
srv_pid=$!
wait_port "$port" "$srv_pid" || { log "wsecho did not start:"; tail -5 "$run/wsecho.log"; exit 1; }
log "wsecho on 127.0.0.1:$port (${PIN_SRV[*]:-unpinned}); wsbench ${PIN_CLI[*]:-unpinned}; $conns connections x $pipeline in flight x $size B, warm-up $warmup s, $duration s measured"

# A run's limit: ramp-up and start wait, warm-up, window, close-out, margin.
limit=$((duration + warmup + 60 + conns / 5000))
common=(-q -k "$pipeline" -s "$size" -d "$duration" --warmup "$warmup")
url="ws://127.0.0.1:$port/"

# One row of the summary: NAME JSON [START_AT_NS]
row() {
    local name=$1 j=$2 at=${3:-} late="-"
    if [ -n "$at" ]; then
        late=$(awk -v s="$(jnum "$j" window_start_unix_ns)" -v a="$at" -v w="$warmup" \
            'BEGIN { printf "%.1f ms", (s - a) / 1e6 - w * 1000 }')
    fi
    printf '  %-14s %7s %10s %10s %9s %9s %10s\n' "$name" "$(jnum "$j" connections)" "$(jnum "$j" messages)" \
        "$(fmt "$(jnum "$j" msgs_per_sec)" %.0f)" "$(fmt "$(jlat "$j" latency_us p50)" %.1f)" \
        "$(fmt "$(jlat "$j" latency_us p99)" %.1f)" "$late"
}
header() { printf '  %-14s %7s %10s %10s %9s %9s %10s\n' run conns messages msg/s "p50 us" "p99 us" "late"; }

log "reference: one wsbench process, $conns connections"
set +e
timeout "$limit" "${PIN_CLI[@]}" "$WSBENCH" "${common[@]}" -c "$conns" --json "$run/one.json" "$url" >"$run/one.out" 2>&1
rc=$?
set -e
check "$rc" "reference run exits 0 (exit $rc)"

for n in $shards; do
    log "$n shards, $conns connections between them, --start-at"
    dir=$run/n$n
    mkdir -p "$dir"
    lead_ms=$((2000 + conns / 10))
    at_ns=$(( ($(date +%s%N) / 1000000 + lead_ms) * 1000000 ))
    at=$(awk -v t="$at_ns" 'BEGIN { printf "%.3f", t / 1e9 }')
    pids=()
    for i in $(seq 1 "$n"); do
        c=$(( conns / n + (i <= conns % n ? 1 : 0) ))
        timeout "$limit" "${PIN_CLI[@]}" "$WSBENCH" "${common[@]}" -c "$c" --source-ips "127.0.0.$((10 + i))" \
            --start-at "$at" --json "$dir/shard-$i.json" "$url" >"$dir/shard-$i.out" 2>&1 &
        pids+=($!)
    done
    for i in $(seq 1 "$n"); do
        set +e
        wait "${pids[$((i - 1))]}"
        rc=$?
        set -e
        check "$rc" "shard $i of $n exits 0 (exit $rc)"
        [ "$rc" = 0 ] || tail -3 "$dir/shard-$i.out"
    done
    set +e
    "$WSBENCH" merge --json "$dir/merged.json" "$dir"/shard-*.json >"$dir/merged.out" 2>"$dir/merged.err"
    rc=$?
    set -e
    check "$rc" "wsbench merge of $n shards exits 0 (exit $rc)"
    [ "$rc" = 0 ] || { cat "$dir/merged.err"; continue; }
    sum() { local k=$1 s=0 f; for f in "$dir"/shard-*.json; do s=$((s + $(jnum "$f" "$k"))); done; echo "$s"; }
    m=$dir/merged.json
    [ "$(jnum "$m" messages)" = "$(sum messages)" ]; check $? "merged messages $(jnum "$m" messages) = the shards' sum"
    [ "$(jnum "$m" upgraded)" = "$conns" ] && [ "$(sum upgraded)" = "$conns" ]; check $? "merged upgraded $(jnum "$m" upgraded) = $conns"
    [ "$(jlat "$m" latency_us count)" = "$(jnum "$m" messages)" ]; check $? "merged histogram: one sample per message"
    overlap=$(sed -n 's/.*all measuring together \([0-9.]*\) s.*/\1/p' "$dir/merged.err")
    union=$(sed -n "s/.*windows' union \([0-9.]*\) s.*/\1/p" "$dir/merged.err")
    awk -v o="${overlap:-0}" -v u="${union:-1}" 'BEGIN { exit !(o >= 0.9 * u) }'
    check $? "windows overlap ${overlap:-?} s of their union ${union:-?} s (>= 90%)"
    echo
    header
    for i in $(seq 1 "$n"); do row "shard $i" "$dir/shard-$i.json" "$at_ns"; done
    row "merged ($n)" "$m" "$at_ns"
    row "one process" "$run/one.json"
    echo
    sed 's/^/  | /' "$dir/merged.out"
    sed 's/^/  | /' "$dir/merged.err"
    echo
done

if [ "$failures" = 0 ]; then
    echo "scale-out: OK (shards: $shards; $conns connections)"
else
    echo "scale-out: FAIL ($failures failed checks)"
    exit 1
fi
