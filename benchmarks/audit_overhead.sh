#!/usr/bin/env bash
# Issue 9 benchmark: P1 (breast-cancer, one JSON row) with the audit log on (the default:
# every inference hash-chained into audit.db) against `[audit] enabled = false`, in one
# interleaved run_peer.sh run. Goal: audit on >= 0.9x audit off in req/s and p99 <= 1.5x,
# at 1, 8 and 64 connections. Short runs by default (the box is shared):
#   DURATION=8 REPEATS=2 CONNS="1 8 64" bash benchmarks/audit_overhead.sh
# OLD=/path/to/tree (a `git archive` of an earlier commit's appliance/ and
# hardware_profiles/) adds that code with audit on, for before/after in the same run.
# THREAD=1 adds audit on with the in-process writer (`[audit] writer = "thread"`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
WORK=${WORK:-/tmp/bench/audit}
rm -rf "$WORK" && mkdir -p "$WORK"
APP="$ROOT/.venv/bin/appliance"
for mode in on off thread; do
  "$APP" models add /tmp/bench/assets/model.onnx --name bc --data-dir "$WORK/var-$mode" >/dev/null
done
if [ -n "${OLD:-}" ]; then
  (cd "$OLD" && PYTHONPATH=$OLD "$ROOT/.venv/bin/python" -c 'from appliance.cli import main; main()' \
    models add /tmp/bench/assets/model.onnx --name bc --data-dir "$WORK/var-old" >/dev/null)
fi
printf '[audit]\nenabled = true\ninferences = true\n' > "$WORK/on.toml"
printf '[audit]\nenabled = false\n' > "$WORK/off.toml"
printf '[audit]\nenabled = true\nwriter = "thread"\n' > "$WORK/thread.toml"
cp "$WORK/on.toml" "$WORK/old.toml"
cmd() { echo "appliance-audit-$1::cd $ROOT && APPLIANCE_LOG_LEVEL=warning APPLIANCE_CONFIG=$WORK/$1.toml exec .venv/bin/appliance serve --host \$HOST --port \$PORT --data-dir $WORK/var-$1 --no-demo"; }
export DURATION=${DURATION:-8} REPEATS=${REPEATS:-2} CONNS=${CONNS:-"1 8 64"}
old() { echo "appliance-audit-before::cd $OLD && PYTHONPATH=$OLD APPLIANCE_LOG_LEVEL=warning APPLIANCE_CONFIG=$WORK/old.toml exec $ROOT/.venv/bin/python -c 'from appliance.cli import main; main()' serve --host \$HOST --port \$PORT --data-dir $WORK/var-old --no-demo"; }
servers=("$(cmd off)" "$(cmd on)")
if [ -n "${THREAD:-}" ]; then servers+=("$(cmd thread)"); fi
if [ -n "${OLD:-}" ]; then servers+=("$(old)"); fi
BODIES=${BODIES:-/tmp/bench/assets/bodies/row1.json} exec "$BENCH/run_peer.sh" "${servers[@]}"
