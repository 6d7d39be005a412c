#!/usr/bin/env bash
# Install the appliance from this bundle on a box with no network, or upgrade it in place.
#   ./install.sh [--root DIR] [--python PATH]
# Run as root. What it does (docs/install.md has the whole procedure):
#   - the service user "appliance" (systemd-sysusers, else useradd; never twice)
#   - /opt/appliance: a venv installed from wheels/ with pip --no-index
#   - /etc/appliance/appliance.toml from the example, kept if it exists
#   - /var/lib/appliance (0750, the service user's), kept with its data
#   - /etc/systemd/system/appliance.service, enabled when systemctl exists and root is /
# --root DIR installs under DIR instead of / (the user goes into DIR/etc/passwd, the unit
# is not enabled): for staging and tests, never touching the machine it runs on. The
# venv's scripts then name DIR in their paths, so run them there (not in a chroot).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=/
P=""            # the prefix for every installed path: "" for /, else the root
PY=""
SERVICE_USER=appliance
# the tools that create the user, first found wins (tests name a missing one to take
# the useradd path)
SYSUSERS=${SYSUSERS:-systemd-sysusers}
USERADD=${USERADD:-useradd}

say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
      --root=*) ROOT=${1#--root=}; shift ;;
      --python) [ $# -ge 2 ] || die "--python needs an interpreter"; PY=$2; shift 2 ;;
      --python=*) PY=${1#--python=}; shift ;;
      -h|--help) usage; exit 0 ;;
      *) die "unknown argument $1 (see --help)" ;;
    esac
  done
  ROOT=$(realpath -m "$ROOT")
  [ "$ROOT" = / ] && P="" || P=$ROOT
}

# The bundle is self-contained: no pip.conf, PIP_* variable or PYTHONPATH of this box
# may add an index, a find-links directory or constraints to it.
isolate_pip() {
  local v
  for v in $(compgen -e); do
    case "$v" in PIP_*|PYTHONPATH|PYTHONHOME|PYTHONUSERBASE) unset "$v" ;; esac
  done
  export PIP_CONFIG_FILE=/dev/null PYTHONNOUSERSITE=1
}

check_bundle() {
  [ -f "$HERE/bundle.env" ] || die "bundle.env is missing: run install.sh from an unpacked bundle"
  # shellcheck source=/dev/null
  . "$HERE/bundle.env"
  if command -v sha256sum >/dev/null; then
    (cd "$HERE" && sha256sum --quiet --strict -c SHA256SUMS) \
      || die "the bundle is damaged (SHA256SUMS does not match): copy it again"
  fi
  local arch
  arch=$(uname -m)
  [ "$arch" = "$ARCH" ] \
    || die "this bundle is for $ARCH ($PLATFORM), this box is $arch: build one with --platform"
}

pick_python() {
  local candidate
  if [ -z "$PY" ]; then
    for candidate in "python$PYTHON_VERSION" python3; do
      if command -v "$candidate" >/dev/null && [ "$(py_version "$candidate")" = "$PYTHON_VERSION" ]; then
        PY=$(command -v "$candidate"); break
      fi
    done
    [ -n "$PY" ] || die "no Python $PYTHON_VERSION found (the bundle's wheels are for CPython $PYTHON_VERSION): install it or pass --python PATH"
  fi
  [ "$(py_version "$PY")" = "$PYTHON_VERSION" ] \
    || die "$PY is Python $(py_version "$PY"), the bundle needs $PYTHON_VERSION"
  "$PY" -c 'import venv' 2>/dev/null || die "$PY has no venv module"
  local libc
  libc=$("$PY" -c 'import platform; print(" ".join(platform.libc_ver()))')
  if [ "$LIBC" = glibc ]; then
    [ "${libc%% *}" = glibc ] || die "this bundle needs glibc $LIBC_VERSION; this box has ${libc:-another C library}"
    local have=${libc#* }
    [ "$(printf '%s\n%s\n' "$LIBC_VERSION" "$have" | sort -V | head -1)" = "$LIBC_VERSION" ] \
      || die "this bundle needs glibc $LIBC_VERSION or newer; this box has $have"
  fi
}

py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; }

user_exists() {
  if [ -z "$P" ]; then getent passwd "$SERVICE_USER" >/dev/null
  else grep -q "^$SERVICE_USER:" "$P/etc/passwd" 2>/dev/null; fi
}

create_user() {
  install -D -m 0644 "$HERE/sysusers.d/appliance.conf" "$P/etc/sysusers.d/appliance.conf"
  if user_exists; then
    say "user $SERVICE_USER exists"
  elif command -v "$SYSUSERS" >/dev/null; then
    # config paths are read as given; --root only moves the passwd/group files
    "$SYSUSERS" --root "$ROOT" "$P/etc/sysusers.d/appliance.conf"
    say "created user $SERVICE_USER (systemd-sysusers)"
  elif command -v "$USERADD" >/dev/null; then
    local where=()
    [ -z "$P" ] || where=(--prefix "$P")  # edits $P/etc/passwd, group, shadow
    "$USERADD" "${where[@]}" --system --user-group --no-create-home --home-dir /var/lib/appliance \
      --shell /usr/sbin/nologin --comment "appliance model server" "$SERVICE_USER"
    say "created user $SERVICE_USER (useradd)"
  else
    die "neither systemd-sysusers nor useradd is here: create a system user $SERVICE_USER first"
  fi
}

# uid and gid of the service user, as the installed system sees them
service_ids() {
  if [ -z "$P" ]; then echo "$(id -u "$SERVICE_USER") $(id -g "$SERVICE_USER")"
  else awk -F: -v u="$SERVICE_USER" '$1 == u { print $3, $4; exit }' "$P/etc/passwd"; fi
}

install_venv() {
  local venv="$P/opt/appliance" wheels="$HERE/wheels"
  if [ -x "$venv/bin/python" ] && [ "$(py_version "$venv/bin/python")" != "$PYTHON_VERSION" ]; then
    say "the venv's Python is not $PYTHON_VERSION: recreating $venv"
    rm -rf "$venv"
  fi
  # --without-pip: no ensurepip needed (Debian splits it out); pip comes from the bundle
  [ -x "$venv/bin/python" ] || "$PY" -m venv --without-pip "$venv"
  local pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input --quiet)
  if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    local wheel
    wheel=$(ls "$wheels"/pip-*.whl | head -1)
    "$venv/bin/python" "$wheel/pip" install --no-index --no-input --quiet "$wheel"
  fi
  "${pip[@]}" install --no-index --find-links "$wheels" --upgrade pip
  local extras=""
  [ -z "$EXTRAS" ] || extras="[$EXTRAS]"
  "${pip[@]}" install --no-index --find-links "$wheels" -c "$HERE/constraints.txt" \
    --upgrade --upgrade-strategy eager "appliance$extras==$APPLIANCE_VERSION"
  # the same version rebuilt (a fix without a version bump) still replaces the files
  "${pip[@]}" install --no-index --no-deps --force-reinstall "$wheels/$APPLIANCE_WHEEL"
  if [ -n "$DEMO_PACKAGES" ]; then
    # shellcheck disable=SC2086  # a list of names
    "${pip[@]}" install --no-index --find-links "$wheels" -c "$HERE/constraints.txt" \
      --no-deps --upgrade $DEMO_PACKAGES
  fi
  say "installed appliance $APPLIANCE_VERSION${extras} in $venv"
}

install_files() {
  local uid gid conf="$P/etc/appliance/appliance.toml"
  read -r uid gid < <(service_ids)
  [ -n "$uid" ] || die "cannot find the uid of $SERVICE_USER"
  install -d -m 0755 "$P/etc/appliance"
  install -m 0644 "$HERE/appliance.example.toml" "$P/etc/appliance/appliance.example.toml"
  if [ -e "$conf" ]; then
    say "kept $conf (compare with appliance.example.toml beside it)"
  else
    install -m 0640 -o 0 -g "$gid" "$HERE/appliance.example.toml" "$conf"
    say "wrote $conf"
  fi
  install -D -m 0644 "$HERE/tmpfiles.d/appliance.conf" "$P/etc/tmpfiles.d/appliance.conf"
  install -d -m 0750 -o "$uid" -g "$gid" "$P/var/lib/appliance"
  install -D -m 0644 "$HERE/appliance.service" "$P/etc/systemd/system/appliance.service"
}

enable_unit() {
  if [ -n "$P" ]; then
    say "unit installed, not enabled (--root): systemctl --root $ROOT enable appliance.service"
  elif ! command -v systemctl >/dev/null; then
    say "no systemctl: start it with /opt/appliance/bin/appliance serve (as $SERVICE_USER)"
  elif [ ! -d /run/systemd/system ]; then
    systemctl enable appliance.service
    say "enabled appliance.service (systemd is not running: it starts on the next boot)"
  else
    systemctl daemon-reload
    systemctl enable appliance.service
    if systemctl is-active --quiet appliance.service; then
      systemctl restart appliance.service
      say "restarted appliance.service on the new version"
    else
      say "enabled appliance.service: systemctl start appliance"
    fi
  fi
}

main() {
  parse_args "$@"
  [ "$(id -u)" = 0 ] || die "run as root: it creates a user and writes under $ROOT"
  isolate_pip
  check_bundle
  pick_python
  say "installing appliance $APPLIANCE_VERSION ($PLATFORM, CPython $PYTHON_VERSION) under $ROOT"
  create_user
  install_venv
  install_files
  enable_unit
  say "done"
}

# sourcing the file (tests) defines the functions without running them
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
