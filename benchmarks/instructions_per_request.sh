#!/usr/bin/env bash
# Instructions per inference request (valgrind callgrind: a count, not a time, so it is
# repeatable on a noisy shared box). Serves model `bc` from TREE (a checkout or a
# `git archive` of one) under callgrind with instrumentation off, warms up with 200
# (WARMUP=N: N)
# requests, then counts every thread's instructions over N keep-alive requests
# (one JSON row, c=1) and prints instructions per request.
#   benchmarks/instructions_per_request.sh TREE DATA_DIR CONFIG [N]
# DATA_DIR must hold model `bc` (`appliance models add /tmp/bench/assets/model.onnx --name bc`);
# CONFIG is the appliance TOML (e.g. `[audit] enabled = false`). Takes ~2 min.
set -euo pipefail
TREE=$(cd "$1" && pwd); DATA=$2; CONFIG=$3; N=${4:-2000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BODY=${BODY:-/tmp/bench/assets/bodies/row1.json}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
OUT=$(mktemp -d)/callgrind.out
cd "$TREE"
PYTHONPATH=$TREE:$TREE/plugins APPLIANCE_LOG_LEVEL=warning APPLIANCE_CONFIG=$CONFIG \
  PYTHONMALLOC=malloc valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$OUT" "$ROOT/.venv/bin/python" -m appliance.cli serve \
  --host 127.0.0.1 --port "$PORT" --data-dir "$DATA" --no-demo > "$OUT.log" 2>&1 &
VG=$!
trap 'kill $VG 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -sf "127.0.0.1:$PORT/v2/models/bc/ready" > /dev/null 2>&1 && break
  sleep 1
done
load() {
  python3 - "$PORT" "$BODY" "$1" <<'PY'
import http.client, sys
port, body, n = int(sys.argv[1]), open(sys.argv[2], "rb").read(), int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("POST", "/v2/models/bc/infer", body, {"Content-Type": "application/json"})
    r = c.getresponse(); r.read(); assert r.status == 200, r.status
PY
}
# CPU ticks of the server's child processes (the audit writer process runs natively:
# callgrind does not follow children), so the total cost of a request is reported too
child_ticks() {
  local sum=0 pid
  for pid in $(pgrep -P "$VG" || true); do
    sum=$((sum + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$sum"
}
load "${WARMUP:-200}"
callgrind_control -i on "$VG" > /dev/null
before=$(child_ticks)
load "$N"
callgrind_control -i off "$VG" > /dev/null
after=$(child_ticks)
callgrind_control -d "$VG" > /dev/null
sleep 1
total=$(grep -h '^totals:' "$OUT".* | awk '{s+=$2} END {printf "%.0f", s}')
echo "$TREE: $total instructions over $N requests = $((total / N)) per request"
hz=$(getconf CLK_TCK)
echo "child processes: $(( (after - before) * 1000000 / hz / N )) µs CPU per request (outside callgrind)"
