#!/usr/bin/env bash
# P1-style run: the appliance beside MLServer and the bare-Litestar limits, one interleaved
# run of ../shared/bench/run_peer.sh (server pinned to core 0, wrk on core 1).
#   bash benchmarks/peer_bench.sh            # after: bash ../shared/bench/setup.sh
# Knobs pass through to run_peer.sh (DURATION, REPEATS, CONNS, BODIES, ...).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
DATA=${DATA:-/tmp/bench/appliance-var}
[ -x "$ROOT/.venv/bin/appliance" ] || "$ROOT/dev.sh" setup cpu,openvino,litert
[ -r /tmp/bench/assets/model.onnx ] || { echo "run: bash $BENCH/setup.sh" >&2; exit 2; }

# The same model file the peers serve, registered as "bc".
rm -rf "$DATA"
"$ROOT/.venv/bin/appliance" models add /tmp/bench/assets/model.onnx --name bc --data-dir "$DATA"

source "$BENCH/servers.sh"
APPLIANCE="appliance::cd $ROOT && APPLIANCE_LOG_LEVEL=warning exec .venv/bin/appliance serve --host \$HOST --port \$PORT --data-dir $DATA --no-demo"
exec "$BENCH/run_peer.sh" "$MLS_ONNX_HT" "$LIT_UV_ONNX" "$LIT_UV_CONST" "$APPLIANCE"
