# shellcheck shell=bash
# The steps the scripts in scripts/ share: help text, the cargo target directory and builds,
# missing Debian packages, ports on 127.0.0.1, starting and stopping processes, exit traps, CPU
# pinning, reading /metrics, wsbench's JSON and /proc. Source it after setting ROOT (the
# repository root) and SCRIPT (the calling script's name, for messages). Functions only: nothing
# runs when sourced, and nothing here reads the calling script's variables other than ROOT,
# SCRIPT and (fetch_metrics without an argument) PORT.
#
# Not here, on purpose: scripts/sysctl-check.sh, ci-deps.sh and fuzz.sh stand alone (the first is
# meant to be copied to a host and run there), and what only one script does stays in it.

# ---------------------------------------------------------------- help
# usage: the calling script's header comment (from line 2 to the first line that is not a
# comment), without the leading '# '.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

# ---------------------------------------------------------------- target directory, builds
# target_dir: the absolute cargo target directory, as cargo reports it (CARGO_TARGET_DIR or a
# cargo config's build.target-dir); without cargo, CARGO_TARGET_DIR (relative to ROOT) or
# ROOT/target.
target_dir() {
    local t
    t=$( (cd "$ROOT" && cargo metadata --format-version 1 --no-deps) 2>/dev/null \
        | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p') || t=""
    if [ -z "$t" ]; then
        t="${CARGO_TARGET_DIR:-$ROOT/target}"
        case "$t" in /*) ;; *) t="$ROOT/$t" ;; esac
    fi
    echo "$t"
}

# cargo_build ARGS...: prints "== building (cargo build ARGS)" (BUILD_SHOWN, when set, replaces
# "cargo build ARGS"), runs `cargo build ARGS --quiet` in ROOT, and exits with one line when it
# fails. Variables set for the call (RUSTFLAGS=... cargo_build ...) reach cargo.
cargo_build() {
    echo "== building (${BUILD_SHOWN:-cargo build $*})"
    (cd "$ROOT" && cargo build "$@" --quiet) || { echo "$SCRIPT: build failed" >&2; exit 1; }
}

# build_bins: cargo build --release --bins, then WSECHO and WSBENCH point at the binaries.
# shellcheck disable=SC2034  # set for the calling script
build_bins() {
    cargo_build --release --bins
    WSECHO="$(target_dir)/release/wsecho"
    WSBENCH="$(target_dir)/release/wsbench"
}

# ---------------------------------------------------------------- Debian packages
# can_apt: apt-get is there and may run (as root, or through sudo).
can_apt() {
    command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; }
}

# apt_install PACKAGE...: apt-get install, quietly, as root or through `sudo -n`; on a failure,
# apt-get update (once per script) and install again. Returns apt-get's status (1 when can_apt
# fails).
APT_UPDATED=0
apt_install() {
    local sudo=()
    can_apt || return 1
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 && return 0
    [ "$APT_UPDATED" = 1 ] && return 1
    APT_UPDATED=1
    timeout 300 "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
    timeout 600 "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}

# need_cmd COMMAND PACKAGE: installs PACKAGE (apt_install) when COMMAND is missing; exits with one
# clear line when it is still missing.
need_cmd() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if can_apt; then
        echo "== installing $pkg (apt-get)"
        apt_install "$pkg" || true
    fi
    command -v "$cmd" >/dev/null 2>&1 || { echo "$SCRIPT: $cmd is missing (apt-get install $pkg)" >&2; exit 1; }
}

# ---------------------------------------------------------------- ports on 127.0.0.1
# port_busy PORT: true when something accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port PORT: the first port from PORT up that port_busy finds free.
free_port() {
    local p=$1
    while port_busy "$p"; do p=$((p + 1)); done
    echo "$p"
}

# wait_port PORT [PID...]: waits (5 s, checking every 0.05 s) until 127.0.0.1:PORT accepts
# connections. Returns 0 then, 1 as soon as one of the PIDs is no longer running, 2 after 5 s.
wait_port() {
    local port=$1 p _
    shift
    for _ in $(seq 1 100); do
        for p in "$@"; do alive "$p" || return 1; done
        port_busy "$port" && return 0
        sleep 0.05
    done
    return 2
}

# ---------------------------------------------------------------- processes
# alive PID: the process is running (a child that exited stays a zombie until reaped, and a
# zombie answers kill -0).
alive() {
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# wait_until SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds (returns 0) or SECONDS
# have passed (returns 1).
wait_until() {
    local ticks=$(($1 * 10)) _
    shift
    for _ in $(seq 1 "$ticks"); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

# stop_pids SIGNAL SECONDS PID...: sends SIGNAL (TERM, INT) to each process, waits up to SECONDS
# (checking every 0.1 s) for all of them to exit, then SIGKILLs what is left and reaps them all.
stop_pids() {
    local sig=$1 ticks p _ left
    ticks=$(awk -v s="$2" 'BEGIN { printf "%d", s * 10 }')
    shift 2
    for p in "$@"; do kill "-$sig" "$p" 2>/dev/null || true; done
    for _ in $(seq 1 "$ticks"); do
        left=0
        for p in "$@"; do alive "$p" && left=1; done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for p in "$@"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    return 0
}

# on_exit FUNCTION: FUNCTION runs when the script exits; SIGINT and SIGTERM print
# "$SCRIPT: interrupted" and exit with status 130 (which runs FUNCTION too).
on_exit() {
    # shellcheck disable=SC2064 # the function's name, expanded now
    trap "$1" EXIT
    trap 'echo "$SCRIPT: interrupted" >&2; exit 130' INT TERM
}

# raise_nofile: the open-file soft limit up to the hard limit.
raise_nofile() { ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; }

# pin_cpus: PIN_SRV and PIN_CLI, command prefixes that pin the server to CPU 0 and the load
# generator to CPU 1 (taskset); both empty on a single CPU.
# shellcheck disable=SC2034  # set for the calling script
pin_cpus() {
    if [ "$(nproc)" -ge 2 ]; then PIN_SRV=(taskset -c 0); PIN_CLI=(taskset -c 1); else PIN_SRV=(); PIN_CLI=(); fi
}

# status_kb FIELD PID...: a /proc/PID/status field in kB (VmRSS, VmHWM), summed over the
# processes (0 for one that is gone).
status_kb() {
    local f=$1 s=0 p v
    shift
    for p in "$@"; do
        v=$(awk -v k="$f:" '$1 == k {print $2}' "/proc/$p/status" 2>/dev/null) || v=0
        s=$((s + ${v:-0}))
    done
    echo "$s"
}

# ---------------------------------------------------------------- HTTP and /metrics
# http_get PORT PATH: the response (head and body) to GET PATH on 127.0.0.1:PORT, or nothing
# after 5 s (bash's /dev/tcp: no curl needed).
http_get() {
    # shellcheck disable=SC2016 # $0 and $1 are the inner shell's arguments
    timeout --foreground 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$1" >&3
        cat <&3' "$1" "$2" 2>/dev/null || true
}

# fetch_metrics [PORT]: the server's /metrics text (curl, else http_get, head included); PORT
# defaults to $PORT. To call it from `bash -c` (a perf workload): export -f fetch_metrics http_get.
fetch_metrics() {
    local port=${1:-$PORT}
    if command -v curl >/dev/null 2>&1; then
        curl -s --max-time 5 "http://127.0.0.1:$port/metrics"
    else
        http_get "$port" /metrics
    fi
}

# ---------------------------------------------------------------- numbers, wsbench's JSON
# fmt VALUE FORMAT: VALUE through printf FORMAT (awk), '-' when VALUE is empty.
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "") print "-"; else printf f, v }'; }
# jnum FILE KEY: a top-level number of wsbench's JSON (one key per line); empty when missing.
jnum() { sed -n "s/^  \"$2\": \([0-9.]*\),\{0,1\}$/\1/p" "$1" 2>/dev/null | head -n1 || true; }
# jlat FILE KEY FIELD: a field of a latency object (latency_us, handshake_us).
jlat() { grep "^  \"$2\": " "$1" 2>/dev/null | grep -o "\"$3\": [0-9.]*" | head -n1 | sed 's/.*: //' || true; }
