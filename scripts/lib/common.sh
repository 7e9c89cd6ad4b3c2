# shellcheck shell=bash
# Shared by the scripts in scripts/: where cargo puts binaries, building them, installing a
# missing Debian package. Source it after setting ROOT (the repository root) and SCRIPT (the
# calling script's name, for messages). Functions only; nothing runs when sourced.

# The absolute cargo target directory (honours CARGO_TARGET_DIR, relative or absolute).
target_dir() {
    local t="${CARGO_TARGET_DIR:-$ROOT/target}"
    case "$t" in /*) ;; *) t="$ROOT/$t" ;; esac
    echo "$t"
}

# build_bins: cargo build --release --bins, then WSECHO and WSBENCH point at the binaries.
# shellcheck disable=SC2034  # set for the calling script
build_bins() {
    echo "== building (cargo build --release --bins)"
    (cd "$ROOT" && cargo build --release --bins --quiet) || { echo "$SCRIPT: build failed" >&2; exit 1; }
    WSECHO="$(target_dir)/release/wsecho"
    WSBENCH="$(target_dir)/release/wsbench"
}

# need_cmd COMMAND PACKAGE: installs PACKAGE with apt-get when COMMAND is missing (as root);
# exits with one clear line when it is still missing.
need_cmd() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing $pkg (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        timeout 600 apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1 \
            || { timeout 300 apt-get update -qq && timeout 600 apt-get install -y -qq --no-install-recommends "$pkg"; }
    fi
    command -v "$cmd" >/dev/null 2>&1 || { echo "$SCRIPT: $cmd is missing (apt-get install $pkg)" >&2; exit 1; }
}
