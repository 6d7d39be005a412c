#!/usr/bin/env bash
# Size of the air-gapped bundle (`appliance bundle build`) per platform and extras.
#   benchmarks/bundle_sizes.sh [OUT_DIR]      (needs the package index; pip's cache helps)
# openvino 2026.4.1 publishes aarch64 wheels for glibc 2.35 only, so the aarch64 bundle
# with it targets manylinux_2_35; on manylinux_2_28 it is built without openvino.
set -euo pipefail
cd "$(dirname "$0")/.."
APPLIANCE=${APPLIANCE:-.venv/bin/appliance}
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"

printf '%-26s %-22s %9s %7s  %s\n' platform extras MiB wheels "needs"
while read -r platform extras; do
  tar="$OUT/appliance-$platform-${extras//,/-}.tar"
  if info=$("$APPLIANCE" bundle build "$tar" --platform "$platform" --extras "$extras" --json); then
    python3 - "$platform" "$extras" "$info" <<'PY'
import json, sys
platform, extras, info = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"{platform:26} {extras:22} {info['size_bytes'] / 2**20:9.1f} {len(info['wheels']):7}  "
      f"{info['libc_floor']}")
PY
  else
    printf '%-26s %-22s %9s  %s\n' "$platform" "$extras" refused \
      "$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["error"])' "$info")"
  fi
done <<'TARGETS'
manylinux_2_28_x86_64 cpu
manylinux_2_28_x86_64 cpu,openvino,litert
manylinux_2_28_aarch64 cpu
manylinux_2_28_aarch64 cpu,litert
manylinux_2_28_aarch64 cpu,openvino,litert
manylinux_2_35_aarch64 cpu,openvino,litert
TARGETS
echo "bundles in $OUT"
