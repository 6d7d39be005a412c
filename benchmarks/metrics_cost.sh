#!/usr/bin/env bash
# What monitoring costs per request, in instructions (valgrind callgrind, repeatable on a
# noisy box): benchmarks/instructions_per_request.sh on the same tree and data dir with
# everything on ([metrics] enabled + server_timing, the defaults) and everything off, then
# the ratio. P1 shape: one JSON row on breast_cancer (model `bc`), c=1, audit off in both.
#   benchmarks/metrics_cost.sh TREE DATA_DIR [N]
# DATA_DIR must hold model `bc`:
#   ASSETS=/tmp/bench/assets .venv/bin/python /work/shared/bench/make_assets.py
#   .venv/bin/appliance models add /tmp/bench/assets/model.onnx --name bc --data-dir DATA_DIR
# Takes ~5 min.
set -euo pipefail
TREE=$(cd "$1" && pwd); DATA=$2; N=${3:-2000}
HERE=$(cd "$(dirname "$0")" && pwd)
CONF=$(mktemp -d)
printf '[audit]\nenabled = false\n' > "$CONF/on.toml"
printf '[audit]\nenabled = false\n[metrics]\nenabled = false\nserver_timing = false\n' \
  > "$CONF/off.toml"
per() { "$HERE/instructions_per_request.sh" "$TREE" "$DATA" "$CONF/$1.toml" "$N" | tee /dev/stderr |
        sed -nE 's/.* instructions over .* = ([0-9]+) per request/\1/p'; }
off=$(per off)
on=$(per on)
python3 -c "import sys; on, off = int(sys.argv[1]), int(sys.argv[2]); print(
  f'metrics on: {on} instr/request, off: {off}; on/off = {on / off:.4f}; '
  f'throughput bound off/on = {off / on:.4f}')" "$on" "$off"
