#!/usr/bin/env bash
# What a proxy hop costs per message: wsbench straight to wsecho (A) and through nginx or HAProxy
# in front of the same wsecho (B), in interleaved rounds A B A B ..., medians.
#
#   scripts/proxy-bench.sh [--proxies "nginx haproxy"] [--rounds N] [--connections N] [--size BYTES]
#                          [--pipelines "1 16"] [--duration SECS] [--warmup SECS] [--proxy-cpu 0|1]
#                          [--out DIR]
#
# One wsecho (--threads 1) on 127.0.0.1 pinned to CPU 0; the proxy from the repository's
# configuration (scripts/nginx/nginx.conf, scripts/haproxy/haproxy.cfg through scripts/lib/proxy.sh:
# its listener on a free port, this wsecho its one backend) with ONE worker (nginx
# worker_processes 1) or ONE thread (HAProxy nbthread 1), pinned to CPU 0 beside wsecho (the
# proxy on the server's host; --proxy-cpu 1 puts it beside the client instead); wsbench (one
# loop) pinned to CPU 1. With fewer than 2 CPUs nothing is pinned. For each proxy and each
# pipeline depth K: ROUNDS x (A then B), each `wsbench -c N -k K -s BYTES --warmup W -d SECS`,
# every echo and echoed frame checked (a failed run is reported and fails the script).
# Sampled when wsbench prints MEASURE_START and MEASURE_END: utime+stime (/proc/PID/stat) of
# wsecho and of the proxy (nginx: master and worker), divided by the messages echoed in between:
# CPU microseconds per message, as scripts/bench.sh does for the server; also, over the same
# window, wsecho's + the proxy's CPU as % of one core ("ours") and how busy CPUs 0 and 1 were in
# all (/proc/stat: other processes included, which on a shared machine explains a slow round). Then one fidelity check
# per proxy: 50 connections x 16 KiB in 4 fragments, 4 in flight, 2 s (each echoed frame must
# be the frame sent: a proxy that re-framed would fail it).
#
# Prints every run, then per proxy and K: msg/s median [min-max] direct and proxied, the ratio of
# the medians, p50/p99 latency medians, wsecho's and the proxy's CPU per message (medians), and
# the load average at the start and end (the machine may be shared). Defaults: nginx and
# haproxy, 5 rounds, 1000 connections, 64 B, pipelines 1 and 16, 5 s measured after 1 s of
# warm-up. Everything it starts is stopped on exit (Ctrl-C included); each wsbench run is bounded
# (timeout). Exit status 0 when every run was clean, 1 otherwise, 2 for a usage error. The proxies
# are installed with apt-get when missing. Results and logs: --out DIR (default
# target/proxy-bench), runs.tsv there.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="proxy-bench.sh"
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# shellcheck source=scripts/lib/proxy.sh
. "$ROOT/scripts/lib/proxy.sh"

PROXIES="nginx haproxy"
ROUNDS=5
CONNS=1000
SIZE=64
PIPES="1 16"
DUR=5
WARM=1
PROXY_CPU=0
OUT=""
while [ $# -gt 0 ]; do
    case $1 in
        --proxies) PROXIES=${2:?}; shift ;;
        --rounds) ROUNDS=${2:?}; shift ;;
        --connections|-c) CONNS=${2:?}; shift ;;
        --size|-s) SIZE=${2:?}; shift ;;
        --pipelines) PIPES=${2:?}; shift ;;
        --duration|-d) DUR=${2:?}; shift ;;
        --warmup) WARM=${2:?}; shift ;;
        --proxy-cpu) PROXY_CPU=${2:?}; shift ;;
        --out) OUT=${2:?}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "$SCRIPT: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$ROUNDS$CONNS${PIPES// /}$PROXY_CPU" in *[!0-9]*) echo "$SCRIPT: --rounds, --connections, --pipelines, --proxy-cpu take whole numbers" >&2; exit 2 ;; esac
for p in $PROXIES; do case $p in nginx|haproxy) ;; *) echo "$SCRIPT: unknown proxy '$p' (nginx, haproxy)" >&2; exit 2 ;; esac; done

SRV_PID=""
WORK=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    proxy_stop
    [ -n "$SRV_PID" ] && stop_pids TERM 5 "$SRV_PID"
    [ -n "$WORK" ] && rm -rf "$WORK"
}
on_exit cleanup

for p in $PROXIES; do proxy_need "$p"; done
build_bins
raise_nofile
OUT=${OUT:-$(target_dir)/proxy-bench}
mkdir -p "$OUT" || { echo "$SCRIPT: cannot create $OUT" >&2; exit 1; }
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT/runs.tsv" "$OUT/commands.txt" "$OUT/wsbench.err" "$OUT"/wsbench.*.out "$OUT"/fidelity.*.out
WORK=$(mktemp -d /tmp/wsecho-proxy-bench.XXXXXX)
chmod 755 "$WORK" # nginx's workers (nobody, when run as root) reach their temp directories
HZ=$(getconf CLK_TCK)
LIMIT=$(awk -v d="$DUR" -v w="$WARM" 'BEGIN { printf "%d", d + w + 60 }') # ramp-up, close: well within 60 s

if [ "$(nproc)" -ge 2 ]; then
    PIN_SRV=(taskset -c 0); PIN_CLI=(taskset -c 1); PROXY_PIN=(taskset -c "$PROXY_CPU")
    PINNING="wsecho on CPU 0, the proxy on CPU $PROXY_CPU, wsbench on CPU 1 (taskset)"
else
    PIN_SRV=(); PIN_CLI=(); PROXY_PIN=()
    PINNING="one CPU: nothing pinned"
fi
export PROXY_WORKERS=1
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

echo "== $(date -u '+%F %T') UTC; $(nproc) CPUs; load average $(loadavg); $PINNING"
echo "== wsecho $(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null); $(for p in $PROXIES; do printf '%s; ' "$(proxy_version "$p")"; done)1 proxy worker/thread"
echo "== $ROUNDS rounds of (direct, proxied) per proxy and pipeline depth: wsbench -c $CONNS -s $SIZE -k K --warmup $WARM -d $DUR"

PORT=$(free_port 19651)
"${PIN_SRV[@]}" "$WSECHO" --listen "127.0.0.1:$PORT" --threads 1 > "$OUT/wsecho.log" 2>&1 &
SRV_PID=$!
wait_port "$PORT" "$SRV_PID" || { echo "$SCRIPT: wsecho did not start on :$PORT:" >&2; tail -n 5 "$OUT/wsecho.log" >&2; exit 1; }

# ticks PID...: utime+stime summed over the processes (clock ticks, all threads).
ticks() {
    local s=0 p l f
    for p in "$@"; do
        { read -r l <"/proc/$p/stat"; } 2>/dev/null || continue
        l=${l##*) }
        read -r -a f <<<"$l"
        s=$((s + f[11] + f[12]))
    done
    echo "$s"
}
# busy CPU: "BUSY0 BUSY1 TOTAL_TICKS" of CPUs 0 and 1 (all but idle and iowait), from /proc/stat.
busy() {
    awk '$1 == "cpu0" || $1 == "cpu1" { b[$1] = $2 + $3 + $4 + $7 + $8 + $9 } $1 == "cpu" { t = $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }
         END { printf "%d %d %d\n", b["cpu0"], b["cpu1"], t }' /proc/stat
}
pct() { awk -v t="$1" -v e="$2" -v hz="$HZ" 'BEGIN { if (e > 0) printf "%.0f", 100 * t / hz / e; else print "-" }'; }
us_per_msg() { awk -v t="$1" -v m="$2" -v hz="$HZ" 'BEGIN { if (m > 0) printf "%.2f", t * 1e6 / hz / m; else print "-" }'; }

printf 'proxy\tk\tround\tpath\tmsgs_per_sec\tp50_us\tp99_us\twsecho_us_per_msg\tproxy_us_per_msg\twsecho_proxy_pct\tcpu0_pct\tcpu1_pct\tload1\tstatus\n' > "$OUT/runs.tsv"
FAILED=0
# run PROXY K ROUND PATH TARGET_PORT [extra wsbench args]
run() {
    local proxy=$1 k=$2 round=$3 path=$4 port=$5 json="$WORK/run.json" line fd rc="" m0="" m1="" s0="" s1="" p0="" p1="" c0="" c1="" t0="" t1=""
    shift 5
    local args=(-q -c "$CONNS" -s "$SIZE" -k "$k" --warmup "$WARM" -d "$DUR" "$@" --json "$json")
    local pp
    read -r -a pp <<<"$(proxy_pids | tr '\n' ' ')"
    rm -f "$json"
    echo "${PIN_CLI[*]} $WSBENCH ${args[*]} ws://127.0.0.1:$port/" >> "$OUT/commands.txt"
    exec {fd}< <(timeout --signal=INT --kill-after=10 "$LIMIT" "${PIN_CLI[@]}" "$WSBENCH" "${args[@]}" \
        "ws://127.0.0.1:$port/" 2>>"$OUT/wsbench.err"; echo "EXIT $?")
    while IFS= read -r -u "$fd" line; do
        case $line in
            MEASURE_START*) s0=$(ticks "$SRV_PID"); p0=$(ticks "${pp[@]}"); m0=${line#*msgs=}; c0=$(busy); t0=$(date +%s.%N) ;;
            MEASURE_END*) s1=$(ticks "$SRV_PID"); p1=$(ticks "${pp[@]}"); m1=${line#*msgs=}; c1=$(busy); t1=$(date +%s.%N) ;;
            EXIT\ *) rc=${line#EXIT }; break ;;
        esac
        echo "$line" >> "$OUT/wsbench.$proxy.k$k.r$round.$path.out"
    done
    exec {fd}<&-
    local mps p50 p99 su="-" pu="-" status=ok ours="-" b0="-" b1="-"
    mps=$(fmt "$(jnum "$json" msgs_per_sec)" %.0f)
    p50=$(fmt "$(jlat "$json" latency_us p50)" %.1f)
    p99=$(fmt "$(jlat "$json" latency_us p99)" %.1f)
    if [ -n "$m1" ] && [ -n "$m0" ] && [ "$m1" -gt "$m0" ]; then
        su=$(us_per_msg $((s1 - s0)) $((m1 - m0)))
        [ "$path" = proxied ] && pu=$(us_per_msg $((p1 - p0)) $((m1 - m0)))
        # Shares of one core over the window: wsecho + proxy (ours on CPU 0 when the proxy is
        # there), and how busy CPUs 0 and 1 were in all (other processes included).
        local el a0 a1 z0 z1 _t
        el=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
        ours=$(pct $((s1 - s0 + p1 - p0)) "$el")
        read -r a0 a1 _t <<<"$c0"; read -r z0 z1 _t <<<"$c1"
        b0=$(pct $((z0 - a0)) "$el"); b1=$(pct $((z1 - a1)) "$el")
    fi
    if [ "$rc" != 0 ]; then
        status="FAIL(exit ${rc:-?}: mismatches $(jnum "$json" echo_mismatches), fidelity $(jnum "$json" fidelity_errors), lost $(jnum "$json" lost_connections))"
        FAILED=1
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$proxy" "$k" "$round" "$path" "$mps" "$p50" "$p99" "$su" "$pu" "$ours" "$b0" "$b1" \
        "$(cut -d' ' -f1 /proc/loadavg)" "$status" | tee -a "$OUT/runs.tsv" | sed 's/^/   /'
}

declare -A LOAD0 LOAD1 FID
for proxy in $PROXIES; do
    echo
    echo "== $proxy"
    PDIR="$WORK/$proxy"
    mkdir -p "$PDIR" && chmod 755 "$PDIR"
    LPORT=$(free_port $((PORT + 1)))
    SPORT=$(free_port $((LPORT + 1)))
    proxy_start "$proxy" "$PDIR" "$LPORT" "$SPORT" "$PORT" || exit 1
    echo "   $(proxy_version "$proxy") on :$LPORT (pids $(proxy_pids | tr '\n' ' ')) -> wsecho :$PORT (pid $SRV_PID)"
    echo "   proxy	k	round	path	msg/s	p50us	p99us	wsecho us/msg	proxy us/msg	ws+px%	cpu0%	cpu1%	load1	status"
    LOAD0[$proxy]=$(loadavg)
    for k in $PIPES; do
        for r in $(seq 1 "$ROUNDS"); do
            run "$proxy" "$k" "$r" direct "$PORT"
            run "$proxy" "$k" "$r" proxied "$LPORT"
        done
    done
    LOAD1[$proxy]=$(loadavg)
    # Frame fidelity through the proxy: every echoed frame must be the frame sent.
    if timeout --signal=INT --kill-after=10 60 "${PIN_CLI[@]}" "$WSBENCH" -q -c 50 -k 4 -s 16KiB --fragments 4 -d 2 \
        --json "$WORK/fid.json" "ws://127.0.0.1:$LPORT/" > "$OUT/fidelity.$proxy.out" 2>&1; then
        FID[$proxy]="ok: $(jnum "$WORK/fid.json" messages) messages of 16 KiB in 4 frames, 0 mismatches, 0 fidelity errors"
    else
        FID[$proxy]="FAIL: mismatches $(jnum "$WORK/fid.json" echo_mismatches), fidelity errors $(jnum "$WORK/fid.json" fidelity_errors) (see $OUT/fidelity.$proxy.out)"
        FAILED=1
    fi
    cp "$PDIR"/*.conf "$PDIR"/*.cfg "$OUT/" 2>/dev/null
    proxy_stop
done

echo
echo "== medians of $ROUNDS rounds [min-max]; CPU = utime+stime per message echoed in the measured window"
python3 - "$OUT/runs.tsv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def num(v):
    try:
        return float(v)
    except ValueError:
        return None
def col(rs, f):
    return [x for x in (num(r[f]) for r in rs) if x is not None]
def med(v, f="%.0f"):
    return f % statistics.median(v) if v else "-"
def rng(v):
    return "[%.0f-%.0f]" % (min(v), max(v)) if v else ""
print("%-8s %3s  %-24s %-24s %6s  %-15s %-15s %-13s %-12s %s" % ("proxy", "k", "direct msg/s", "proxied msg/s", "ratio",
      "p50 us dir/prx", "p99 us dir/prx", "wsecho us/msg", "proxy us/msg", "cpu0%,cpu1% dir/prx"))
seen = []
for r in rows:
    if (r["proxy"], r["k"]) not in seen:
        seen.append((r["proxy"], r["k"]))
for p, k in seen:
    d = [r for r in rows if r["proxy"] == p and r["k"] == k and r["path"] == "direct"]
    x = [r for r in rows if r["proxy"] == p and r["k"] == k and r["path"] == "proxied"]
    dm, xm = col(d, "msgs_per_sec"), col(x, "msgs_per_sec")
    ratio = "%.2f" % (statistics.median(xm) / statistics.median(dm)) if dm and xm else "-"
    print("%-8s %3s  %-24s %-24s %6s  %-15s %-15s %-13s %-12s %s" % (p, k,
          med(dm) + " " + rng(dm), med(xm) + " " + rng(xm), ratio,
          med(col(d, "p50_us")) + "/" + med(col(x, "p50_us")),
          med(col(d, "p99_us")) + "/" + med(col(x, "p99_us")),
          med(col(d, "wsecho_us_per_msg"), "%.2f") + "/" + med(col(x, "wsecho_us_per_msg"), "%.2f"),
          med(col(x, "proxy_us_per_msg"), "%.2f"),
          "%s,%s/%s,%s" % (med(col(d, "cpu0_pct")), med(col(d, "cpu1_pct")), med(col(x, "cpu0_pct")), med(col(x, "cpu1_pct")))))
EOF
for proxy in $PROXIES; do
    echo "   $proxy: load average ${LOAD0[$proxy]} at the start, ${LOAD1[$proxy]} at the end; fidelity through it: ${FID[$proxy]}"
done
echo "   runs: $OUT/runs.tsv; commands: $OUT/commands.txt"
[ "$FAILED" = 0 ] && { echo "proxy-bench: OK"; exit 0; }
echo "proxy-bench: FAIL (a run was not clean, see above)"
exit 1
