#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests in deploy/kubernetes/ (no cluster needed).
#
#   scripts/k8s-validate.sh [--versions "1.30.0 1.37.0"]
#
# 1. Schema: kubernetes-validate (PyPI; carries the JSON schemas of every Kubernetes release
#    from 1.25 on, so it needs no network once installed) in --strict mode, where a misspelled
#    or misplaced field fails, against each version given (default: 1.30, the first release
#    with the preStop sleep action on by default, and the newest the package knows). It is
#    installed into a virtualenv under ~/.cache/wsecho (XDG_CACHE_HOME), once. The
#    ServiceMonitor is a CRD, for which no schema is bundled: it gets the structural checks of
#    step 2 only.
# 2. Cross-references (Python + PyYAML): selectors of the Service, the PDB and the ServiceMonitor
#    match the pod labels; probes GET /healthz on the container's port; no `command:` (args
#    append to the image's entrypoint); terminationGracePeriodSeconds > preStop sleep +
#    --shutdown-timeout; non-root as the Containerfile's USER, read-only root, no privilege
#    escalation, capabilities drop ALL; the memory request covers --max-connections at ~4.1 KiB
#    per idle connection + 16 MiB; the prometheus.io annotations and the ServiceMonitor name the
#    real port and --metrics-path; the Containerfile exposes that port and stops with SIGTERM.
#    wsbench-job.yaml (the load side, not in the kustomization): an Indexed batch/v1 Job whose
#    shards all run at once (parallelism = completions), are not retried (backoffLimit 0,
#    restartPolicy Never), start together (--start-at from an env var), hand their JSON out on
#    stdout (--json -), target the Service by its name and port, share one workload, and run
#    as non-root with a read-only root and no capabilities. When target/release/wsbench is built
#    (.ci/run runs cargo test first), the Job's args are given to it with a past --start-at and
#    127.0.0.1 for the Service's name: it must refuse exactly the time (exit 2), so every other
#    flag parsed.
# 3. kubectl kustomize deploy/kubernetes (offline), when kubectl is installed: the kustomization
#    builds, and yields the Deployment, the Service and the PDB.
# 4. Negative controls: a misspelled field must fail step 1, and a grace period shorter than
#    preStop + shutdown, and a Job running fewer shards at once than it has, must fail step 2.
#
# When kubernetes-validate cannot be installed (no PyPI), step 1 is skipped with one line that
# says so ("FALLBACK: ... structural checks only") and steps 2-4 run with PyYAML (from the
# Debian package python3-yaml if needed). Ends with "k8s-validate: N passed, M failed"; exit
# status 1 on any failure.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$repo
SCRIPT=k8s-validate.sh
# shellcheck source=scripts/lib/common.sh
. "$repo/scripts/lib/common.sh"

versions=""
while [ $# -gt 0 ]; do
    case $1 in
        --versions) versions=${2:?}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "k8s-validate.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

dir=$repo/deploy/kubernetes
schema_files=("$dir/deployment.yaml" "$dir/service.yaml" "$dir/pdb.yaml" "$dir/wsbench-job.yaml")
kv_version=1.37.0
venv=${XDG_CACHE_HOME:-$HOME/.cache}/wsecho/k8s-validate-venv
passed=0
failed=0
log() { printf '[k8s-validate] %s\n' "$*"; }
ok() { log "  ok    $*"; passed=$((passed + 1)); }
bad() { log "  FAIL  $*"; failed=$((failed + 1)); }
tmp=$(mktemp -d /tmp/wsecho-k8s.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# ---- the validator and PyYAML ----------------------------------------------------------------
py=
if [ ! -x "$venv/bin/kubernetes-validate" ] ||
    ! "$venv/bin/python" -c "import kubernetes_validate, sys; sys.exit(kubernetes_validate.__version__ != '$kv_version')" 2>/dev/null; then
    log "installing kubernetes-validate==$kv_version into $venv (pip, once)"
    rm -rf "$venv"
    if python3 -m venv "$venv" >"$tmp/venv.log" 2>&1 &&
        timeout 300 "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$kv_version" >>"$tmp/venv.log" 2>&1; then
        :
    else
        tail -3 "$tmp/venv.log" | sed 's/^/[k8s-validate]   /'
        rm -rf "$venv"
    fi
fi
if [ -x "$venv/bin/kubernetes-validate" ]; then
    py=$venv/bin/python
    [ -n "$versions" ] || versions="1.30.0 $kv_version"
    log "schema validation: kubernetes-validate $kv_version --strict, Kubernetes $versions"
else
    log "FALLBACK: kubernetes-validate could not be installed (see above): no JSON-schema validation, structural checks only"
    for c in python3 /usr/bin/python3; do
        if "$c" -c 'import yaml' 2>/dev/null; then py=$c; break; fi
    done
    if [ -z "$py" ]; then
        apt_install python3-yaml || true
        /usr/bin/python3 -c 'import yaml' 2>/dev/null && py=/usr/bin/python3
    fi
    [ -n "$py" ] || { log "FAIL: neither kubernetes-validate nor PyYAML is available"; exit 1; }
fi

# ---- 1. schemas -------------------------------------------------------------------------------
schema_check() { # FILE VERSION: kubernetes-validate --strict, quiet; prints its error lines
    "$venv/bin/kubernetes-validate" --strict --quiet --no-warn -k "$2" "$1" 2>&1
}
if [ -x "$venv/bin/kubernetes-validate" ]; then
    for v in $versions; do
        for f in "${schema_files[@]}"; do
            if out=$(schema_check "$f" "$v"); then
                ok "schema $v: ${f#"$repo"/}"
            else
                bad "schema $v: ${f#"$repo"/}"
                printf "%s\n" "$out" | while IFS= read -r l; do log "        $l"; done
            fi
        done
    done
fi

# ---- 2. cross-references ----------------------------------------------------------------------
cat >"$tmp/check.py" <<'EOF'
"""Cross-file checks of deploy/kubernetes (one line per check: "ok ..." or "FAIL ...")."""
import os, re, sys
import yaml

d, containerfile = sys.argv[1], sys.argv[2]
IDLE_CONN_BYTES = 110 + 4096       # user space + kernel slab per idle connection (deployment.yaml)
BASE_BYTES = 16 << 20              # process, pools, one 16 MiB message in flight at most
results = []

def check(cond, what):
    results.append(bool(cond))
    print(("ok    " if cond else "FAIL  ") + what)

def load(name):
    with open(os.path.join(d, name)) as f:
        docs = [x for x in yaml.safe_load_all(f) if x]
    check(len(docs) == 1, f"{name}: one object")
    return docs[0]

def qty(s):  # a Kubernetes memory quantity in bytes
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|K|M|G)?", str(s))
    if not m:
        return None
    mult = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9, None: 1}
    return int(m.group(1)) * mult[m.group(2)]

def secs(s):  # wsecho's duration grammar, enough of it: 10, 2.5, 10s, 500ms
    m = re.fullmatch(r"([0-9.]+)(ms|s)?", s)
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)

def subset(a, b):
    return bool(a) and all(b.get(k) == v for k, v in a.items())

dep, svc, pdb, sm = (load(n) for n in ("deployment.yaml", "service.yaml", "pdb.yaml", "servicemonitor.yaml"))
kus = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
check((dep["apiVersion"], dep["kind"]) == ("apps/v1", "Deployment"), "deployment.yaml is an apps/v1 Deployment")
check((svc["apiVersion"], svc["kind"]) == ("v1", "Service"), "service.yaml is a v1 Service")
check((pdb["apiVersion"], pdb["kind"]) == ("policy/v1", "PodDisruptionBudget"), "pdb.yaml is a policy/v1 PodDisruptionBudget")
check((sm["apiVersion"], sm["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor"),
      "servicemonitor.yaml is a monitoring.coreos.com/v1 ServiceMonitor")
check(sorted(kus.get("resources", [])) == ["deployment.yaml", "pdb.yaml", "service.yaml"],
      "kustomization.yaml: the Deployment, Service and PDB (the ServiceMonitor needs CRDs, applied apart)")

spec = dep["spec"]
pod = spec["template"]
labels = pod["metadata"]["labels"]
check(subset(spec["selector"]["matchLabels"], labels), "Deployment selector matches its pod labels")
check(subset(svc["spec"]["selector"], labels), "Service selector matches the pod labels")
check(subset(pdb["spec"]["selector"]["matchLabels"], labels), "PDB selector matches the pod labels")
(c,) = pod["spec"]["containers"]
check("command" not in c, "no command: (args are appended to the image's entrypoint)")
args = c.get("args", [])
def flag(name, default):
    for i, a in enumerate(args):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(args):
            return args[i + 1]
    return default
shutdown = secs(flag("--shutdown-timeout", "10"))
metrics_path = flag("--metrics-path", "/metrics")
max_conns = int(flag("--max-connections", "1048576"))
check("--no-metrics" not in args, "metrics and /healthz enabled (no --no-metrics)")
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
port = ports.get("ws")
check(port == 9001, "container port named ws is 9001 (the entrypoint's --listen 0.0.0.0:9001)")
for kind in ("readinessProbe", "livenessProbe"):
    g = c.get(kind, {}).get("httpGet", {})
    check(g.get("path") == "/healthz" and g.get("port") in (port, "ws"), f"{kind}: httpGet /healthz on port {port}")
pre = c.get("lifecycle", {}).get("preStop", {})
pre_s = pre.get("sleep", {}).get("seconds", 0)
check(pre_s >= 5, f"preStop sleeps {pre_s} s (endpoint removed before SIGTERM)")
grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
check(grace > pre_s + shutdown, f"terminationGracePeriodSeconds {grace} > preStop {pre_s} + --shutdown-timeout {shutdown:g}")
psc, csc = pod["spec"].get("securityContext", {}), c.get("securityContext", {})
user = re.search(r"^USER\s+(\d+)", open(containerfile).read(), re.M)
check(psc.get("runAsNonRoot") is True, "runAsNonRoot: true")
check(user and psc.get("runAsUser") == int(user.group(1)), f"runAsUser {psc.get('runAsUser')} is the Containerfile's USER")
check(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem: true")
check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false")
check("ALL" in csc.get("capabilities", {}).get("drop", []), "capabilities: drop ALL")
req = c.get("resources", {}).get("requests", {})
mem = qty(req.get("memory"))
need = max_conns * IDLE_CONN_BYTES + BASE_BYTES
check("cpu" in req and mem is not None and mem >= need,
      f"requests: cpu {req.get('cpu')}, memory {req.get('memory')} >= --max-connections {max_conns} x {IDLE_CONN_BYTES} B + 16 MiB = {need / 2**20:.0f} MiB")
lim = qty(c.get("resources", {}).get("limits", {}).get("memory", "0")) or 0
check(lim == 0 or lim >= mem, "memory limit (if any) >= request")
ann = pod["metadata"].get("annotations", {})
check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(port)
      and ann.get("prometheus.io/path") == metrics_path,
      f"prometheus.io annotations: scrape true, port {port}, path {metrics_path}")
sports = {p.get("name"): p for p in svc["spec"]["ports"]}
check("ws" in sports and sports["ws"].get("targetPort") in ("ws", port), "Service port ws targets the container port")
check(subset(sm["spec"]["selector"]["matchLabels"], svc["metadata"].get("labels", {})), "ServiceMonitor selects the Service by its labels")
eps = sm["spec"].get("endpoints", [])
check(eps and all(e.get("port") in sports and e.get("path", "/metrics") == metrics_path for e in eps),
      f"ServiceMonitor scrapes the Service port by name, path {metrics_path}")
replicas = spec.get("replicas", 1)
mu = pdb["spec"].get("maxUnavailable")
check(mu is not None and 0 < int(mu) < replicas, f"PDB maxUnavailable {mu} of {replicas} replicas (drains can proceed, never all)")
ru = spec.get("strategy", {}).get("rollingUpdate", {})
check(ru.get("maxUnavailable") == 0 and ru.get("maxSurge", 0) != 0, "rolling update: surge first, maxUnavailable 0")
cf = open(containerfile).read()
check(re.search(r"^STOPSIGNAL\s+SIGTERM\s*$", cf, re.M), "Containerfile: STOPSIGNAL SIGTERM")
check(re.search(rf"^EXPOSE\s+{port}\b", cf, re.M), f"Containerfile: EXPOSE {port}")

# The load side: wsbench-job.yaml.
job = load("wsbench-job.yaml")
check((job["apiVersion"], job["kind"]) == ("batch/v1", "Job"), "wsbench-job.yaml is a batch/v1 Job")
check("wsbench-job.yaml" not in kus.get("resources", []), "wsbench-job.yaml is not in the kustomization (run on purpose)")
js = job["spec"]
check(js.get("completionMode") == "Indexed" and js.get("completions", 1) > 1, f"Job: Indexed, {js.get('completions')} shards")
check(js.get("parallelism", 1) == js.get("completions", 1),
      f"Job: parallelism {js.get('parallelism', 1)} = completions {js.get('completions', 1)} (every shard up at --start-at)")
jpod = js["template"]["spec"]
check(js.get("backoffLimit") == 0 and jpod.get("restartPolicy") == "Never",
      "Job: backoffLimit 0, restartPolicy Never (a retried shard would measure another window)")
(jc,) = jpod["containers"]
jargs = jc.get("args", [])
env = {e["name"]: e for e in jc.get("env", [])}
def jflag(name):
    vals = [a.split("=", 1)[1] for a in jargs if a.startswith(name + "=")]
    vals += [jargs[i + 1] for i, a in enumerate(jargs[:-1]) if a == name]
    return vals[0] if len(vals) == 1 else None
sa = jflag("--start-at") or ""
m = re.fullmatch(r"\$\((\w+)\)", sa)
check(m and m.group(1) in env, f"Job: --start-at {sa} comes from the container's env")
check(jflag("--json") == "-", "Job: --json - (each shard's JSON in its log, after its table)")
urls = [a for a in jargs if a.startswith("ws://") or a.startswith("wss://")]
um = re.fullmatch(r"wss?://([^:/]+):(\d+)/.*", urls[0]) if len(urls) == 1 else None
host_ok = um and um.group(1).split(".")[0] == svc["metadata"]["name"]
port_ok = um and int(um.group(2)) in [p["port"] for p in svc["spec"]["ports"]]
check(host_ok and port_ok, f"Job: targets the Service {svc['metadata']['name']} on its port ({urls[0] if urls else 'no URL'})")
check(all(re.fullmatch(r"\$\((\w+)\)", v) is None or re.fullmatch(r"\$\((\w+)\)", v).group(1) in env
          for a in jargs for v in re.findall(r"\$\(\w+\)", a)),
      "Job: every $(VAR) in args is defined in env")
jpsc, jcsc = jpod.get("securityContext", {}), jc.get("securityContext", {})
check(jpsc.get("runAsNonRoot") is True and jcsc.get("readOnlyRootFilesystem") is True
      and jcsc.get("allowPrivilegeEscalation") is False and "ALL" in jcsc.get("capabilities", {}).get("drop", []),
      "Job: non-root, read-only root, no privilege escalation, capabilities drop ALL")
check("cpu" in jc.get("resources", {}).get("requests", {}), "Job: a CPU request per shard")
sys.exit(0 if all(results) else 1)
EOF

log "cross-references (Python $("$py" -c 'import sys; print(sys.version.split()[0])'), PyYAML):"
set +e
"$py" "$tmp/check.py" "$dir" "$repo/Containerfile" >"$tmp/check.out" 2>&1
set -e
while IFS= read -r line; do
    case $line in
        "ok    "*) ok "${line#ok    }" ;;
        "FAIL  "*) bad "${line#FAIL  }" ;;
        *) bad "checker: $line" ;;
    esac
done <"$tmp/check.out"

wsbench=$repo/target/release/wsbench
if [ -x "$wsbench" ]; then
    # The Service's name resolves only in a cluster: 127.0.0.1 stands in for it.
    mapfile -t jargs < <("$py" -c 'import re, sys, yaml
(c,) = yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]["containers"]
for a in c["args"]:
    print(re.sub(r"^(wss?://)[^:/]+", r"\g<1>127.0.0.1", a.replace("$(START_AT)", "1")))' "$dir/wsbench-job.yaml")
    set +e
    err=$(timeout 10 "$wsbench" "${jargs[@]}" 2>&1 >/dev/null)
    rc=$?
    set -e
    if [ "$rc" = 2 ] && [[ $err == *"--start-at is "*" in the past"* ]]; then
        ok "Job: wsbench accepts its args (a past --start-at is all it refuses)"
    else
        bad "Job: wsbench ${jargs[*]}: exit $rc: $err"
    fi
else
    log "  skip  the Job's args through wsbench: target/release/wsbench not built"
fi

# ---- 3. kustomize -----------------------------------------------------------------------------
if command -v kubectl >/dev/null 2>&1; then
    if kubectl kustomize "$dir" >"$tmp/kustomized.yaml" 2>"$tmp/kustomize.err"; then
        kinds=$(grep '^kind: ' "$tmp/kustomized.yaml" | sed 's/kind: //' | sort | tr '\n' ' ')
        if [ "$kinds" = "Deployment PodDisruptionBudget Service " ]; then
            ok "kubectl kustomize deploy/kubernetes builds: $kinds"
        else
            bad "kubectl kustomize deploy/kubernetes yields: $kinds"
        fi
    else
        bad "kubectl kustomize deploy/kubernetes: $(head -1 "$tmp/kustomize.err")"
    fi
else
    log "  skip  kubectl kustomize: kubectl not installed"
fi

# ---- 4. negative controls ---------------------------------------------------------------------
mkdir -p "$tmp/neg"
if [ -x "$venv/bin/kubernetes-validate" ]; then
    sed 's/readOnlyRootFilesystem:/readOnlyRootFilesytem:/' "$dir/deployment.yaml" >"$tmp/neg/deployment.yaml"
    if schema_check "$tmp/neg/deployment.yaml" "${versions##* }" >/dev/null; then
        bad "negative control: a misspelled field (readOnlyRootFilesytem) passed the schema check"
    else
        ok "negative control: a misspelled field (readOnlyRootFilesytem) fails the schema check"
    fi
fi
cp "$dir"/*.yaml "$tmp/neg/"
sed -i 's/terminationGracePeriodSeconds: [0-9]*/terminationGracePeriodSeconds: 15/' "$tmp/neg/deployment.yaml"
if "$py" "$tmp/check.py" "$tmp/neg" "$repo/Containerfile" >"$tmp/neg.out" 2>&1; then
    bad "negative control: terminationGracePeriodSeconds 15 passed the cross-checks"
elif grep -q '^FAIL  terminationGracePeriodSeconds 15' "$tmp/neg.out" && [ "$(grep -c '^FAIL' "$tmp/neg.out")" = 1 ]; then
    ok "negative control: terminationGracePeriodSeconds 15 fails exactly that cross-check"
else
    bad "negative control: unexpected result: $(grep '^FAIL' "$tmp/neg.out" | head -2 | tr '\n' ' ')"
fi
cp "$dir"/*.yaml "$tmp/neg/"
sed -i 's/^  parallelism: [0-9]*/  parallelism: 2/' "$tmp/neg/wsbench-job.yaml"
if "$py" "$tmp/check.py" "$tmp/neg" "$repo/Containerfile" >"$tmp/neg.out" 2>&1; then
    bad "negative control: a Job with parallelism 2 passed the cross-checks"
elif grep -q '^FAIL  Job: parallelism 2 = completions' "$tmp/neg.out" && [ "$(grep -c '^FAIL' "$tmp/neg.out")" = 1 ]; then
    ok "negative control: a Job with parallelism 2 < completions fails exactly that cross-check"
else
    bad "negative control: unexpected result: $(grep '^FAIL' "$tmp/neg.out" | head -2 | tr '\n' ' ')"
fi

echo "k8s-validate: $passed passed, $failed failed"
[ "$failed" = 0 ]
