#!/usr/bin/env bash
# Instructions per echoed message, counted exactly: valgrind --tool=callgrind on
# examples/echo_driver.rs, which upgrades one wsecho Connection over an in-memory MemSocket and
# echoes exactly N messages, 16 pipelined per read (no sockets, no threads, no clock, so the count
# repeats to the instruction). Instructions are collected only inside the driver's echo_batch
# (feed a batch, let the connection read and echo it), which keeps the process start-up out of
# the count. Each case runs twice, with 0 and with N messages; the warm-up batch is in both runs
# and cancels out:
#
#     instructions per message = (Ir(N) - Ir(0)) / N
#
# The figure covers the protocol work (decode, unmask, UTF-8 check for text, re-frame, one send
# per batch) plus the MemSocket's copies in and out, which stand in for the kernel's. It does not
# cover syscalls or epoll (see scripts/syscalls.sh and scripts/profile.sh for those).
#
# Usage: scripts/instructions.sh [--quick] [--count N] [--check PCT] [--update-baseline] [--annotate]
#   --quick            N = 4000 (a few seconds; what .ci/instructions-check runs)
#   --count N          N messages per case [default: 100000]
#   --check PCT        exit 1 when a case is more than PCT % above benches/baseline.txt
#   --update-baseline  rewrite benches/baseline.txt with this run's figures
#   --annotate         also print each case's hottest functions (callgrind_annotate)
#
# Cases: binary_20B, binary_1KiB, text_20B, text_1KiB (ASCII text), text_mixed_16KiB (text with
# about one byte in four non-ASCII, echo_driver --mixed; 3 pipelined per read, as 16 would not fit
# in one 64 KiB read, and N / 16 messages, as each costs ~20x a 1 KiB one). Output files
# (callgrind.out per run) go to target/profile/callgrind/. The build is
# `cargo build --release --example echo_driver` (CARGO_TARGET_DIR is honoured). valgrind is
# installed with apt-get when missing (root).
# glibc's memcpy/memset are pinned to their plain SSE2 versions (GLIBC_TUNABLES, see below), so
# the counts do not depend on the CPU; they do depend on rustc and glibc versions (baseline header).
# One exception: the UTF-8 check (simdutf8) picks AVX2 or SSE4.2 from the CPU features valgrind
# passes through, so text_mixed_16KiB (and text_1KiB) assume AVX2, as on this machine and CI.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=instructions.sh
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
BASELINE="$ROOT/benches/baseline.txt"
COUNT=100000
CHECK=""
UPDATE=0
ANNOTATE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) COUNT=4000 ;;
        --count) COUNT="${2:?--count needs a number}"; shift ;;
        --check) CHECK="${2:?--check needs a percentage}"; shift ;;
        --update-baseline) UPDATE=1 ;;
        --annotate) ANNOTATE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "instructions.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$COUNT" in ''|*[!0-9]*|0) echo "instructions.sh: --count must be a positive number" >&2; exit 2 ;; esac
case "$CHECK" in ''|*[!0-9.]*) [ -z "$CHECK" ] || { echo "instructions.sh: --check must be a percentage" >&2; exit 2; } ;; esac

# name | echo_driver arguments
CASES=(
    "binary_20B|20"
    "binary_1KiB|1k"
    "text_20B|--text 20"
    "text_1KiB|--text 1k"
    "text_mixed_16KiB|--mixed --pipeline 3 16k|16"
)

need_cmd valgrind valgrind

VALGRIND="$(command -v valgrind)"

cargo_build --release --example echo_driver
DRIVER="$(target_dir)/release/examples/echo_driver"
OUT="$ROOT/target/profile/callgrind"
mkdir -p "$OUT"

# glibc picks memcpy/memset by the CPU features valgrind reports, and its `rep movsb` variants
# count one instruction per byte under valgrind: without this the 1 KiB figures would be 2.7x
# higher on this machine and would differ between machines. With it they depend only on the
# build and the glibc version.
TUNABLES="glibc.cpu.hwcaps=-AVX2,-AVX,-ERMS,-FSRM,-AVX512F,-AVX512VL,-AVX_Fast_Unaligned_Load,-SSSE3,-SSE4_1,-SSE4_2"
TUNABLES="$TUNABLES:glibc.cpu.x86_rep_movsb_threshold=1000000000:glibc.cpu.x86_rep_stosb_threshold=1000000000"

# ir FILE: total instructions (Ir) from a callgrind output file.
ir() { awk '$1 == "summary:" || $1 == "totals:" { print $2; exit }' "$1"; }

# measure NAME N ARGS...: runs the driver under callgrind, prints Ir.
measure() {
    local name=$1 n=$2; shift 2
    local f="$OUT/$name.$n.out"
    # A fixed environment (the two runs of a case must do exactly the same start-up work), and
    # glibc's string functions pinned to their baseline SSE2 versions without `rep movsb` (see
    # TUNABLES above).
    if ! env -i PATH=/usr/bin:/bin GLIBC_TUNABLES="$TUNABLES" timeout 600 "$VALGRIND" --tool=callgrind \
        --toggle-collect='*echo_driver::echo_batch*' --callgrind-out-file="$f" \
        "$DRIVER" "$@" "$n" > "$OUT/$name.$n.log" 2>&1; then
        echo "instructions.sh: $name with $n messages failed:" >&2
        cat "$OUT/$name.$n.log" >&2
        return 1
    fi
    local v
    v=$(ir "$f")
    case "$v" in
        ''|0) echo "instructions.sh: no instructions collected in $f (is echo_batch still in echo_driver?)" >&2; return 1 ;;
    esac
    echo "$v"
}

# case_args CASE / case_n CASE: a case's echo_driver arguments, and its message count (N, or N
# divided by the optional third field, for large messages).
case_args() { local r=${1#*|}; echo "${r%%|*}"; }
case_n() {
    local r=${1#*|} div=1
    case "$r" in *'|'*) div=${r##*|} ;; esac
    local n=$((COUNT / div))
    [ "$n" -gt 0 ] || n=1
    echo "$n"
}

# base NAME: the baseline figure for a case (empty when none).
base() { if [ -f "$BASELINE" ]; then awk -v n="$1" '$1 == n { print $2; exit }' "$BASELINE"; fi; }

echo "== $(valgrind --version), $(rustc --version 2>/dev/null | cut -d' ' -f1-2), N = $COUNT messages per case (unless divided), 16 pipelined per read (unless set)"
printf '%-16s %12s %14s %10s %12s %10s %7s\n' case 'Ir(0)' 'Ir(N)' N 'instr/msg' baseline ratio
RESULTS=()
FAIL=0
for c in "${CASES[@]}"; do
    name=${c%%|*}
    read -r -a args <<< "$(case_args "$c")"
    n=$(case_n "$c")
    ir0=$(measure "$name" 0 "${args[@]}")
    irn=$(measure "$name" "$n" "${args[@]}")
    per=$(awk -v a="$ir0" -v b="$irn" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }')
    b=$(base "$name")
    if [ -n "$b" ]; then
        ratio=$(awk -v p="$per" -v b="$b" 'BEGIN { printf "%.3f", p / b }')
        if [ -n "$CHECK" ] && awk -v r="$ratio" -v c="$CHECK" 'BEGIN { exit !(r > 1 + c / 100) }'; then
            ratio="$ratio  ABOVE +$CHECK%"
            FAIL=1
        fi
    else
        ratio="-"
        b="-"
        [ -n "$CHECK" ] && [ "$UPDATE" = 0 ] && { ratio="no baseline"; FAIL=1; }
    fi
    printf '%-16s %12s %14s %10s %12s %10s %7s\n' "$name" "$ir0" "$irn" "$n" "$per" "$b" "$ratio"
    RESULTS+=("$name $per")
done
echo "   callgrind files: $OUT/<case>.<N>.out  (e.g. callgrind_annotate $OUT/binary_20B.$COUNT.out)"

if [ "$ANNOTATE" = 1 ]; then
    for c in "${CASES[@]}"; do
        name=${c%%|*}
        echo
        n=$(case_n "$c")
        echo "== $name: hottest functions over $n messages (plus the warm-up batch)"
        callgrind_annotate --inclusive=no "$OUT/$name.$n.out" 2>/dev/null \
            | awk '/^-+$/ { d++; next } d >= 3 && NF { print; if (++k == 15) exit }'
    done
fi

if [ "$UPDATE" = 1 ]; then
    {
        echo "# Instructions per echoed message (valgrind callgrind Ir): one wsecho Connection over an"
        echo "# in-memory MemSocket (examples/echo_driver.rs), 16 messages pipelined per read,"
        echo "# (Ir(N) - Ir(0)) / N with N = $COUNT (text_mixed_16KiB: N / 16, 3 per read), collected inside echo_batch only, warm-up batch cancelled out;"
        echo "# glibc memcpy/memset pinned to SSE2 without rep movsb (GLIBC_TUNABLES in the script)."
        echo "# Produced by: scripts/instructions.sh --update-baseline ($(date -u +%F), $(rustc --version 2>/dev/null | cut -d' ' -f1-2),"
        echo "# $(valgrind --version), $(ldd --version 2>/dev/null | head -n1 | awk '{print "glibc " $NF}'), $(uname -m), release profile). Checked by .ci/instructions-check (fails above +10%)."
        echo "# name instructions_per_message"
        printf '%s\n' "${RESULTS[@]}"
    } > "$BASELINE"
    echo "== wrote $BASELINE"
fi

if [ "$FAIL" = 1 ]; then
    echo "instructions.sh: FAIL: a case is more than $CHECK% above $BASELINE (or missing from it);" \
        "if the increase is intended, run scripts/instructions.sh --update-baseline" >&2
    exit 1
fi
[ -n "$CHECK" ] && echo "== OK: every case within +$CHECK% of $BASELINE"
exit 0
