#!/usr/bin/env bash
# The container image (Containerfile): build it, check it, run it and push real traffic through it.
#
#   scripts/container.sh [--image NAME] [--connections N] [--duration SECS] [--runtime NAME]
#                        [--check-around] [--keep]
#
# 1. installs podman (and `file`) with apt-get when missing (Debian; needs root),
# 2. builds the static binary: RUSTFLAGS='-C target-feature=+crt-static' cargo build --release
#    --target x86_64-unknown-linux-gnu --bin wsecho, and checks that `file` and `ldd` call it
#    static; builds wsbench (the client) as usual,
# 3. builds the image from a context holding only that binary and a one-line /etc/passwd,
# 4. checks the image: its file list (podman save, then each layer's tar listing: /wsecho and
#    /etc/passwd, nothing else) and its config (User 65532:65532, StopSignal SIGTERM,
#    ExposedPorts 9001/tcp, Entrypoint /wsecho --listen 0.0.0.0:9001),
# 5. runs it: `podman run` with the settings a pod would have (--read-only, --cap-drop=ALL,
#    no-new-privileges) and --network=none, trying in turn the default runtime as is, with the
#    open-file/process limits this host allows, without cgroups, and runc (installed with apt-get
#    when missing); each attempt gets one line. When none starts, it says so in one line and
#    checks around it: the same static binary runs outside the container with the image's
#    entrypoint arguments, as UID 65532 (setpriv), in a network namespace of its own (unshare),
# 6. talks to the server inside that network namespace (nsenter; all traffic stays on that
#    namespace's loopback): GET /healthz, one text message echoed by a Python client (stdlib
#    only), wsbench echo (N connections x 1 KiB, 4 in flight, every frame checked), /metrics,
# 7. stops it with connections open (podman stop -t 15, or SIGTERM): every idle wsbench client
#    must get close 1001 and the server must exit 0 within the shutdown timeout.
#
# Defaults: image localhost/wsecho:latest (kept afterwards), 200 connections, 5 s. --runtime
# tries only that runtime; --check-around skips podman run. --keep leaves the logs in the run
# directory. WSBENCH=PATH uses that wsbench instead of building one. Exit status 0 when every
# check passed (in either mode; the mode is printed).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$repo
SCRIPT=container.sh
# shellcheck source=scripts/lib/common.sh
. "$repo/scripts/lib/common.sh"

image=localhost/wsecho:latest
conns=200
duration=5
runtime_only=
check_around=0
keep=0
while [ $# -gt 0 ]; do
    case $1 in
        --image) image=${2:?}; shift 2 ;;
        --connections|-c) conns=${2:?}; shift 2 ;;
        --duration|-d) duration=${2:?}; shift 2 ;;
        --runtime) runtime_only=${2:?}; shift 2 ;;
        --check-around) check_around=1; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "container.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case $conns$duration in *[!0-9]*) echo "container.sh: --connections and --duration take whole numbers" >&2; exit 2 ;; esac

triple=x86_64-unknown-linux-gnu
uid=65532
port=9001
shutdown_timeout=10   # wsecho's default --shutdown-timeout; the image does not change it
fails=0

log() { printf '[container.sh] %s\n' "$*"; }
die() { printf '[container.sh] ERROR: %s\n' "$*" >&2; exit 1; }
# check DESCRIPTION COMMAND...: one line, "ok" when COMMAND succeeds, else "FAIL" (counted).
check() {
    local what=$1
    shift
    if "$@"; then log "  ok    $what"; else log "  FAIL  $what"; fails=$((fails + 1)); fi
}
has() { case $1 in *"$2"*) return 0 ;; *) return 1 ;; esac; } # has STRING PART

# ---- 1. tools ---------------------------------------------------------------------------------
need_cmd podman podman
need_cmd file file
for c in nsenter unshare setpriv; do need_cmd "$c" util-linux; done
need_cmd ip iproute2
log "$(podman --version), storage driver $(podman info --format '{{.Store.GraphDriverName}}' 2>/dev/null || echo '?')"

# ---- run directory, cleanup, deadline ---------------------------------------------------------
run=$(mktemp -d /tmp/wsecho-container.XXXXXX)
name=wsecho-check-$$
pids=()
watchdog=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null
    podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
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
deadline=$((duration + 600)) # the static build with fat LTO takes minutes on a cold cache
(
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    sleep "$deadline" & s=$!
    wait "$s"
    echo "[container.sh] deadline of ${deadline}s reached, stopping" >&2
    kill -TERM $$
) &
watchdog=$!

# ---- 2. the static binary, and wsbench --------------------------------------------------------
target=$(target_dir)
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
    BUILD_SHOWN="RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target $triple --bin wsecho" \
    cargo_build --release --target "$triple" --bin wsecho
bin=$target/$triple/release/wsecho
if [ -n "${WSBENCH:-}" ]; then
    wsbench=$WSBENCH # a wsbench built elsewhere
else
    cargo_build --release --bin wsbench
    wsbench=$target/release/wsbench
fi

log "static binary $bin ($(stat -c %s "$bin") bytes)"
finfo=$(file -b "$bin")
lddout=$(ldd "$bin" 2>&1 || true)
log "  file: ${finfo%%, BuildID*}"
log "  ldd:  $(echo "$lddout" | head -1 | sed 's/^[[:space:]]*//')"
check "file(1) says static" has "$finfo" static
ldd_static() { has "$lddout" "statically linked" || has "$lddout" "not a dynamic executable"; }
check "ldd(1) finds no shared library" ldd_static

# ---- 3. the image -----------------------------------------------------------------------------
ctx=$run/context
mkdir -p "$ctx"
cp "$bin" "$ctx/wsecho"
echo "nonroot:x:$uid:$uid:nonroot:/nonexistent:/sbin/nologin" >"$ctx/passwd"
log "podman build -f Containerfile -t $image (context: the binary and passwd only)"
old_id=$(podman image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
podman build -q -f "$repo/Containerfile" -t "$image" "$ctx" >"$run/build.log" 2>&1 ||
    { cat "$run/build.log" >&2; die "podman build failed"; }
# The image this replaced (left untagged by the build) goes, unless something still uses it.
if [ -n "$old_id" ] && [ "$old_id" != "$(podman image inspect -f '{{.Id}}' "$image")" ]; then
    podman rmi "$old_id" >/dev/null 2>&1 || true
fi
log "image $image: id $(podman image inspect -f '{{.Id}}' "$image" | cut -c1-12), $(podman image inspect -f '{{.Size}}' "$image") bytes"

# ---- 4. what the image holds, and its config --------------------------------------------------
log "image file list (podman save, each layer's tar listing):"
mkdir -p "$run/save"
podman save -q --format docker-archive -o "$run/image.tar" "$image"
tar -xf "$run/image.tar" -C "$run/save"
layers=$(sed -n 's/.*"Layers":\[\([^]]*\)\].*/\1/p' "$run/save/manifest.json" | tr -d '"' | tr ',' ' ')
: >"$run/files"
for l in $layers; do
    tar -tvf "$run/save/$l" | while read -r mode own size _ _ path; do
        printf '[container.sh]     %s %s %9s  /%s\n' "$mode" "$own" "$size" "${path#./}"
    done
    tar -tf "$run/save/$l" | sed 's#^\./##; s#/$##' | grep -v '^$' >>"$run/files" || true
done
got=$(sort -u "$run/files" | tr '\n' ' ')
got=${got% }
check "only /wsecho and /etc/passwd (and the /etc directory): $got" [ "$got" = "etc etc/passwd wsecho" ]

cfg() { podman image inspect -f "$1" "$image"; }
c_user=$(cfg '{{.Config.User}}')
c_stop=$(cfg '{{.Config.StopSignal}}')
c_ports=$(cfg '{{json .Config.ExposedPorts}}')
c_entry=$(cfg '{{json .Config.Entrypoint}}')
log "image config: User=$c_user StopSignal=$c_stop ExposedPorts=$c_ports Entrypoint=$c_entry"
check "runs as UID/GID $uid (numeric, so runAsNonRoot can verify it)" [ "$c_user" = "$uid:$uid" ]
check "stop signal SIGTERM (graceful shutdown)" [ "$c_stop" = SIGTERM ]
check "exposes $port/tcp" [ "$c_ports" = "{\"$port/tcp\":{}}" ]
check "entrypoint /wsecho --listen 0.0.0.0:$port" [ "$c_entry" = "[\"/wsecho\",\"--listen\",\"0.0.0.0:$port\"]" ]
# The entrypoint as words (the same arguments the direct run below uses).
mapfile -t entry < <(echo "$c_entry" | tr -d '[]' | tr ',' '\n' | sed 's/^"//; s/"$//')

# ---- 5. start it: podman run, or the same binary outside --------------------------------------
# Limits this host lets a runtime set without CAP_SYS_RESOURCE: podman asks for 1048576 open
# files by default (more than the hard limit of a process here can be raised to), and starts
# conmon with RLIMIT_NPROC at kernel.pid_max, which is then the most the runtime can set.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
nproc=$(ulimit -Hu)
pidmax=$(cat /proc/sys/kernel/pid_max)
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pidmax" ]; } && nproc=$pidmax
limits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
hardening=(--read-only --cap-drop=ALL --security-opt no-new-privileges --network=none)

mode=
tpid=
try_run() { # DESCRIPTION PODMAN-RUN-OPTIONS...: 0 when the container is up after 1 s
    local what=$1 err
    shift
    podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
    if podman run -d --name "$name" "$@" "${hardening[@]}" "$image" >"$run/run.out" 2>"$run/run.err"; then
        sleep 1
        if [ "$(podman inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" = true ]; then
            log "  podman run $what: started"
            return 0
        fi
        err="exited at once: $(podman logs "$name" 2>&1 | tail -1)"
    else
        err=$(grep -v '^$' "$run/run.err" | tail -1)
    fi
    log "  podman run $what: ${err:-failed}"
    return 1
}

if [ "$check_around" = 0 ]; then
    log "podman run attempts (each with ${hardening[*]}):"
    default_rt=$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null || echo default)
    if [ -n "$runtime_only" ]; then
        if [ "$runtime_only" = runc ] && ! command -v runc >/dev/null 2>&1; then apt_install runc || true; fi
        try_run "--runtime $runtime_only ${limits[*]}" --runtime "$runtime_only" "${limits[@]}" && mode=container
    else
        if try_run "(defaults, runtime $default_rt)"; then mode=container
        elif try_run "${limits[*]} (runtime $default_rt)" "${limits[@]}"; then mode=container
        elif try_run "${limits[*]} --cgroups=disabled (runtime $default_rt)" "${limits[@]}" --cgroups=disabled; then mode=container
        else
            if [ "$default_rt" != runc ] && ! command -v runc >/dev/null 2>&1; then
                log "  installing runc (apt-get) to try it"
                apt_install runc || log "  could not install runc"
            fi
            if command -v runc >/dev/null 2>&1 && [ "$default_rt" != runc ] &&
                try_run "--runtime runc ${limits[*]}" --runtime runc "${limits[@]}"; then
                mode=container
            fi
        fi
    fi
fi

if [ "$mode" = container ]; then
    tpid=$(podman inspect -f '{{.State.Pid}}' "$name")
    log "MODE: in a container (podman run, runtime $(podman inspect -f '{{.OCIRuntime}}' "$name"), pid $tpid)"
    st=/proc/$tpid/status
    ids=$(awk '$1 == "Uid:" || $1 == "Gid:" { printf "%s%s ", $1, $2 }' "$st")
    ids=${ids% }
    check "process runs as $ids" [ "$ids" = "Uid:$uid Gid:$uid" ]
    check "no effective capabilities (CapEff 0)" [ "$(awk '$1 == "CapEff:" {print $2}' "$st")" = 0000000000000000 ]
    check "no_new_privs set" [ "$(awk '$1 == "NoNewPrivs:" {print $2}' "$st")" = 1 ]
    log "  open-file limit in the container: $(awk '/^Max open files/ {print $4 " soft, " $5 " hard"}' "/proc/$tpid/limits")"
    server_log() { podman logs "$name" 2>&1; }
else
    if [ "$check_around" = 1 ]; then
        log "MODE: checked around (--check-around): podman run skipped"
    else
        log "MODE: checked around: no container runtime starts here (each attempt above); running the image's binary outside a container instead"
    fi
    # The image's entrypoint, as UID 65532 with no capabilities, in a network namespace of its
    # own (so 0.0.0.0:9001 is that namespace's, and nothing on the host is touched).
    # shellcheck disable=SC2016 # $@ belongs to the inner shell
    unshare --net bash -c 'ip link set lo up && exec setpriv --reuid "$0" --regid "$0" --clear-groups \
        --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"' "$uid" "$bin" "${entry[@]:1}" \
        >"$run/server.log" 2>&1 &
    tpid=$!
    pids+=("$tpid")
    sleep 0.5
    alive "$tpid" || { cat "$run/server.log" >&2; die "the binary did not start"; }
    log "  started: unshare --net ... setpriv --reuid $uid $bin ${entry[*]:1} (pid $tpid)"
    ids=$(awk '$1 == "Uid:" || $1 == "Gid:" { printf "%s%s ", $1, $2 }' "/proc/$tpid/status")
    ids=${ids% }
    check "process runs as $ids" [ "$ids" = "Uid:$uid Gid:$uid" ]
    server_log() { cat "$run/server.log"; }
fi

# ---- 6. traffic inside the server's network namespace ----------------------------------------
in_ns() { nsenter --target "$tpid" --net -- "$@"; }
ns_get() { # PATH: the response to GET PATH on the namespace's 127.0.0.1:9001
    # shellcheck disable=SC2016 # the inner shell's arguments
    in_ns timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "GET %s HTTP/1.1\r\nHost: wsecho\r\nConnection: close\r\n\r\n" "$1" >&3; cat <&3' \
        "$port" "$1" 2>/dev/null | tr -d '\r' || true
}
healthy() { ns_get /healthz | head -1 | grep -q ' 200'; }
check "GET /healthz answers 200 on 127.0.0.1:$port inside its network namespace" wait_until 20 healthy
log "  server log: $(server_log | head -1)"

if command -v python3 >/dev/null 2>&1; then
    set +e
    in_ns timeout 20 python3 - "$port" >"$run/py.out" 2>&1 <<'EOF'
import base64, hashlib, os, socket, struct, sys

s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
key = base64.b64encode(os.urandom(16))
s.sendall(b"GET / HTTP/1.1\r\nHost: wsecho\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
ok = head.startswith(b"HTTP/1.1 101") and accept in head

def recv_exact(k):
    b = b""
    while len(b) < k:
        c = s.recv(k - len(b))
        if not c:
            raise EOFError
        b += c
    return b

def send(op, payload):
    mask = os.urandom(4)
    s.sendall(bytes([0x80 | op, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

def recv():
    b0, b1 = recv_exact(2)
    return b0 & 0x0F, recv_exact(b1 & 0x7F)

msg = "héllo from the wsecho image".encode()
send(0x1, msg)
op, got = recv()
send(0x8, struct.pack("!H", 1000))
cop, cdata = recv()
print(f"python client: upgrade {'101 with the right accept key' if ok else 'FAILED'}; sent {msg.decode()!r}, "
      f"got {got.decode()!r} ({'identical' if op == 1 and got == msg else 'DIFFERENT'}); close {struct.unpack('!H', cdata)[0]}")
sys.exit(0 if ok and op == 1 and got == msg and cop == 8 else 1)
EOF
    rc=$?
    set -e
    sed 's/^/[container.sh]   /' "$run/py.out"
    check "a text message echoed intact to a Python client (stdlib socket)" [ "$rc" = 0 ]
fi

log "wsbench --connections $conns --duration $duration --size 1KiB --pipeline 4 ws://127.0.0.1:$port/ (inside the namespace)"
set +e
in_ns timeout $((duration + 60)) "$wsbench" --connections "$conns" --duration "$duration" --size 1KiB --pipeline 4 \
    --json "$run/echo.json" -q "ws://127.0.0.1:$port/" >"$run/echo.out" 2>&1
rc=$?
set -e
grep -E '^  (connections|messages|msg/s|latency|echo mismatches|fidelity|lost)' "$run/echo.out" | sed 's/^/[container.sh] /' || true
check "wsbench echo: every message and frame verified, nothing lost (exit $rc)" [ "$rc" = 0 ]
m=$(ns_get /metrics)
log "  /metrics: $(echo "$m" | awk '$1 == "wsecho_upgrades_total" || $1 == "wsecho_messages_received_total" || $1 == "wsecho_connections_open" { printf "%s=%s ", $1, $2 }')"

# ---- 7. stop it with connections open ---------------------------------------------------------
idle=100
rm -f "$run/ready"
in_ns timeout 60 "$wsbench" --mode idle --connections "$idle" --duration 5 --ready-file "$run/ready" \
    --json "$run/idle.json" -q "ws://127.0.0.1:$port/" >"$run/idle.out" 2>&1 &
bp=$!
wait_until 20 test -e "$run/ready" || die "the $idle idle connections did not all upgrade (see $run/idle.out)"
t0=$(date +%s.%N)
if [ "$mode" = container ]; then
    podman stop -t $((shutdown_timeout + 5)) "$name" >/dev/null
    src=$(podman inspect -f '{{.State.ExitCode}}' "$name")
    how="podman stop -t $((shutdown_timeout + 5))"
else
    kill -TERM "$tpid"
    set +e; wait "$tpid"; src=$?; set -e
    how="kill -TERM"
fi
t1=$(date +%s.%N)
set +e; wait "$bp"; set -e
codes=$(sed -n 's/.*"closes_by_code": \({[^}]*}\).*/\1/p' "$run/idle.json")
log "$how with $idle idle clients: server exited $src after $(fmt "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" '%.2f') s; clients' closes by code: $codes"
server_log | tail -3 | sed 's/^/[container.sh]   server: /'
check "graceful stop: exit status 0" [ "$src" = 0 ]
check "every client got close 1001 (going away)" [ "$codes" = "{\"1001\": $idle}" ]

if [ "$fails" = 0 ]; then
    log "OK ($([ "$mode" = container ] && echo "in a container" || echo "checked around: not in a container")): every check passed; image $image kept"
else
    log "FAIL: $fails check(s) failed"
    exit 1
fi
