#!/usr/bin/env bash
# Two wsecho instances behind nginx on this machine: load through the proxy, then a graceful
# reload of nginx while connections are open.
#
#   scripts/nginx/run.sh [--connections N] [--duration SECS] [--keep]
#
# 1. installs nginx with apt-get when it is missing (Debian; needs root),
# 2. builds the release binaries (wsecho, wsbench),
# 3. starts wsecho on 127.0.0.1:9201 and 127.0.0.1:9202 (--ping-interval 20 --idle-timeout 60)
#    and nginx on 127.0.0.1:9180 (scripts/nginx/nginx.conf; stub_status on
#    http://127.0.0.1:9188/nginx_status),
# 4. runs wsbench through ws://127.0.0.1:9180/, every echo and every echoed frame checked:
#      a. N connections x 64 B, 1 in flight, for SECS (and the same straight to one backend,
#         for the ratio),
#      b. 50 connections x 16 KiB, 4 in flight, for 5 s,
# 5. reload while connections are open: 300 idle connections and an echo run (200 x 1 KiB,
#    4 in flight, 12 s) through the proxy, `nginx -s reload` (SIGHUP) 4 s into it, new
#    connections after it; then it waits for nginx's worker_shutdown_timeout (30 s) and shows
#    what the idle clients held by the old worker see then,
# 6. prints each backend's wsecho_upgrades_total, nginx's stub_status, nginx's memory per
#    proxied idle connection, and stops everything it started (on any exit, Ctrl-C included).
#
# Defaults: 1000 connections, 10 s. N is lowered to fit the open-file limit (nginx holds two
# sockets per connection). Everything after the build is bounded: the run is killed after
# duration + 150 s. Exit status 0 when every load ran clean (no mismatch, fidelity error or lost
# connection), no connection was lost across the reload before the shutdown timeout, and both
# backends got WebSocket upgrades. WSBENCH=PATH uses that wsbench instead of building one;
# --keep leaves the logs in the run directory.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
ROOT=$repo
SCRIPT=run.sh
# shellcheck source=scripts/lib/common.sh
. "$repo/scripts/lib/common.sh"

conns=1000
duration=10
keep=0
while [ $# -gt 0 ]; do
    case $1 in
        --connections|-c) conns=${2:?}; shift 2 ;;
        --duration|-d) duration=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case $conns$duration in *[!0-9]*) echo "run.sh: --connections and --duration take whole numbers" >&2; exit 2 ;; esac

cfg=$repo/scripts/nginx/nginx.conf
backends=(9201 9202)
lb_port=9180
status_port=9188
shutdown_timeout=$(sed -n 's/^worker_shutdown_timeout \([0-9]*\)s;.*/\1/p' "$cfg")
idle_n=300
reload_at=4

log() { printf '[nginx/run.sh] %s\n' "$*"; }
die() { printf '[nginx/run.sh] ERROR: %s\n' "$*" >&2; exit 1; }

# ---- 1. nginx ---------------------------------------------------------------------------------
if ! command -v nginx >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || die "nginx is not installed; run: sudo apt-get install nginx"
    log "installing nginx (apt-get)"
    apt_install nginx || die "could not install nginx (apt-get install nginx)"
fi
log "$(nginx -v 2>&1)"

# ---- 2. build ---------------------------------------------------------------------------------
cargo_build --release --bin wsecho
wsecho=$(target_dir)/release/wsecho
if [ -n "${WSBENCH:-}" ]; then
    wsbench=$WSBENCH
else
    cargo_build --release --bin wsbench
    wsbench=$(target_dir)/release/wsbench
fi

# ---- run directory, cleanup, deadline ---------------------------------------------------------
run=$(mktemp -d /tmp/wsecho-nginx.XXXXXX)
chmod 755 "$run" # nginx's workers (nobody) may need to reach its temp directories
pids=()
master=
watchdog=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null
    # nginx: SIGTERM is its fast shutdown (old workers included); wait for the master.
    [ -n "$master" ] && stop_pids TERM 5 "$master"
    [ ${#pids[@]} -gt 0 ] && stop_pids TERM 5 "${pids[@]}"
    wait 2>/dev/null || true
    if [ "$keep" = 1 ] || [ $rc -ne 0 ]; then
        log "logs kept in $run"
    else
        rm -rf "$run"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
deadline=$((duration + shutdown_timeout + 150))
(
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    sleep "$deadline" & s=$!
    wait "$s"
    echo "[nginx/run.sh] deadline of ${deadline}s reached, stopping" >&2
    kill -TERM $$
) &
watchdog=$!

# ---- helpers ----------------------------------------------------------------------------------
metric() { # PORT NAME: the sum of NAME's samples in that backend's /metrics
    http_get "$1" /metrics | tr -d '\r' |
        awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF; f = 1 } END { print f ? s : "n/a" }'
}
wait_for() { # SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2; shift 2
    wait_until "$secs" "$@" || die "timed out after ${secs}s waiting for $what"
}
workers() { # the master's worker processes (old ones included), "pid" per line
    pgrep -P "$master" 2>/dev/null | sort -n || true
}
stub() { http_get "$status_port" /nginx_status | tr -d '\r' | sed -n '/^Active/,$p' | tr '\n' ' ' | tr -s ' '; }
ok=1
# bench NAME ARGS...: wsbench through the proxy (BENCH_PORT overrides the port), quiet, JSON in
# $run/NAME.json; prints its summary lines; a failure clears ok.
bench() {
    local name=$1 rc port=${BENCH_PORT:-$lb_port}
    shift
    log "wsbench $* ws://127.0.0.1:$port/"
    set +e
    timeout --foreground 120 "$wsbench" "$@" --json "$run/$name.json" -q "ws://127.0.0.1:$port/" >"$run/$name.out" 2>&1
    rc=$?
    set -e
    grep -E '^  (connections|messages|msg/s|MB/s|latency|echo mismatches|fidelity|lost)' "$run/$name.out" |
        sed 's/^/[nginx\/run.sh] /' || true
    if [ $rc -ne 0 ]; then
        ok=0
        log "FAIL: wsbench exited $rc (see $run/$name.out)"
    fi
}
jkey() { sed -n "s/.*\"$2\": \({[^}]*}\).*/\1/p" "$1" 2>/dev/null | head -1; }

for p in "$lb_port" "$status_port" "${backends[@]}"; do
    port_busy "$p" && die "port $p on 127.0.0.1 is already in use"
done

# ---- fit the open-file limit ------------------------------------------------------------------
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
raise_nofile
fit=$(((hard - 200) / 2))
[ "$fit" -gt 8000 ] && fit=8000 # worker_connections 16384 = 8192 clients in one worker
if [ "$conns" -gt "$fit" ]; then
    log "lowering --connections from $conns to $fit: nginx holds 2 sockets per connection (limit $hard, worker_connections 16384)"
    conns=$fit
fi

# ---- 3. backends and proxy --------------------------------------------------------------------
for p in "${backends[@]}"; do
    RUST_LOG=info "$wsecho" --listen "127.0.0.1:$p" --ping-interval 20 --idle-timeout 60 --shutdown-timeout 2 \
        >"$run/wsecho-$p.log" 2>&1 &
    pids+=($!)
done
healthy() { http_get "$1" /healthz | head -1 | grep -q ' 200'; }
for p in "${backends[@]}"; do
    wait_for 10 "wsecho on :$p (/healthz; see $run/wsecho-$p.log)" healthy "$p"
done
log "wsecho up on :${backends[0]} and :${backends[1]} (pids ${pids[*]})"

nginx -t -q -p "$run" -c "$cfg" -e "$run/error.log" -g "pid $run/nginx.pid; worker_rlimit_nofile $hard;" ||
    die "nginx -t failed (see $run/error.log)"
nginx -p "$run" -c "$cfg" -e "$run/error.log" -g "daemon off; pid $run/nginx.pid; worker_rlimit_nofile $hard; error_log $run/error.log notice;" \
    >"$run/nginx.out" 2>&1 &
master=$!
wait_for 10 "nginx on :$lb_port (see $run/error.log)" healthy "$lb_port"
log "nginx up on :$lb_port (master $master, workers $(workers | tr '\n' ' ')); /healthz through it: 200"

# ---- 4. load ----------------------------------------------------------------------------------
echo
bench small --connections "$conns" --duration "$duration" --size 64
# The same load straight to one backend, for a ratio measured in the same minute (this machine's
# figures move with whatever else runs on it).
log "the same load straight to wsecho :${backends[0]}, for comparison:"
BENCH_PORT=${backends[0]} bench direct --connections "$conns" --duration "$duration" --size 64
a=$(jnum "$run/small.json" msgs_per_sec)
b=$(jnum "$run/direct.json" msgs_per_sec)
log "through nginx $(fmt "$a" '%.0f') msg/s, direct $(fmt "$b" '%.0f') msg/s: $(awk -v a="${a:-0}" -v b="${b:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }') x"
bench large --connections 50 --duration 5 --size 16KiB --pipeline 4

# ---- 5. reload with connections open ----------------------------------------------------------
echo
log "reload: $idle_n idle connections + an echo run (200 x 1 KiB, 4 in flight, 12 s) through the proxy, SIGHUP ${reload_at} s in"
rm -f "$run/idle.ready"
# shellcheck disable=SC2046 # one argument per worker pid
rss_before=$(status_kb VmRSS $(workers))
"$wsbench" --mode idle --connections "$idle_n" --duration $((reload_at + shutdown_timeout + 10)) --ready-file "$run/idle.ready" \
    --json "$run/idle.json" -q "ws://127.0.0.1:$lb_port/" >"$run/idle.out" 2>&1 &
idle_pid=$!
wait_for 30 "the $idle_n idle connections to upgrade (see $run/idle.out)" test -e "$run/idle.ready"
sleep 0.5
# shellcheck disable=SC2046 # one argument per worker pid
rss_after=$(status_kb VmRSS $(workers))
log "nginx workers' RSS: $rss_before kB before, $rss_after kB with $idle_n more idle WebSockets: $(fmt "$(((rss_after - rss_before) * 1024 / idle_n))" '%d') B per proxied idle connection"
old=$(workers | tr '\n' ' ')
"$wsbench" --connections 200 --duration 12 --size 1KiB --pipeline 4 --json "$run/reload.json" -q \
    "ws://127.0.0.1:$lb_port/" >"$run/reload.out" 2>&1 &
echo_pid=$!
sleep "$reload_at"
log "before reload: $(stub)"
t_reload=$(date +%s)
kill -HUP "$master" # what `nginx -s reload` and `systemctl reload nginx` send
wait_until 10 bash -c "[ \"\$(pgrep -P $master | wc -l)\" -gt $(echo "$old" | wc -w) ]" || true
sleep 1
all=$(workers | tr '\n' ' ')
new=$(for w in $all; do case " $old " in *" $w "*) ;; *) printf '%s ' "$w" ;; esac; done)
log "after reload:  old workers $old(still relaying), new workers $new"
# New connections after the reload go to the new workers.
bench after-reload --connections 50 --duration 2 --size 64
set +e; wait "$echo_pid"; erc=$?; set -e
grep -E '^  (connections|messages|echo mismatches|fidelity|lost)' "$run/reload.out" | sed 's/^/[nginx\/run.sh] (across the reload) /' || true
if [ "$erc" = 0 ]; then
    log "echo run across the reload: clean (exit 0): the old worker kept relaying the connections it held"
else
    ok=0
    log "FAIL: the echo run across the reload exited $erc (see $run/reload.out)"
fi
log "idle clients: still open after the echo run: $(stub)"
log "waiting for worker_shutdown_timeout (${shutdown_timeout} s after the reload) to end the old workers..."
gone() { for w in $old; do alive "$w" && return 1; done; return 0; }
wait_until $((shutdown_timeout + 15)) gone || log "old workers still there after $((shutdown_timeout + 15)) s"
t_gone=$(date +%s)
log "old workers gone $((t_gone - t_reload)) s after the reload"
set +e; wait "$idle_pid"; set -e
lost=$(jkey "$run/idle.json" lost_by_reason)
codes=$(jkey "$run/idle.json" closes_by_code)
log "the $idle_n idle clients held by the old worker: lost by reason $lost, close frames received $codes"
log "  (nginx closes them without a WebSocket close frame: a browser reports code 1006 and the client reconnects)"
# nginx's own account of the reload (notice level): one line per worker and event, counted.
sed -n 's/.*\[notice\] [0-9#]*: \(signal 1 (SIGHUP) received\|reconfiguring\|gracefully shutting down\|exiting\).*/\1/p' \
    "$run/error.log" | sort | uniq -c | sed 's/^ */[nginx\/run.sh]   error.log: /' || true

# ---- 6. per-backend evidence ------------------------------------------------------------------
echo
log "backend                 upgrades_total   (:${backends[0]} includes the direct comparison run)"
both=1
for p in "${backends[@]}"; do
    upg=$(metric "$p" wsecho_upgrades_total)
    printf '[nginx/run.sh]   wsecho 127.0.0.1:%s  %14s\n' "$p" "$upg"
    case $upg in '' | n/a | 0) both=0 ;; esac
done
log "nginx stub_status: $(stub)"

if [ "$both" = 1 ] && [ "$ok" = 1 ]; then
    log "OK: load through nginx ran clean, nothing was lost across the reload, both backends served WebSocket upgrades"
else
    [ "$both" = 1 ] || log "FAIL: a backend served no WebSocket upgrade"
    [ "$ok" = 1 ] || log "FAIL: a load run failed"
    exit 1
fi
