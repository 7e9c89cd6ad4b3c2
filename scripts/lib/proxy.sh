# shellcheck shell=bash
# nginx or HAProxy in front of wsecho, from the repository's own configuration files
# (scripts/nginx/nginx.conf, scripts/haproxy/haproxy.cfg) on ports of the caller's choosing: for
# scripts that need "the same proxy, somewhere else" (scripts/autobahn.sh --via, scripts/proxy-bench.sh).
# Source it after scripts/lib/common.sh. scripts/nginx/run.sh and scripts/haproxy/run.sh run the
# files as they are, on their fixed ports.
#
#   proxy_need KIND                  nginx | haproxy: installs it with apt-get when missing
#   proxy_conf KIND DIR PORT STATUS_PORT BACKEND_PORT...
#                                    writes DIR/nginx.conf or DIR/haproxy.cfg: the repository's file
#                                    with the client-facing listener on 127.0.0.1:PORT, the status
#                                    page (nginx stub_status / HAProxy stats) on STATUS_PORT and the
#                                    server lines replaced by one per BACKEND_PORT (127.0.0.1),
#                                    every other line unchanged. PROXY_WORKERS=N (optional): N
#                                    nginx workers (worker_processes) or N HAProxy threads
#                                    (nbthread) instead of one per CPU.
#   proxy_start KIND DIR PORT STATUS_PORT BACKEND_PORT...
#                                    proxy_conf, then starts the proxy in the foreground of a
#                                    background job (PROXY_PIN: an optional command prefix, e.g.
#                                    (taskset -c 0)), logs in DIR; returns once GET /healthz through
#                                    it answers 200 (the backends must be up). Sets PROXY_PID (nginx's
#                                    master, or haproxy) and PROXY_KIND. Returns 1 with the log's
#                                    last lines on stderr when it does not come up within 15 s.
#   proxy_pids                       the proxy's processes (nginx: master and workers)
#   proxy_stop                       SIGTERM (both: fast shutdown), SIGKILL after 5 s
#   proxy_version KIND               one line
#
# DIR must be reachable by nginx's workers (as root they run as nobody): a `mktemp -d` under /tmp
# with mode 755.

proxy_need() {
    case $1 in
        nginx|haproxy) need_cmd "$1" "$1" ;;
        *) echo "$SCRIPT: unknown proxy '$1' (nginx or haproxy)" >&2; return 2 ;;
    esac
}

proxy_version() {
    case $1 in
        nginx) nginx -v 2>&1 | sed 's/^nginx version: //' ;;
        haproxy) haproxy -v 2>/dev/null | head -n1 | sed 's/ - https.*//' ;;
    esac
}

proxy_conf() {
    local kind=$1 dir=$2 port=$3 status=$4
    shift 4
    local servers="" p n=0
    case $kind in
        nginx)
            for p in "$@"; do servers+="        server 127.0.0.1:$p max_fails=3 fail_timeout=5s;\n"; done
            awk -v port="$port" -v status="$status" -v servers="$servers" -v workers="${PROXY_WORKERS:-}" '
                /^worker_processes / && workers != "" { print "worker_processes " workers ";"; next }
                /^ *listen 127\.0\.0\.1:9180/ { sub(/127\.0\.0\.1:9180/, "127.0.0.1:" port) }
                /^ *listen 127\.0\.0\.1:9188/ { sub(/127\.0\.0\.1:9188/, "127.0.0.1:" status) }
                /^ *server 127\.0\.0\.1:[0-9]+ / { if (!done) { printf "%s", servers; done = 1 } next }
                { print }' "$ROOT/scripts/nginx/nginx.conf" > "$dir/nginx.conf"
            ;;
        haproxy)
            for p in "$@"; do n=$((n + 1)); servers+="    server ws$n 127.0.0.1:$p check\n"; done
            awk -v port="$port" -v status="$status" -v servers="$servers" -v threads="${PROXY_WORKERS:-}" '
                /^global/ { print; if (threads != "") print "    nbthread " threads; next }
                /^ *bind 127\.0\.0\.1:9000/ { sub(/127\.0\.0\.1:9000/, "127.0.0.1:" port) }
                /^ *bind 127\.0\.0\.1:8404/ { sub(/127\.0\.0\.1:8404/, "127.0.0.1:" status) }
                /^ *server ws[0-9]+ / { if (!done) { printf "%s", servers; done = 1 } next }
                { print }' "$ROOT/scripts/haproxy/haproxy.cfg" > "$dir/haproxy.cfg"
            ;;
        *) echo "$SCRIPT: unknown proxy '$kind'" >&2; return 2 ;;
    esac
    # A configuration file edited so that these lines no longer match must not pass unnoticed.
    local file=$dir/nginx.conf
    [ "$kind" = haproxy ] && file=$dir/haproxy.cfg
    if ! grep -Eq "127\.0\.0\.1:$port([ ;]|$)" "$file" || ! grep -Eq "127\.0\.0\.1:$1([ ;]|$)" "$file"; then
        echo "$SCRIPT: could not set the ports in a copy of the $kind configuration (listen/bind or server lines changed?)" >&2
        return 2
    fi
}

PROXY_PID=""
PROXY_KIND=""
[ "${PROXY_PIN+set}" = set ] || PROXY_PIN=()
proxy_start() {
    local kind=$1 dir=$2 port=$3 status=$4 hard
    proxy_conf "$@" || return 2
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] && hard=1048576
    PROXY_KIND=$kind
    case $kind in
        nginx)
            nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g "pid $dir/nginx.pid; worker_rlimit_nofile $hard;" \
                > "$dir/nginx-t.log" 2>&1 ||
                { echo "$SCRIPT: nginx -t failed:" >&2; tail -n 5 "$dir/nginx-t.log" "$dir/error.log" >&2 2>/dev/null; return 1; }
            "${PROXY_PIN[@]}" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
                -g "daemon off; pid $dir/nginx.pid; worker_rlimit_nofile $hard; error_log $dir/error.log notice;" \
                > "$dir/nginx.out" 2>&1 &
            PROXY_PID=$!
            ;;
        haproxy)
            # maxconn: HAProxy raises its fd limit to about 2 x maxconn and refuses to start when
            # it cannot: stay under the hard limit.
            local maxconn=$(((hard - 200) / 2))
            [ "$maxconn" -gt 20000 ] && maxconn=20000
            WSECHO_LB_MAXCONN=$maxconn WSECHO_LB_LOG=stderr WSECHO_LB_SOCK=$dir/haproxy.sock \
                "${PROXY_PIN[@]}" haproxy -db -f "$dir/haproxy.cfg" > "$dir/haproxy.log" 2>&1 &
            PROXY_PID=$!
            ;;
    esac
    # shellcheck disable=SC2317 # called through wait_until
    _proxy_healthy() { alive "$PROXY_PID" && http_get "$port" /healthz | head -n1 | grep -q ' 200'; }
    if ! wait_until 15 _proxy_healthy; then
        echo "$SCRIPT: $kind did not come up on 127.0.0.1:$port (GET /healthz through it); its log:" >&2
        tail -n 5 "$dir"/*.log >&2 2>/dev/null
        proxy_stop
        return 1
    fi
}

proxy_pids() {
    [ -n "$PROXY_PID" ] || return 0
    echo "$PROXY_PID"
    [ "$PROXY_KIND" = nginx ] && pgrep -P "$PROXY_PID"
    return 0
}

proxy_stop() {
    [ -n "$PROXY_PID" ] || return 0
    # nginx: SIGTERM to the master is its fast shutdown (it ends its workers); HAProxy: the same.
    stop_pids TERM 5 "$PROXY_PID"
    PROXY_PID=""
}
