#!/usr/bin/env bash
# Installs wsecho as a systemd service.
#
#   scripts/install-systemd.sh [--prefix /usr/local] [--socket] [--binary PATH]
#
#   --prefix DIR    install the binary as DIR/bin/wsecho (default /usr/local); ExecStart follows
#   --socket        also install wsecho.socket (socket activation: systemd binds the address)
#   --binary PATH   install this binary instead of building target/release/wsecho
#
# What it does:
#   1. builds the release binary when it is missing or older than the sources (cargo build
#      --release; CARGO_TARGET_DIR is honoured). Tip: build as your user first, then run this
#      script with sudo, so that target/ stays yours.
#   2. installs PREFIX/bin/wsecho, /etc/systemd/system/wsecho.service (and wsecho.socket with
#      --socket), and /etc/default/wsecho unless that file already exists (never overwritten).
#   3. runs `systemctl daemon-reload` when systemd is the running init (/run/systemd/system).
# It enables and starts nothing; it prints the commands for that.
#
# DESTDIR=/some/dir stages everything under that directory instead of / (packaging, tests).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$repo
SCRIPT=install-systemd
# shellcheck source=scripts/lib/common.sh
. "$repo/scripts/lib/common.sh"

prefix=/usr/local
socket=0
binary=
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --socket) socket=1; shift ;;
        --binary) binary=${2:?--binary needs a path}; shift 2 ;;
        --binary=*) binary=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install-systemd: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
case $prefix in /*) ;; *) echo "install-systemd: --prefix must be absolute" >&2; exit 2 ;; esac
prefix=${prefix%/}

units=$repo/scripts/systemd
dest=${DESTDIR:-}
dest=${dest%/}

if [ -z "$dest" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install-systemd: run as root (e.g. sudo $0 $*), or set DESTDIR to stage the files" >&2
    exit 1
fi

say() { printf '  %s\n' "$*"; }

# 1. The binary.
if [ -z "$binary" ]; then
    binary=$(target_dir)/release/wsecho
    stale=
    if [ -x "$binary" ]; then
        stale=$(cd "$repo" && { find src Cargo.toml Cargo.lock -newer "$binary" -print -quit 2>/dev/null || true; })
    fi
    if [ ! -x "$binary" ] || [ -n "$stale" ]; then
        command -v cargo >/dev/null 2>&1 || {
            echo "install-systemd: $binary is missing or stale and cargo is not on PATH;" >&2
            echo "  build it first (cargo build --release) or pass --binary PATH" >&2
            exit 1
        }
        echo "Building: cargo build --release (in $repo)"
        (cd "$repo" && cargo build --release --bin wsecho)
    else
        echo "Using the existing build: $binary"
    fi
fi
[ -x "$binary" ] || { echo "install-systemd: no executable at $binary" >&2; exit 1; }
"$binary" --version >/dev/null || { echo "install-systemd: $binary --version failed" >&2; exit 1; }

echo "Installing:"
bin_dir=$dest$prefix/bin
unit_dir=$dest/etc/systemd/system
default_dir=$dest/etc/default
install -d -m 0755 "$bin_dir" "$unit_dir" "$default_dir"

# Replace a running binary atomically (no "text file busy"): copy next to it, then rename.
install -m 0755 "$binary" "$bin_dir/.wsecho.new"
mv -f "$bin_dir/.wsecho.new" "$bin_dir/wsecho"
say "$prefix/bin/wsecho  ($("$bin_dir/wsecho" --version))"

# 2. Units; ExecStart follows --prefix.
sed "s|^ExecStart=/usr/local/bin/wsecho |ExecStart=$prefix/bin/wsecho |" "$units/wsecho.service" > "$unit_dir/.wsecho.service.new"
grep -q "^ExecStart=$prefix/bin/wsecho " "$unit_dir/.wsecho.service.new" || {
    rm -f "$unit_dir/.wsecho.service.new"
    echo "install-systemd: could not set ExecStart in wsecho.service" >&2
    exit 1
}
chmod 0644 "$unit_dir/.wsecho.service.new"
mv -f "$unit_dir/.wsecho.service.new" "$unit_dir/wsecho.service"
say "/etc/systemd/system/wsecho.service  (ExecStart=$prefix/bin/wsecho \$WSECHO_OPTS)"
if [ "$socket" = 1 ]; then
    install -m 0644 "$units/wsecho.socket" "$unit_dir/wsecho.socket"
    say "/etc/systemd/system/wsecho.socket  ($(grep -m1 '^ListenStream=' "$units/wsecho.socket"))"
elif [ -e "$unit_dir/wsecho.socket" ]; then
    say "(left the existing /etc/systemd/system/wsecho.socket alone; --socket updates it)"
fi

if [ -e "$default_dir/wsecho" ]; then
    say "/etc/default/wsecho exists: kept it (the example is $units/wsecho.default)"
else
    install -m 0644 "$units/wsecho.default" "$default_dir/wsecho"
    say "/etc/default/wsecho  ($(grep -m1 '^WSECHO_OPTS=' "$default_dir/wsecho"))"
fi

# Sanity check of what was installed, when the tool is here (warnings only; not for DESTDIR,
# where ExecStart points outside the staging directory).
if [ -z "$dest" ] && command -v systemd-analyze >/dev/null 2>&1; then
    check=("$unit_dir/wsecho.service")
    [ "$socket" = 1 ] && check+=("$unit_dir/wsecho.socket")
    if out=$(systemd-analyze verify --man=no "${check[@]}" 2>&1) && [ -z "$out" ]; then
        say "systemd-analyze verify: clean"
    else
        echo "  systemd-analyze verify reported:"; printf '%s\n' "$out" | sed 's/^/    /'
    fi
fi

# 3. Reload systemd if it is running here.
running=0
if [ -z "$dest" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    running=1
    say "systemctl daemon-reload: done"
elif [ -n "$dest" ]; then
    say "DESTDIR=$dest: staged only, no daemon-reload"
else
    say "systemd is not running here (no /run/systemd/system): skipped daemon-reload"
fi

echo
echo "Next:"
[ "$running" = 1 ] || echo "  systemctl daemon-reload                 # on the host that runs systemd"
echo "  \$EDITOR /etc/default/wsecho             # WSECHO_OPTS, RUST_LOG"
if [ "$socket" = 1 ]; then
    echo "  systemctl enable --now wsecho.socket    # systemd listens; the service starts on the first connection"
    echo "  systemctl enable wsecho.service         # optional: also start it at boot, not on demand"
else
    echo "  systemctl enable --now wsecho.service"
fi
echo "  systemctl status wsecho.service"
echo "  journalctl -u wsecho.service -f"
echo "  curl -fsS http://127.0.0.1:9001/healthz   # adjust to your address"
echo "  systemd-analyze security wsecho.service"
