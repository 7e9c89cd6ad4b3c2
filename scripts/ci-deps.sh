#!/usr/bin/env bash
# Installs the Debian packages the test suite needs. Idempotent and fast when they are already
# there (no apt-get update then). Run as root, or with sudo available.
#
#   systemd   systemd-analyze, for tests/systemd_units.rs
set -euo pipefail

# command-that-must-exist:package
NEEDS=(
    "systemd-analyze:systemd"
)

missing=()
for need in "${NEEDS[@]}"; do
    cmd=${need%%:*} pkg=${need#*:}
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/bin/$cmd" ]; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "ci-deps: all present (${NEEDS[*]})"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-deps: missing ${missing[*]} and no apt-get here; install them by hand" >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "ci-deps: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    SUDO=(sudo)
fi

echo "ci-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
for need in "${NEEDS[@]}"; do
    cmd=${need%%:*}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/bin/$cmd" ] || { echo "ci-deps: $cmd still missing after install" >&2; exit 1; }
done
echo "ci-deps: installed ${missing[*]}"
