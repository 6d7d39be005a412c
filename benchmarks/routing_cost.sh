#!/usr/bin/env bash
# What routing costs the client: P1 (breast-cancer, one JSON row; `bc`) with the default
# route, with a two-version canary route (5 % to the candidate, analysis on), and with a
# 100 % shadow of a second version, in one interleaved ../shared/bench/run_peer.sh run
# (server on core 0, wrk on core 1), with the Litestar constant line as the yardstick.
# Both versions are the same model file, so the canary stays healthy and the shadow
# agrees; audit off everywhere, so the figure is the request path plus routing.
#   bash benchmarks/routing_cost.sh        (DURATION=10 REPEATS=2 CONNS="1 8 64")
# After the run, each side's shadow report is printed (copies compared, shed, why).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
WORK=${WORK:-/tmp/bench/routing-cost}
APP="$ROOT/.venv/bin/appliance"
[ -x "$APP" ] || "$ROOT/dev.sh" setup cpu,openvino,litert
[ -r /tmp/bench/assets/model.onnx ] || { echo "run: bash $BENCH/setup.sh" >&2; exit 2; }
rm -rf "$WORK" && mkdir -p "$WORK"
printf 'signing_policy = {}\n[audit]\nenabled = false\n' > "$WORK/conf.toml"
export APPLIANCE_CONFIG=$WORK/conf.toml
for side in plain canary shadow; do
  var=$WORK/var-$side
  "$APP" models add /tmp/bench/assets/model.onnx --name bc --data-dir "$var" >/dev/null
  "$APP" models add /tmp/bench/assets/model.onnx --name bc --data-dir "$var" >/dev/null
  "$APP" models promote bc 1 --to production --data-dir "$var" >/dev/null
done
"$APP" models promote bc 2 --to canary --data-dir "$WORK/var-canary" >/dev/null
"$APP" routes set bc --canary 2 --steps 5,25,50,100 --interval 3600 \
  --data-dir "$WORK/var-canary" >/dev/null
"$APP" models promote bc 2 --to shadow --data-dir "$WORK/var-shadow" >/dev/null
"$APP" routes set bc --shadow 2 --data-dir "$WORK/var-shadow" >/dev/null
# the shadow's default rate cap (200/s) would shed most copies at P1 rates; lift it so the
# shadow really runs on every request (what it costs the client is then the worst case)
printf 'signing_policy = {}\n[audit]\nenabled = false\n[routing]\nshadow_rate_per_s = 100000\n' \
  > "$WORK/shadow.toml"
run() {  # label, side, config
  echo "appliance-$1::cd $ROOT && APPLIANCE_LOG_LEVEL=warning APPLIANCE_CONFIG=$3 exec $APP serve --host \$HOST --port \$PORT --data-dir $WORK/var-$2 --no-demo"
}
source "$BENCH/servers.sh"
BODIES=${BODIES:-/tmp/bench/assets/bodies/row1.json} "$BENCH/run_peer.sh" \
  "$(run plain plain "$WORK/conf.toml")" "$(run canary canary "$WORK/conf.toml")" \
  "$(run shadow shadow "$WORK/shadow.toml")" "$LIT_UV_CONST"
for side in canary shadow; do
  echo "== $side: stored route state / shadow report"
  "$APP" routes show bc --data-dir "$WORK/var-$side" | head -c 600; echo
done
"$APP" routes shadow-report bc --data-dir "$WORK/var-shadow" || true
