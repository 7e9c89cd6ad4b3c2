#!/usr/bin/env bash
# Coverage-guided fuzzing of wsecho: runs every target of fuzz/ for SECONDS each (default 180) and
# prints one table: target, execs/s, total execs, corpus size (files), crashes.
#
#   scripts/fuzz.sh [SECONDS]
#   FUZZ_TARGETS="connection frame" scripts/fuzz.sh 60    # a subset
#
# Targets (fuzz/README.md says what each checks): handshake, frame, utf8, mask, connection, and tls
# (a rustls client's records cut, tampered and read through tls::session with arbitrary budgets).
#
# Each target starts from fuzz/corpus/TARGET (kept, committed; grows as the fuzzer finds new
# coverage) plus the hand-made fuzz/seeds/TARGET. A crash input goes to fuzz/artifacts/TARGET/
# (not committed); once the bug is fixed, copy it to fuzz/regressions/TARGET/, where
# tests/fuzz_regressions.rs replays it on every `cargo test`. A corpus over FUZZ_CMIN_OVER files
# (default 300) is minimized with `cargo fuzz cmin` after the run (by edges only if still large).
#
# Needs a nightly toolchain; installs cargo-fuzz when missing. Builds without a sanitizer (the code
# under test has no unsafe) but with debug assertions and overflow checks.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-180}
read -r -a TARGETS <<<"${FUZZ_TARGETS:-handshake frame utf8 mask connection tls}"
CMIN_OVER=${FUZZ_CMIN_OVER:-300}
FLAGS=(--sanitizer none --debug-assertions)

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

cargo +nightly fuzz build "${FLAGS[@]}" >&2

LOGS=fuzz/target/logs
mkdir -p "$LOGS"
rows=()
total_crashes=0
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | sort)
    extra=()
    if [ -f "fuzz/dict/$t.dict" ]; then
        extra+=("-dict=fuzz/dict/$t.dict")
    fi
    log="$LOGS/$t.log"
    echo "fuzz.sh: $t for ${SECS}s (log: $log)" >&2
    rc=0
    cargo +nightly fuzz run "${FLAGS[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$SECS" -timeout=10 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    after=$(find "fuzz/artifacts/$t" -type f | sort)
    crashes=$(comm -13 <(echo "$before") <(echo "$after") | grep -c . || true)
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        echo "fuzz.sh: $t exited with $rc and no artifact; see $log" >&2
        crashes="error($rc)"
    fi
    if [ "$crashes" != 0 ]; then
        total_crashes=$((total_crashes + 1))
        comm -13 <(echo "$before") <(echo "$after") | sed "s/^/fuzz.sh: $t: new artifact /" >&2
        grep -m1 -A3 "panicked at" "$log" >&2 || true
    fi
    files=$(find "fuzz/corpus/$t" -maxdepth 1 -type f ! -name '.*' | wc -l)
    if [ "$files" -gt "$CMIN_OVER" ]; then
        echo "fuzz.sh: minimizing fuzz/corpus/$t ($files files)" >&2
        cargo +nightly fuzz cmin "${FLAGS[@]}" "$t" "fuzz/corpus/$t" >"$LOGS/$t.cmin.log" 2>&1 ||
            echo "fuzz.sh: cmin of $t failed; see $LOGS/$t.cmin.log" >&2
        files=$(find "fuzz/corpus/$t" -maxdepth 1 -type f ! -name '.*' | wc -l)
        if [ "$files" -gt "$CMIN_OVER" ]; then
            # Still large: keep one input per covered edge, ignoring hit counts.
            echo "fuzz.sh: minimizing fuzz/corpus/$t by edges only ($files files)" >&2
            cargo +nightly fuzz cmin "${FLAGS[@]}" "$t" "fuzz/corpus/$t" -- -use_counters=0 \
                >>"$LOGS/$t.cmin.log" 2>&1 || echo "fuzz.sh: cmin of $t failed; see $LOGS/$t.cmin.log" >&2
            files=$(find "fuzz/corpus/$t" -maxdepth 1 -type f ! -name '.*' | wc -l)
        fi
    fi
    rows+=("$t|${rate:-?}|${execs:-?}|$files|$crashes")
done

printf '\n%-12s %10s %14s %14s %8s\n' target execs/s "total execs" "corpus files" crashes
for r in "${rows[@]}"; do
    IFS='|' read -r t rate execs files crashes <<<"$r"
    printf '%-12s %10s %14s %14s %8s\n' "$t" "$rate" "$execs" "$files" "$crashes"
done
[ "$total_crashes" -eq 0 ]
