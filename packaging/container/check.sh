#!/usr/bin/env bash
# Build the Containerfile and run the image the way a site would, with podman, offline from
# any container registry:
#   1. a local base image: debootstrap bookworm (minbase + python3, python3-venv) from the
#      Debian mirror in /etc/apt/sources.list*, imported as localhost/appliance-base:bookworm
#      (cached under $APPLIANCE_CI_CACHE, default /var/tmp/appliance-ci)
#   2. podman build --build-arg BASE=<that>; pip reaches PyPI over --network host
#   3. podman run --read-only, data on a bind-mounted volume owned by uid 10001: ready,
#      healthcheck, one inference on breast_cancer, runs as 10001, a bundled hardware profile
#      matched, OpenVINO compiles an ONNX model and LiteRT loads, clean stop
#   4. an unwritable and a read-only data volume: start-up must fail naming uid 10001 and the fix
#   5. image size (<= APPLIANCE_CHECK_MAX_MB, default 750) and cold start (podman run to ready)
# Exit 0 on success; non-zero with "FAIL: ..." otherwise; 0 with "SKIP: ..." only when podman
# cannot run a container here at all. Needs root (apt-get, debootstrap, bind-mount ownership).
# Installs podman, runc and debootstrap with apt-get only when they are missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${APPLIANCE_CI_CACHE:-/var/tmp/appliance-ci}
BASE_IMAGE=localhost/appliance-base:bookworm
IMAGE=localhost/appliance:check
PORT=${APPLIANCE_CHECK_PORT:-18089}
MAX_MB=${APPLIANCE_CHECK_MAX_MB:-750}
READY_TIMEOUT_S=${APPLIANCE_CHECK_READY_TIMEOUT_S:-120}
UID_IN_IMAGE=10001
START=$(date +%s.%N)

say() { printf 'check.sh: %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
skip() { printf 'SKIP: %s\n' "$*"; exit 0; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" -eq 0 ] || fail "run as root (apt-get, debootstrap and the uid-$UID_IN_IMAGE volume need it)"
mkdir -p "$CACHE"

# --- tools ------------------------------------------------------------------------------
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)          # crun refuses hybrid cgroup v1/v2 hosts
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null; then
        command -v podman >/dev/null || skip "podman is not installed and there is no apt-get to install it"
        fail "missing ${missing[*]} and no apt-get to install them"
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || fail "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || fail "apt-get install ${missing[*]} failed"
fi
command -v python3 >/dev/null || fail "python3 is needed to read the server's answers"

# --- what we start, we stop -------------------------------------------------------------
CONTAINERS=()
WORK=$(mktemp -d "$CACHE/run.XXXXXX")
cleanup() {
    for cid in "${CONTAINERS[@]}"; do podman rm -f -t 5 "$cid" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- base image: debootstrap once, cached as a tarball ----------------------------------
mirror() {
    # the first Debian mirror that carries the plain "bookworm" suite (deb822 or one-line)
    if [ -n "${APPLIANCE_CI_MIRROR:-}" ]; then echo "$APPLIANCE_CI_MIRROR"; return; fi
    awk '
        /^[[:space:]]*URIs:/   { uri = $2 }
        /^[[:space:]]*Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm" && uri ~ /debian\/?$/) { print uri; exit } }
        /^[[:space:]]*deb[[:space:]]/ { u = ($2 ~ /^\[/) ? $3 : $2; s = ($2 ~ /^\[/) ? $4 : $3;
                                        if (s == "bookworm") { print u; exit } }
    ' $(ls /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
          2>/dev/null) </dev/null | head -n1
}
BASE_TAR=$CACHE/base-bookworm-minbase-python3.tar
if [ ! -s "$BASE_TAR" ]; then
    url=$(mirror || true)
    [ -n "$url" ] || fail "no bookworm mirror in /etc/apt/sources.list*; set APPLIANCE_CI_MIRROR"
    say "debootstrap bookworm from $url (once; cached in $BASE_TAR)"
    rootfs=$CACHE/rootfs.tmp
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$url" > "$CACHE/debootstrap.log" 2>&1 \
        || fail "debootstrap failed (see $CACHE/debootstrap.log)"
    # trim to what a slim image carries: no package cache, lists, docs or translations
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$rootfs"
fi

# --- can podman run a container here at all? --------------------------------------------
import_base() {
    podman image exists "$BASE_IMAGE" 2>/dev/null && return 0
    podman import -q "$BASE_TAR" "$BASE_IMAGE" >/dev/null
}
probe() { import_base 2>&1 && podman run --rm --network host "$BASE_IMAGE" true 2>&1; }
# Hosts without systemd or with hybrid cgroups (this sandbox): runc, cgroupfs, file events,
# and rlimits the container may set without CAP_SYS_RESOURCE.
engine_conf() {
    local nofile nproc pid_max
    nofile=$(ulimit -Hn); nproc=$(ulimit -Hu); pid_max=$(cat /proc/sys/kernel/pid_max)
    [ "$nofile" = unlimited ] && nofile=1048576
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; then nproc=$pid_max; fi
    cat > "$CACHE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
}
if ! out=$(probe); then
    engine_conf
    export CONTAINERS_CONF=$CACHE/containers.conf
    if ! out2=$(probe); then
        # last resort: vfs storage of our own (no overlay mounts needed)
        cat > "$CACHE/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$CACHE/storage-vfs"
runroot = "/run/appliance-ci-storage"
EOF
        export CONTAINERS_STORAGE_CONF=$CACHE/storage.conf
        out3=$(probe) || skip "podman cannot run a container here: default: ${out//$'\n'/ }; \
runc/cgroupfs: ${out2//$'\n'/ }; vfs: ${out3//$'\n'/ }"
    fi
    say "podman runs with ${CONTAINERS_CONF}${CONTAINERS_STORAGE_CONF:+ and $CONTAINERS_STORAGE_CONF}"
fi

# --- build --------------------------------------------------------------------------------
# pip in the build stage reaches PyPI through this host's CA bundle (a TLS-inspecting proxy
# needs it; an ordinary network is served as well by it); the final image never sees it.
printf '[global]\ncert = /mnt/appliance-ci/ca.crt\n' > "$CACHE/pip.conf"
ca=${APPLIANCE_CI_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -r "$ca" ] || fail "no CA bundle at $ca (set APPLIANCE_CI_CA_BUNDLE)"
old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
t=$(date +%s.%N)
say "podman build (log: $CACHE/build.log)"
podman build --format docker --network host --pull=never \
    --build-arg BASE="$BASE_IMAGE" \
    -v "$CACHE/pip.conf:/etc/pip.conf:ro" -v "$ca:/mnt/appliance-ci/ca.crt:ro" \
    -t "$IMAGE" -f "$ROOT/Containerfile" "$ROOT" > "$CACHE/build.log" 2>&1 \
    || { tail -n 30 "$CACHE/build.log" >&2; fail "podman build failed (see $CACHE/build.log)"; }
build_s=$(since "$t")
new=$(podman image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$old" ] && [ "$old" != "$new" ]; then podman rmi "$old" >/dev/null 2>&1 || true; fi

size_b=$(podman image inspect --format '{{.Size}}' "$IMAGE")
base_b=$(podman image inspect --format '{{.Size}}' "$BASE_IMAGE")
size_mb=$((size_b / 1000000)); base_mb=$((base_b / 1000000))
[ "$(podman image inspect --format '{{.Config.User}}' "$IMAGE")" = "$UID_IN_IMAGE:$UID_IN_IMAGE" ] \
    || fail "image does not run as $UID_IN_IMAGE:$UID_IN_IMAGE"
podman image inspect --format '{{json .}}' "$IMAGE" | grep -q '"Healthcheck"' \
    || fail "image has no HEALTHCHECK (built without --format docker?)"

# --- run: read-only root, data on a volume owned by 10001 --------------------------------
run_flags=(--read-only --tmpfs /tmp --network host --health-interval disable
           -e APPLIANCE_HOST=127.0.0.1 -e APPLIANCE_PORT="$PORT")
url=http://127.0.0.1:$PORT
curl -s -o /dev/null "$url/v2/health/live" && fail "something already listens on port $PORT (set APPLIANCE_CHECK_PORT)"
install -d -o "$UID_IN_IMAGE" -g "$UID_IN_IMAGE" -m 0750 "$WORK/data"
t=$(date +%s.%N)
# stderr aside: podman without systemd logs an error about healthcheck timers even with
# --health-interval disable, and goes on
cid=$(podman run -d "${run_flags[@]}" -v "$WORK/data:/var/lib/appliance" "$IMAGE" \
    2>"$WORK/run.err") || { cat "$WORK/run.err" >&2; fail "podman run failed"; }
CONTAINERS+=("$cid")
deadline=$(( $(date +%s) + READY_TIMEOUT_S ))
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/v2/health/ready")" = 200 ]; do
    if [ "$(podman inspect --format '{{.State.Running}}' "$cid")" != true ]; then
        podman logs "$cid" 2>&1 | tail -n 30 >&2; fail "the container exited before it was ready"
    fi
    if [ "$(date +%s)" -gt "$deadline" ]; then
        podman logs "$cid" 2>&1 | tail -n 30 >&2; fail "not ready after ${READY_TIMEOUT_S}s"
    fi
    sleep 0.1
done
cold_s=$(since "$t")

podman healthcheck run "$cid" >/dev/null || fail "HEALTHCHECK reports unhealthy while ready"
[ "$(podman exec "$cid" id -u)" = "$UID_IN_IMAGE" ] || fail "server does not run as uid $UID_IN_IMAGE"
podman exec "$cid" sh -c 'touch /opt/appliance/x' 2>/dev/null && fail "root file system is writable"
body='{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": [17.99, 10.38,
 122.8, 1001, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871, 1.095, 0.9053, 8.589, 153.4,
 0.006399, 0.04904, 0.05373, 0.01587, 0.03003, 0.006193, 25.38, 17.33, 184.6, 2019, 0.1622,
 0.6656, 0.7119, 0.2654, 0.4601, 0.1189]}]}'
answer=$(curl -s -X POST -H 'Content-Type: application/json' -d "$body" \
    "$url/v2/models/breast_cancer/infer") || fail "inference request failed"
label=$(python3 -c 'import json, sys
out = {o["name"]: o for o in json.loads(sys.argv[1])["outputs"]}
print(out["label"]["data"][0])' "$answer" 2>/dev/null) || fail "unexpected inference answer: $answer"
[ "$label" = 0 ] || fail "breast_cancer labelled a malignant row $label (expected 0): $answer"
magika=$(curl -s -o /dev/null -w '%{http_code}' "$url/v2/models/magika/ready")
[ "$magika" = 200 ] || fail "demo model magika is not ready ($magika)"
[ -s "$WORK/data/registry.db" ] || fail "registry.db is not on the volume"
# the profiles come from the wheel (appliance/_profiles), not the built-in fallback
hardware=$(podman exec "$cid" appliance hardware --json) || fail "appliance hardware failed"
profile=$(python3 -c 'import json, pathlib, sys
h = json.loads(sys.argv[1]); bundled = {p.stem for p in pathlib.Path(sys.argv[2]).glob("*.toml")}
src = pathlib.PurePosixPath(h["source"])
ok = h["profile"] in bundled and src.parent.name == "_profiles" and src.stem == h["profile"]
print(h["profile"] if ok else "")' "$hardware" "$ROOT/hardware_profiles") \
    || fail "unexpected appliance hardware --json: $hardware"
[ -n "$profile" ] || fail "the image matched no bundled hardware profile: $hardware"
say "hardware profile $profile (bundled)"
# the trimmed backends still work: OpenVINO reads and compiles magika's ONNX model on the
# CPU (ONNX frontend, CPU plugin), and LiteRT's Interpreter module loads
podman exec "$cid" python3 -c 'import pathlib, magika, openvino as ov
from ai_edge_litert import interpreter
assert hasattr(interpreter, "Interpreter")
names = set(ov.frontend.FrontEndManager().get_available_front_ends())
assert {"ir", "onnx", "tflite"} <= names, names
model = next(pathlib.Path(magika.__file__).parent.rglob("*.onnx"))
ov.Core().compile_model(str(model), "CPU")' || fail "a trimmed backend no longer works"
podman stop -t 20 "$cid" >/dev/null 2>>"$WORK/run.err" || { cat "$WORK/run.err" >&2; fail "podman stop failed"; }
code=$(podman inspect --format '{{.State.ExitCode}}' "$cid")
[ "$code" = 0 ] || { podman logs "$cid" 2>&1 | tail -n 20 >&2; fail "stop ended with exit code $code"; }

# --- a data volume the server cannot write: a clear refusal at start-up ------------------
refusal() {  # $1: what, $2...: volume flags; prints the container's output
    local out rc=0
    out=$(timeout 60 podman run --rm "${run_flags[@]}" "${@:2}" "$IMAGE" 2>&1) || rc=$?
    [ "$rc" -ne 0 ] || fail "$1: the server started (exit 0) instead of refusing"
    [ "$rc" -ne 124 ] || fail "$1: the server kept running instead of refusing"
    printf '%s' "$out"
}
install -d -o 0 -g 0 -m 0755 "$WORK/root-owned"
msg=$(refusal "volume owned by root" -v "$WORK/root-owned:/var/lib/appliance")
grep -q "$UID_IN_IMAGE" <<<"$msg" && grep -q chown <<<"$msg" \
    || fail "volume owned by root: the error names neither uid $UID_IN_IMAGE nor chown: $msg"
say "root-owned volume refused: $(grep -m1 "$UID_IN_IMAGE" <<<"$msg")"
msg=$(refusal "read-only volume" -v "$WORK/data:/var/lib/appliance:ro")
grep -qi "read-only" <<<"$msg" || fail "read-only volume: the error does not say read-only: $msg"
say "read-only volume refused: $(grep -m1 -i "read-only" <<<"$msg")"

# --- numbers --------------------------------------------------------------------------------
venv_mb=$(podman run --rm --network none --health-interval disable --entrypoint du "$IMAGE" \
    -sm /opt/appliance 2>/dev/null | cut -f1)
say "image $IMAGE: $size_mb MB (base $base_mb MB, venv $venv_mb MiB); build ${build_s}s;" \
    "cold start ${cold_s}s (podman run to ready, empty volume)"
[ "$size_mb" -le "$MAX_MB" ] || fail "image is $size_mb MB, over $MAX_MB MB"
say "OK in $(since "$START")s"
