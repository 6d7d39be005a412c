#!/usr/bin/env bash
# Issue 6 benchmark: P1 (breast-cancer, one JSON row) with auth + audit ON (a Bearer
# token checked on every request, every inference hash-chained into the audit log)
# against both OFF, in one interleaved run_peer.sh run, with the Litestar constant line.
# The harness is copied to a temp dir and taught to send the Authorization header
# (AUTH_HEADER) from wrk and curl; the shared folder is left as it is.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
WORK=${WORK:-/tmp/bench/security}
rm -rf "$WORK" && mkdir -p "$WORK"
cp -r "$BENCH" "$WORK/harness"
chmod -R u+w "$WORK/harness"
sed -i 's|^wrk.headers\["Content-Type"\] = "application/json"|&\nif os.getenv("AUTH_HEADER") then wrk.headers["Authorization"] = os.getenv("AUTH_HEADER") end|' "$WORK/harness/v2_post.lua"
sed -i 's|curl -sf -o /dev/null "\$BASE/v2/models/\$MODEL/ready"|curl -sf -o /dev/null -H "Authorization: ${AUTH_HEADER:-none}" "$BASE/v2/models/$MODEL/ready"|; s|-H .Content-Type: application/json. --data-binary|-H "Authorization: ${AUTH_HEADER:-none}" -H "Content-Type: application/json" --data-binary|' "$WORK/harness/run_peer.sh"
APP="$ROOT/.venv/bin/appliance"
for mode in on off; do
  "$APP" models add /tmp/bench/assets/model.onnx --name bc --data-dir "$WORK/var-$mode" >/dev/null
done
TOKEN=$("$APP" tokens issue --sub bench --scope models:infer --scope models:read --ttl 2h --data-dir "$WORK/var-on" | tail -1)
printf '[auth]\nmode = "on"\n[audit]\nenabled = true\ninferences = true\n' > "$WORK/on.toml"
printf '[auth]\nmode = "off"\n[audit]\nenabled = false\n' > "$WORK/off.toml"
cmd() { echo "appliance-sec-$1::cd $ROOT && APPLIANCE_LOG_LEVEL=warning APPLIANCE_CONFIG=$WORK/$1.toml exec .venv/bin/appliance serve --host \$HOST --port \$PORT --data-dir $WORK/var-$1 --no-demo"; }
source "$BENCH/servers.sh"
export AUTH_HEADER="Bearer $TOKEN"
BODIES=${BODIES:-/tmp/bench/assets/bodies/row1.json} exec "$WORK/harness/run_peer.sh" "$(cmd off)" "$(cmd on)" "$LIT_UV_CONST"
