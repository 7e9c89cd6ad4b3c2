#!/usr/bin/env bash
# Compares this host's kernel and process limits with what many WebSocket connections need.
#
#   scripts/sysctl-check.sh [--connections N] [--strict]
#
#   --connections N   connections to plan for on this host (default 1000000)
#   --strict          exit 1 when anything is below the recommendation (default: exit 0)
#
# Read-only: it reads /proc/sys and the shell's limits and never changes anything. For the
# flagged values it prints the lines to put in /etc/sysctl.d/90-wsecho.conf (applied with
# `sysctl --system`); deciding to apply them is yours.
set -euo pipefail

conns=1000000
strict=0
while [ $# -gt 0 ]; do
    case $1 in
        --connections|-c) conns=${2:?--connections needs a number}; shift 2 ;;
        --connections=*) conns=${1#*=}; shift ;;
        --strict) strict=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "sysctl-check: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
case $conns in '' | *[!0-9]*) echo "sysctl-check: --connections takes a number" >&2; exit 2 ;; esac

# sysctl NAME: the value with tabs squeezed to spaces, or "" when the key does not exist.
sysctl_get() {
    local f="/proc/sys/${1//.//}"
    if [ -r "$f" ]; then tr -s '\t ' ' ' <"$f" || true; fi
}
field() { echo "$1" | awk -v i="$2" '{ print $i }'; }
max() { if [ "$1" -gt "$2" ]; then echo "$1"; else echo "$2"; fi; }
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }

page=$(getconf PAGESIZE 2>/dev/null || echo 4096)
ram_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
ram_pages=$((ram_kib * 1024 / page))

low=0
fix=()
# row NAME CURRENT RECOMMENDED VERDICT WHY [VALUE-FOR-SYSCTL.D]
row() {
    printf '%-32s %-24s %-24s %-5s %s\n' "$1" "$2" "$3" "$4" "$5"
    if [ "$4" = LOW ] || [ "$4" = HIGH ]; then
        low=$((low + 1))
        case $1 in *.*) fix+=("$1 = ${6:-$3}") ;; esac
    fi
}
verdict() { if [ "$1" -ge "$2" ]; then echo OK; else echo LOW; fi; }

echo "Host limits for about $conns WebSocket connections (RAM $((ram_kib / 1024)) MiB, page $page B)"
echo
printf '%-32s %-24s %-24s %-5s %s\n' SETTING CURRENT RECOMMENDED "" WHY
printf '%-32s %-24s %-24s %-5s %s\n' ------- ------- ----------- "" ---

# Accept queue. wsecho and wsecho.socket ask for a backlog of 4096; the kernel silently caps it
# at somaxconn, and a reconnect storm (after a deploy or a proxy restart) overflows a short one.
v=$(sysctl_get net.core.somaxconn)
row net.core.somaxconn "$v" 4096 "$(verdict "$v" 4096)" \
    "caps every listen() backlog; wsecho asks for 4096 (reconnect storms)"
v=$(sysctl_get net.ipv4.tcp_max_syn_backlog)
[ -n "$v" ] && row net.ipv4.tcp_max_syn_backlog "$v" 4096 "$(verdict "$v" 4096)" \
    "half-open (SYN_RECV) connections kept per listener during bursts"

# Open files. One fd per connection; a process can never raise its limit past fs.nr_open, and
# the unit's LimitNOFILE=1048576 fails to apply below that.
want=$(max 1048576 $((conns + 4096)))
v=$(sysctl_get fs.nr_open)
row fs.nr_open "$v" "$want" "$(verdict "$v" "$want")" \
    "ceiling for any process's RLIMIT_NOFILE (unit: LimitNOFILE=1048576)"
want=$(max 2097152 $((conns * 2)))
v=$(sysctl_get fs.file-max)
row fs.file-max "$v" "$want" "$(verdict "$v" "$want")" \
    "open files on the whole host (a proxy holds 2 per connection)"

# Ephemeral ports: one per outgoing connection per (source IP, destination) pair. A server
# does not use them; HAProxy (LB -> backend) and load generators do.
v=$(sysctl_get net.ipv4.ip_local_port_range)
lo=$(field "$v" 1) hi=$(field "$v" 2)
n=$((hi - lo + 1))
row net.ipv4.ip_local_port_range "$v ($n)" "10000 65535 (55536)" "$(verdict "$n" 55536)" \
    "ports per (src IP, dst) pair for proxies/clients; start above your listen ports" "10000 65535"

# TCP memory, in pages, for all sockets together: above the 2nd value the kernel shrinks
# buffers (pressure), at the 3rd it drops data. Plan ~4 KiB in flight per busy connection,
# but never more than a quarter of RAM for the maximum.
v=$(sysctl_get net.ipv4.tcp_mem)
cur_max=$(field "$v" 3)
rmax=$(min $((conns * 3 / 2)) $((ram_pages / 4)))
rmax=$(max "$rmax" 1)
rec="$((rmax / 2)) $((rmax * 2 / 3)) $rmax"
row net.ipv4.tcp_mem "$v" "$rec" "$(verdict "$cur_max" "$rmax")" \
    "pages for all TCP buffers: min / pressure / max ($((rmax * page >> 20)) MiB max)"
[ $((conns * 3 / 2)) -gt $((ram_pages / 4)) ] &&
    row "  (memory)" "$((ram_kib / 1024)) MiB RAM" ">= $((conns * 3 * page * 2 >> 20)) MiB" LOW \
        "a quarter of RAM is too little for $conns busy connections at ~4 KiB each"

# Per-socket buffers in bytes: min / default / max. The default is what each connection may
# use before autotuning, multiplied by every connection: keep min and default small.
for k in rmem wmem; do
    v=$(sysctl_get "net.ipv4.tcp_$k")
    dmin=$(field "$v" 1) ddef=$(field "$v" 2)
    case $k in rmem) rdef=131072 rmax=6291456 ;; wmem) rdef=16384 rmax=4194304 ;; esac
    ok=OK
    { [ "$dmin" -gt 4096 ] || [ "$ddef" -gt $((rdef * 2)) ]; } && ok=HIGH
    row "net.ipv4.tcp_$k" "$v" "4096 $rdef $rmax" "$ok" \
        "bytes per socket min/default/max; HIGH if min > 4096 or default > $((rdef * 2))"
done

# Connection tracking: when a stateful firewall loads nf_conntrack, every connection takes an
# entry; a full table drops new connections ("nf_conntrack: table full").
v=$(sysctl_get net.netfilter.nf_conntrack_max)
if [ -n "$v" ]; then
    want=$((conns * 2))
    row net.netfilter.nf_conntrack_max "$v" "$want" "$(verdict "$v" "$want")" \
        "tracked connections (2 per client on a proxy host); or exempt the port (NOTRACK)"
else
    row net.netfilter.nf_conntrack_max "(not loaded)" "-" OK "no conntrack module: nothing to size"
fi

# This shell's RLIMIT_NOFILE (what a wsecho started from here inherits). wsecho raises its soft
# limit to the hard one itself; under systemd, LimitNOFILE= sets both.
soft=$(ulimit -Sn) hard=$(ulimit -Hn)
[ "$soft" = unlimited ] && soft=$((1 << 62))
[ "$hard" = unlimited ] && hard=$((1 << 62))
want=$((conns + 1024))
row "ulimit -n (soft)" "$(ulimit -Sn)" "(raised by wsecho)" OK \
    "wsecho raises its soft limit to the hard limit at start"
row "ulimit -n (hard)" "$(ulimit -Hn)" "$want" "$(verdict "$hard" "$want")" \
    "fds per process; below N: --reuse-port processes, or LimitNOFILE/limits.conf"

echo
if [ "$hard" -lt "$want" ]; then
    procs=$(((conns + hard - 1025) / (hard - 1024)))
    echo "One process can hold about $((hard - 1024)) connections here: for $conns run ~$procs wsecho"
    echo "processes with --reuse-port on the same address (or raise the hard limit: LimitNOFILE=)."
fi
if [ ${#fix[@]} -gt 0 ]; then
    echo "Suggested /etc/sysctl.d/90-wsecho.conf (not applied; then: sysctl --system):"
    printf '    %s\n' "${fix[@]}"
fi
echo "$low setting(s) flagged (LOW or HIGH)."
[ "$strict" = 1 ] && [ "$low" -gt 0 ] && exit 1
exit 0
