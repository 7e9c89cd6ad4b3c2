#!/usr/bin/env bash
# Autobahn|Testsuite conformance run against a release wsecho (the suite's fuzzingclient cases).
#
# Usage: scripts/autobahn.sh [--ci] [--tls | --via nginx|haproxy] [--compare RESULTS.json] [-v] [PATTERN]
#   PATTERN  comma separated case-id patterns, '-' excludes         [default: '*,-12.*,-13.*']
#            ('*,-12.*,-13.*' = groups 1-10, 301 cases: every group that applies while wsecho
#            has no permessage-deflate; 12.* and 13.* are the deflate groups)
#   --ci     when the harness is absent, print one line and exit 0 (CI on a clone without
#            ../shared); without --ci a missing harness is an error (exit 2)
#   -v       stream the harness's per-case progress instead of keeping it in the log
#   --tls    run the cases over wss: wsecho gets a throwaway certificate (openssl, made at run
#            time) and --tls-cert/--tls-key, and the harness (which speaks ws:// only) reaches it
#            through a socat TCP-to-TLS bridge, so every frame crosses wsecho's TLS record layer
#            in whatever records and cuts socat makes (socat and openssl: apt-get when missing)
#   --via P  run the cases through a reverse proxy, P = nginx or haproxy (apt-get when missing):
#            the repository's scripts/nginx/nginx.conf or scripts/haproxy/haproxy.cfg with its
#            listener moved to a free port and its one backend this wsecho (scripts/lib/proxy.sh);
#            the harness connects to the proxy. The proxy's log is kept as OUT/proxy.log
#   --compare RESULTS.json
#            after the run, list every case whose outcome differs from that earlier report's
#            (behaviour, close behaviour, close codes, who closed or dropped TCP, clean or not)
#            and the cases whose duration changed most: e.g. a --via run against a direct one.
#            Differences are listed, not failed on
#
# The harness is not part of this repository: it is ../shared/autobahn next to the repository
# root (AUTOBAHN_DIR overrides). Its run.sh creates a Python venv under /tmp on first use
# (pip installs the pinned autobahntestsuite case set and its protocol engine), runs the cases
# against ws://127.0.0.1:PORT/ and writes results.json. This script builds the release binaries,
# starts wsecho on a free port, runs the harness, then reads results.json itself and prints a
# table per case group (OK / NON-STRICT / INFORMATIONAL / UNIMPLEMENTED / FAILED).
#
# Exit status 0 only when every case is OK, INFORMATIONAL or UNIMPLEMENTED with a close behaviour
# of OK or INFORMATIONAL (UNIMPLEMENTED: the deflate groups while the server declines the
# extension), the harness reported no error and exited 0, and wsecho was still running at the end.
# 1 otherwise; 2 for a usage error or a missing harness (without --ci).
#
# CI (.ci/run) runs the full applicable set, 9.* (messages up to 16 MiB) included: about 10 s of
# cases here (docs/conformance.md). Once the deflate groups apply, measure 13.* before adding it
# to CI: its cases send 1,000 compressed messages of up to 128 KiB each (timeouts up to 480 s).
#
# Environment: AUTOBAHN_DIR (harness directory), WSECHO_FLAGS (extra wsecho flags, e.g.
# "--deflate"), AUTOBAHN_PORT (first port to try, default 19601), AUTOBAHN_TIMEOUT (seconds for
# the harness run, default 1800), AB_OUT (report directory, default target/autobahn), AB_HOME
# and AB_CASE_TIMEOUT (passed to the harness), CARGO_TARGET_DIR (as for cargo).
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=autobahn.sh
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# shellcheck source=scripts/lib/proxy.sh
. "$ROOT/scripts/lib/proxy.sh"
DEFAULT_PATTERN='*,-12.*,-13.*'
CI=0
TLS=0
VIA=""
COMPARE=""
VERBOSE=0
PATTERN=""
while [ $# -gt 0 ]; do
    case "$1" in
        --ci) CI=1 ;;
        --tls) TLS=1 ;;
        --via) VIA=${2:-}; shift
               case "$VIA" in nginx|haproxy) ;; *) echo "$SCRIPT: --via takes nginx or haproxy" >&2; exit 2 ;; esac ;;
        --compare) COMPARE=${2:-}; shift
               [ -f "$COMPARE" ] || { echo "$SCRIPT: --compare: no file '$COMPARE'" >&2; exit 2; } ;;
        -v|--verbose) VERBOSE=1 ;;
        -h|--help) usage; exit 0 ;;
        -[a-zA-Z]*|--*) echo "$SCRIPT: unknown option '$1' (see --help)" >&2; exit 2 ;;
        *)
            [ -z "$PATTERN" ] || { echo "$SCRIPT: more than one PATTERN ('$PATTERN', '$1')" >&2; exit 2; }
            PATTERN=$1 ;;
    esac
    shift
done
PATTERN=${PATTERN:-$DEFAULT_PATTERN}
[ "$TLS" = 1 ] && [ -n "$VIA" ] && { echo "$SCRIPT: --tls and --via do not go together" >&2; exit 2; }
[ -n "$COMPARE" ] && COMPARE=$(realpath "$COMPARE")

# The harness: AUTOBAHN_DIR, else ../shared/autobahn beside the repository root (not beside the
# caller's working directory, and not wherever the repository was cloned from).
if [ -n "${AUTOBAHN_DIR:-}" ]; then
    AB_DIR=$AUTOBAHN_DIR
    AB_SHOWN=$AUTOBAHN_DIR
else
    AB_DIR="$(realpath -m "$ROOT/../shared/autobahn")"
    AB_SHOWN=../shared/autobahn
fi
if [ ! -f "$AB_DIR/run.sh" ]; then
    if [ "$CI" = 1 ]; then
        echo "autobahn: $AB_SHOWN not found, skipping"
        exit 0
    fi
    echo "$SCRIPT: the Autobahn harness $AB_SHOWN (run.sh) is not there ($AB_DIR);" \
         "set AUTOBAHN_DIR to its directory (--ci skips instead)" >&2
    exit 2
fi
AB_DIR="$(cd "$AB_DIR" && pwd)"
command -v python3 >/dev/null 2>&1 || { echo "$SCRIPT: python3 is missing (the harness needs it)" >&2; exit 1; }
# WSECHO_FLAGS is split on whitespace on purpose (flags and their values, no quoting).
read -r -a FLAGS <<< "${WSECHO_FLAGS:-}"

SERVER_PID=""
HARNESS_PID=""
BRIDGE_PID=""
PROXY_DIR=""
stop_server() {
    [ -n "$BRIDGE_PID" ] && stop_pids TERM 5 "$BRIDGE_PID"
    BRIDGE_PID=""
    if [ -n "$PROXY_DIR" ]; then
        proxy_stop
        cat "$PROXY_DIR"/*.log > "$OUT/proxy.log" 2>/dev/null
        rm -rf "$PROXY_DIR"
        PROXY_DIR=""
    fi
    [ -n "$SERVER_PID" ] || return 0
    stop_pids TERM 12 "$SERVER_PID"
    SERVER_PID=""
}
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [ -n "$HARNESS_PID" ]; then
        # run.sh runs under `timeout`, which makes its own process group: end that group only.
        kill -TERM -- "-$HARNESS_PID" 2>/dev/null
        wait "$HARNESS_PID" 2>/dev/null
        HARNESS_PID=""
    fi
    stop_server
}
on_exit cleanup

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
T0=$(date +%s.%N)
build_bins

OUT=${AB_OUT:-$(target_dir)/autobahn}
mkdir -p "$OUT" || { echo "$SCRIPT: cannot create $OUT" >&2; exit 1; }
OUT="$(cd "$OUT" && pwd)"
# A stale report must never be read as this run's.
rm -f "$OUT/results.json" "$OUT/results.txt" "$OUT/harness.log" "$OUT/wsecho.log" "$OUT/proxy.log"

if [ "$TLS" = 1 ]; then
    for cmd in socat openssl; do
        command -v "$cmd" >/dev/null 2>&1 || { echo "== installing $cmd (apt-get)"; apt_install "$cmd" || true; }
        command -v "$cmd" >/dev/null 2>&1 || { echo "$SCRIPT: --tls needs $cmd" >&2; exit 1; }
    done
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext basicConstraints=critical,CA:FALSE \
        -keyout "$OUT/tls-key.pem" -out "$OUT/tls-cert.pem" > "$OUT/openssl.log" 2>&1 \
        || { echo "$SCRIPT: openssl could not make a certificate:" >&2; tail -n 3 "$OUT/openssl.log" >&2; exit 1; }
    FLAGS+=(--tls-cert "$OUT/tls-cert.pem" --tls-key "$OUT/tls-key.pem")
fi

# A free port below the ephemeral range; if another process takes it between the check and the
# bind, wsecho exits (busy address) and the next port is tried.
PORT=$(( ${AUTOBAHN_PORT:-19601} - 1 ))
for attempt in 1 2 3 4 5; do
    PORT=$(free_port $((PORT + 1)))
    "$WSECHO" --listen "127.0.0.1:$PORT" "${FLAGS[@]}" > "$OUT/wsecho.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$PORT" "$SERVER_PID" && alive "$SERVER_PID" && break
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
    if ! grep -qi 'in use\|busy' "$OUT/wsecho.log" || [ "$attempt" = 5 ]; then
        echo "$SCRIPT: wsecho did not start on 127.0.0.1:$PORT${WSECHO_FLAGS:+ with WSECHO_FLAGS=\"$WSECHO_FLAGS\"}:" >&2
        tail -n 5 "$OUT/wsecho.log" >&2
        exit 1
    fi
done

HPORT=$PORT
if [ "$TLS" = 1 ]; then
    # The harness connects to the bridge in plain TCP; the bridge speaks TLS to wsecho.
    HPORT=$(free_port $((PORT + 1)))
    socat "TCP-LISTEN:$HPORT,fork,reuseaddr,bind=127.0.0.1" "OPENSSL:127.0.0.1:$PORT,verify=0,nodelay" \
        > "$OUT/socat.log" 2>&1 &
    BRIDGE_PID=$!
    wait_port "$HPORT" "$BRIDGE_PID" || { echo "$SCRIPT: the socat bridge did not start:" >&2; tail -n 3 "$OUT/socat.log" >&2; exit 1; }
fi
if [ -n "$VIA" ]; then
    proxy_need "$VIA"
    PROXY_DIR=$(mktemp -d /tmp/wsecho-autobahn-proxy.XXXXXX)
    chmod 755 "$PROXY_DIR" # nginx's workers (nobody, when run as root) reach their temp directories
    HPORT=$(free_port $((PORT + 1)))
    SPORT=$(free_port $((HPORT + 1)))
    proxy_start "$VIA" "$PROXY_DIR" "$HPORT" "$SPORT" "$PORT" || exit 1
fi

echo "== autobahn: cases '$PATTERN' against wsecho ${FLAGS[*]:+${FLAGS[*]} }on ws://127.0.0.1:$HPORT/$([ "$TLS" = 1 ] && echo " (a socat bridge to wss://127.0.0.1:$PORT/)")$([ -n "$VIA" ] && echo " ($(proxy_version "$VIA") in front of ws://127.0.0.1:$PORT/)") (harness $AB_DIR)"
echo "   report: $OUT/results.json, harness log: $OUT/harness.log, server log: $OUT/wsecho.log"
H0=$(date +%s.%N)
# `timeout` puts itself and run.sh (and the harness's python) in a new process group, which
# cleanup ends on an interrupt.
if [ "$VERBOSE" = 1 ]; then
    AB_OUT="$OUT" timeout "${AUTOBAHN_TIMEOUT:-1800}" bash "$AB_DIR/run.sh" 127.0.0.1 "$HPORT" "$PATTERN" \
        > "$OUT/harness.log" 2>&1 &
    HARNESS_PID=$!
    tail -n +1 --pid="$HARNESS_PID" -f "$OUT/harness.log" | grep --line-buffered -v '^[0-9][0-9.]* *[A-Z-]* *[A-Z-]* ' &
    TAIL_PID=$!
    wait "$HARNESS_PID"; HRC=$?
    wait "$TAIL_PID" 2>/dev/null
else
    AB_OUT="$OUT" timeout "${AUTOBAHN_TIMEOUT:-1800}" bash "$AB_DIR/run.sh" 127.0.0.1 "$HPORT" "$PATTERN" \
        > "$OUT/harness.log" 2>&1 &
    HARNESS_PID=$!
    wait "$HARNESS_PID"; HRC=$?
fi
HARNESS_PID=""
H1=$(date +%s.%N)

SERVER_OK=1
alive "$SERVER_PID" || SERVER_OK=0
if [ -n "$PROXY_PID" ] && ! alive "$PROXY_PID"; then
    SERVER_OK=0
    echo "FAILED: $VIA was no longer running when the harness finished; last lines of its log:"
    tail -n 5 "$PROXY_DIR"/*.log
fi
stop_server

if [ "$VERBOSE" = 1 ]; then
    echo "   harness exit status $HRC, $(secs "$H0" "$H1") s"
else
    echo "   harness exit status $HRC, $(secs "$H0" "$H1") s; its verdict:"
    grep -a '^autobahn: ' "$OUT/harness.log" | tail -n 2 | sed 's/^/     /'
fi
if [ ! -s "$OUT/results.json" ]; then
    echo "$SCRIPT: the harness wrote no results.json (exit status $HRC$([ "$HRC" = 124 ] && echo ", timed out after ${AUTOBAHN_TIMEOUT:-1800} s")); last lines of its log:" >&2
    tail -n 15 "$OUT/harness.log" >&2
    exit 1
fi

# Our own reading of results.json: counts per case group and every case that is not clean.
python3 - "$OUT/results.json" <<'EOF'
import json, sys

d = json.load(open(sys.argv[1]))
cases = d.get("cases") or []
COLS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
groups = {}
bad = []
for c in cases:
    g = int(c["id"].split(".")[0])
    row = groups.setdefault(g, dict.fromkeys(COLS + ["close not OK"], 0))
    beh, bc = c.get("behavior"), c.get("behaviorClose")
    row[beh if beh in COLS[:-1] else "FAILED"] += 1  # FAILED, harness ERROR, anything unknown
    if bc not in ("OK", "INFORMATIONAL"):
        row["close not OK"] += 1
    if beh not in ("OK", "INFORMATIONAL", "UNIMPLEMENTED") or bc not in ("OK", "INFORMATIONAL") or c.get("harness_error"):
        bad.append(c)

hdr = ["group"] + COLS + ["close not OK"]
print("   " + "  ".join("%-5s" % hdr[0] if i == 0 else "%13s" % h for i, h in enumerate(hdr)))
tot = dict.fromkeys(hdr[1:], 0)
for g in sorted(groups):
    print("   %-5s  " % g + "  ".join("%13d" % groups[g][h] for h in hdr[1:]))
    for h in hdr[1:]:
        tot[h] += groups[g][h]
print("   %-5s  " % "total" + "  ".join("%13d" % tot[h] for h in hdr[1:]))

for c in cases:
    if c.get("behavior") == "INFORMATIONAL":
        print("   informational %s: %s -> close %s %s" % (c["id"], c.get("description", "")[:70],
              c.get("remoteCloseCode"), c.get("remoteCloseReason") or ""))
for n, c in enumerate(bad):
    if n >= 10:
        print("FAILED %s: behaviour %s, close %s" % (c["id"], c.get("behavior"), c.get("behaviorClose")))
        continue
    print("FAILED %s: behaviour %s, close %s: %s / %s" % (c["id"], c.get("behavior"), c.get("behaviorClose"),
          c.get("result"), c.get("resultClose")))
    print("   case: %s" % c.get("description", ""))
    if c.get("harness_error"):
        print("   harness error: %s" % c["harness_error"].strip().splitlines()[-1])
    for k in ("expected", "received", "expectedClose"):
        if k in c:
            print("   %s: %s" % (k, json.dumps(c[k])[:300]))
    for e in (c.get("wirelog") or [])[:16]:
        print("   wire: %s" % json.dumps(e)[:160])
s = d.get("summary", {})
if not cases:
    print("FAILED: results.json lists no cases (pattern %r)" % s.get("selected"))
    sys.exit(1)
if s.get("harness_errors"):
    print("FAILED: %d harness error(s)" % s["harness_errors"])
sys.exit(1 if bad or not cases or s.get("harness_errors") else 0)
EOF
PRC=$?

if [ -n "$COMPARE" ]; then
    python3 - "$COMPARE" "$OUT/results.json" <<'EOF'
import json, sys

def load(p):
    return {c["id"]: c for c in json.load(open(p)).get("cases") or []}

def key(i):
    return [int(x) if x.isdigit() else x for x in i.split(".")]

def ms(c):
    return c.get("duration_ms") or 0

a, b = load(sys.argv[1]), load(sys.argv[2])
FIELDS = ["behavior", "behaviorClose", "remoteCloseCode", "remoteCloseReason", "localCloseCode",
          "closedByMe", "failedByMe", "droppedByMe", "wasClean", "wasNotCleanReason", "harness_error"]
common = sorted(set(a) & set(b), key=key)
print("== compared with %s: %d cases in both%s" % (sys.argv[1], len(common),
      "" if set(a) == set(b) else ", %d only there, %d only here" % (len(set(a) - set(b)), len(set(b) - set(a)))))
diff = 0
for i in common:
    d = [(f, a[i].get(f), b[i].get(f)) for f in FIELDS if a[i].get(f) != b[i].get(f)]
    if d:
        diff += 1
        print("   %-8s %s" % (i, "; ".join("%s %s -> %s" % x for x in d)))
        if a[i].get("behavior") != b[i].get("behavior") and "received" in b[i]:
            print("            received here: %s" % json.dumps(b[i]["received"])[:200])
print("   %d case(s) with another outcome" % diff)
# Durations (the suite's own, ms): in all, per group, then the largest changes.
print("   case durations: %d ms there, %d ms here (sum over the common cases)" %
      (sum(ms(a[i]) for i in common), sum(ms(b[i]) for i in common)))
groups = {}
for i in common:
    g = groups.setdefault(i.split(".")[0], [0, 0])
    g[0] += ms(a[i])
    g[1] += ms(b[i])
print("   per group, ms there -> here: " + ", ".join("%s: %d -> %d" % (g, v[0], v[1])
      for g, v in sorted(groups.items(), key=lambda x: int(x[0]))))
for i in sorted(common, key=lambda i: -abs(ms(b[i]) - ms(a[i])))[:8]:
    if abs(ms(b[i]) - ms(a[i])) >= 20:
        print("   duration %-8s %5d -> %5d ms  %s" % (i, ms(a[i]), ms(b[i]), a[i].get("description", "")[:60]))
EOF
fi

T1=$(date +%s.%N)
if [ "$SERVER_OK" = 0 ]; then
    echo "FAILED: wsecho was no longer running when the harness finished; last lines of its log:"
    tail -n 5 "$OUT/wsecho.log"
fi
if [ "$PRC" = 0 ] && [ "$HRC" = 0 ] && [ "$SERVER_OK" = 1 ]; then
    echo "autobahn: PASS ('$PATTERN', cases $(secs "$H0" "$H1") s, whole script $(secs "$T0" "$T1") s)"
    exit 0
fi
[ "$PRC" = 0 ] && [ "$HRC" != 0 ] && echo "FAILED: the harness exited with status $HRC (see $OUT/harness.log)"
echo "autobahn: FAIL ('$PATTERN', cases $(secs "$H0" "$H1") s, whole script $(secs "$T0" "$T1") s; report $OUT/results.json)"
exit 1
