#!/usr/bin/env bash
# Run packaging/appliance.def's sections the way `apptainer build` and `apptainer run` would,
# without apptainer (Debian does not package it): for a host that has no apptainer, this is
# the closest real check of the definition file.
#   1. the bookworm debootstrap base check.sh caches (minbase + python3, python3-venv)
#   2. %files: an air-gapped bundle (`appliance bundle build --extras $EXTRAS`, or
#      APPLIANCE_BUNDLE=path.tar) at /opt/appliance-bundle
#   3. %post in a chroot with no network (unshare --net), {{ EXTRAS }} filled in; then %test
#   4. %environment + %runscript as an unprivileged uid, the root file system read-only (as a
#      SIF is), a data directory of that uid bound at /var/lib/appliance, the host network:
#      ready and one inference on breast_cancer; then a data directory owned by root: the
#      one-line refusal naming the uid
# What it cannot show: apptainer's own parsing of the file, SIF packing, its bind and
# environment handling. Exit 0 on success, "FAIL: ..." otherwise. Needs root (chroot, mounts).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEF=$ROOT/packaging/appliance.def
CACHE=${APPLIANCE_CI_CACHE:-/var/tmp/appliance-ci}
BASE_TAR=$CACHE/base-bookworm-minbase-python3.tar
EXTRAS=${EXTRAS:-cpu}
PORT=${APPLIANCE_CHECK_PORT:-18091}
RUN_UID=${APPLIANCE_CHECK_UID:-4242}
PY=${PYTHON:-$ROOT/.venv/bin/python}
START=$(date +%s.%N)

say() { printf 'check-def.sh: %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" -eq 0 ] || fail "run as root (chroot and bind mounts)"
[ -s "$BASE_TAR" ] || fail "no base at $BASE_TAR: run packaging/container/check.sh once first"
WORK=$(mktemp -d "$CACHE/def.XXXXXX")
SERVER=""
cleanup() {
    [ -z "$SERVER" ] || { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT

# the body of section %$1, as apptainer hands it to /bin/sh
section() { awk -v s="%$1" '/^%/ { on = ($1 == s); next } on' "$DEF"; }

# --- %files: the bundle ---------------------------------------------------------------------
rootfs=$WORK/rootfs
mkdir "$rootfs"
tar -C "$rootfs" -xf "$BASE_TAR"
bundle=${APPLIANCE_BUNDLE:-}
if [ -z "$bundle" ]; then
    say "appliance bundle build --extras $EXTRAS"
    (cd "$ROOT" && "$PY" -m appliance.cli bundle build "$WORK/bundle.tar" --extras "$EXTRAS") \
        > "$WORK/bundle.log" 2>&1 || { cat "$WORK/bundle.log" >&2; fail "bundle build failed"; }
    bundle=$WORK/bundle.tar
fi
read -r src dst < <(section files | grep -v '^[[:space:]]*\(#\|$\)')
[ "$src" = bundle ] || fail "%files copies $src, expected the unpacked bundle"
mkdir -p "$rootfs$dst"
tar -xf "$bundle" -C "$rootfs$dst" --strip-components=1

# --- %post offline, then %test --------------------------------------------------------------
post=$(section post)
post=${post//'{{ EXTRAS }}'/$EXTRAS}
t=$(date +%s.%N)
in_chroot() {  # $1: script; a private mount namespace so nothing leaks on failure
    unshare --mount --propagation private --net -- sh -c \
        'mount -t proc proc "$1/proc" && mount -t tmpfs tmpfs "$1/tmp" && shift && exec "$@"' \
        sh "$rootfs" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root chroot "$rootfs" \
        /bin/sh -c "$1"
}
in_chroot "$post" > "$WORK/post.log" 2>&1 || { tail -n 30 "$WORK/post.log" >&2; fail "%post failed"; }
say "%post installed appliance[$EXTRAS] offline in $(since "$t")s"
[ ! -e "$rootfs/opt/appliance-bundle" ] || fail "%post left the bundle in the image"
in_chroot "$(section test)" > "$WORK/test.log" 2>&1 || { cat "$WORK/test.log" >&2; fail "%test failed"; }
say "%test passed: $(head -n 1 "$WORK/test.log")"

# --- %environment + %runscript: read-only root, unprivileged uid, data bound --------------
# CMD: `apptainer run` with $1 bound as the data directory (every step execs the next, so
# the pid that runs CMD ends up the server's and SIGTERM reaches it)
run_cmd() {
    CMD=(unshare --mount --propagation private -- sh -c '
        r=$1 d=$2; shift 2
        mount --bind "$r" "$r" && mount -o remount,bind,ro "$r" && mount -t proc proc "$r/proc" \
            && mount -t tmpfs tmpfs "$r/tmp" && mount --bind "$d" "$r/var/lib/appliance" \
            && exec "$@"' sh "$rootfs" "$1" \
        env -i PATH=/usr/bin:/bin HOME=/tmp APPLIANCE_PORT="$PORT" \
        "$(command -v chroot)" --userspec="$RUN_UID:$RUN_UID" "$rootfs" /bin/sh -c \
        "$(section environment)
$(section runscript)" runscript)
}
install -d -o "$RUN_UID" -g "$RUN_UID" -m 0750 "$WORK/data"
url=http://127.0.0.1:$PORT
curl -s -o /dev/null "$url/v2/health/live" && fail "something already listens on port $PORT"
t=$(date +%s.%N)
run_cmd "$WORK/data"
"${CMD[@]}" > "$WORK/serve.log" 2>&1 &
SERVER=$!
deadline=$(( $(date +%s) + 120 ))
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/v2/health/ready")" = 200 ]; do
    kill -0 "$SERVER" 2>/dev/null || { tail -n 30 "$WORK/serve.log" >&2; fail "the runscript exited"; }
    [ "$(date +%s)" -le "$deadline" ] || { tail -n 30 "$WORK/serve.log" >&2; fail "not ready in 120 s"; }
    sleep 0.1
done
say "runscript ready in $(since "$t")s as uid $RUN_UID"
body=$("$PY" -c 'import json; from sklearn.datasets import load_breast_cancer
x, y = load_breast_cancer(return_X_y=True)
print(json.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32",
                              "data": x[0].tolist()}]}))')
answer=$(curl -s -X POST -H 'Content-Type: application/json' -d "$body" \
    "$url/v2/models/breast_cancer/infer")
grep -q '"label"' <<<"$answer" || fail "unexpected inference answer: $answer"
[ -s "$WORK/data/registry.db" ] || fail "registry.db is not in the bound data directory"
[ "$(stat -c %u "$WORK/data/registry.db")" = "$RUN_UID" ] || fail "registry.db is not the user's"
kill -TERM "$SERVER"
code=0; wait "$SERVER" || code=$?
# uvicorn re-raises SIGTERM once it has shut down gracefully, so the status is 143, as systemd
# expects (as PID 1 in a podman container the re-raised signal is ignored: status 0)
case $code in 0|143) ;; *) tail -n 20 "$WORK/serve.log" >&2; fail "SIGTERM: exit status $code";; esac
grep -q "Scheduler has been shut down" "$WORK/serve.log" \
    || { tail -n 20 "$WORK/serve.log" >&2; fail "SIGTERM: no graceful shutdown in the log"; }
SERVER=""

install -d -o 0 -g 0 -m 0755 "$WORK/root-owned"
run_cmd "$WORK/root-owned"
rc=0; msg=$(timeout 60 "${CMD[@]}" 2>&1) || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "root-owned data directory: exit $rc, not a refusal"
grep -q "uid $RUN_UID" <<<"$msg" && grep -q chown <<<"$msg" \
    || fail "root-owned data directory: the error names neither uid $RUN_UID nor chown: $msg"
say "root-owned data directory refused: $msg"
say "OK in $(since "$START")s"
