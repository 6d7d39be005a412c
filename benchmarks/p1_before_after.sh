#!/usr/bin/env bash
# P1 (breast-cancer, one JSON row) of the appliance at a git ref (default: the last
# landed main before this change, BASE_REF) against the working tree, in one interleaved
# run_peer.sh run, with the Litestar constant line as the yardstick. Both serve model
# `bc` with audit off, so the figure is the request path alone.
#   benchmarks/p1_before_after.sh [BASE_REF]      (DURATION=10 REPEATS=2 CONNS="1 8 64")
# HEAD_REF=<ref> measures that commit instead of the working tree (so edits made while it
# runs do not change what is measured).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
REF=${1:-${BASE_REF:-ba5b32e}}
WORK=${WORK:-/tmp/bench/p1-before-after}
rm -rf "$WORK" && mkdir -p "$WORK/base" "$WORK/head"
git -C "$ROOT" archive "$REF" | tar -x -C "$WORK/base"
HEAD_DIR=$ROOT
if [ -n "${HEAD_REF:-}" ]; then
  git -C "$ROOT" archive "$HEAD_REF" | tar -x -C "$WORK/head"
  HEAD_DIR=$WORK/head
fi
APP="$ROOT/.venv/bin/appliance"
for side in base head; do
  "$APP" models add /tmp/bench/assets/model.onnx --name bc --data-dir "$WORK/var-$side" >/dev/null
done
printf '[audit]\nenabled = false\n' > "$WORK/off.toml"
# PYTHONPATH puts the extracted tree before the editable install's finder
base="appliance-$REF::cd $WORK/base && PYTHONPATH=$WORK/base:$WORK/base/plugins APPLIANCE_LOG_LEVEL=warning APPLIANCE_CONFIG=$WORK/off.toml exec $ROOT/.venv/bin/python -m appliance.cli serve --host \$HOST --port \$PORT --data-dir $WORK/var-base --no-demo"
head="appliance-head::cd $HEAD_DIR && PYTHONPATH=$HEAD_DIR:$HEAD_DIR/plugins APPLIANCE_LOG_LEVEL=warning APPLIANCE_CONFIG=$WORK/off.toml exec $ROOT/.venv/bin/python -m appliance.cli serve --host \$HOST --port \$PORT --data-dir $WORK/var-head --no-demo"
source "$BENCH/servers.sh"
BODIES=${BODIES:-/tmp/bench/assets/bodies/row1.json} exec "$BENCH/run_peer.sh" "$base" "$head" "$LIT_UV_CONST"
