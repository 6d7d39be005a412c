#!/usr/bin/env bash
# P3: a compute-bound model (MODEL=encoder, the default, or MODEL=magika) at 1/8/64 connections, dynamic batching off
# vs on, one interleaved run_peer.sh run (server pinned to core 0, wrk on core 1).
#   bash benchmarks/batching_bench.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
OUT=${WORK:-/tmp/bench/batching}
mkdir -p "$OUT"
# MODEL=magika (the real file-type model) or MODEL=encoder (MiniLM-sized dense stack)
MODEL=${MODEL:-encoder}
PY="$ROOT/.venv/bin/python"
if [ "$MODEL" = magika ]; then
  FILE=$("$PY" -c 'from appliance.demo import magika_model_dir; print(magika_model_dir() / "model.onnx")')
  "$PY" -m appliance.demo.magika_features "$ROOT/appliance/cli/serve.py" > "$OUT/body.json"
else
  FILE=$("$PY" "$ROOT/benchmarks/make_encoder.py" "$OUT/encoder.onnx")
  "$PY" -c 'import json; print(json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 384], "data": [0.01 * (i % 97) for i in range(384)]}]}))' > "$OUT/body.json"
fi
for mode in off on; do
  rm -rf "$OUT/var-$mode"
  "$ROOT/.venv/bin/appliance" models add "$FILE" --name "$MODEL" --data-dir "$OUT/var-$mode" >/dev/null
done
cat > "$OUT/off.toml" <<TOML
[models.$MODEL]
instances = 1
TOML
cat > "$OUT/on.toml" <<TOML
[models.$MODEL]
instances = 1
max_batch_size = ${MAX_BATCH:-32}
max_queue_delay_us = ${DELAY_US:-2000}
max_queue_size = 512
TOML
cmd() {  # $1 mode
  echo "appliance-batch-$1::cd $ROOT && APPLIANCE_LOG_LEVEL=warning APPLIANCE_CONFIG=$OUT/$1.toml exec .venv/bin/appliance serve --host \$HOST --port \$PORT --data-dir $OUT/var-$1 --no-demo"
}
MODEL=$MODEL BODIES="$OUT/body.json" exec "$BENCH/run_peer.sh" "$(cmd off)" "$(cmd on)"
