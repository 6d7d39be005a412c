#!/usr/bin/env bash
# What tracing costs per request, in instructions (valgrind callgrind, repeatable on a
# noisy box): benchmarks/instructions_per_request.sh on the same tree and data dir with
# tracing off (no endpoint, the default) and on at the default 1 in 1000, then the ratio.
# P1 shape: one JSON row on breast_cancer (model `bc`), c=1, audit off in both. The spans
# go to a local OTLP sink (python3 http.server answering 200), so export is counted too.
# With ALL=1 a third run traces every request (what one sampled request costs).
#   benchmarks/tracing_cost.sh TREE DATA_DIR [N]
# TREE must have the otel extra in the .venv beside this script (./dev.sh setup does);
# DATA_DIR must hold model `bc`:
#   ASSETS=/tmp/bench/assets .venv/bin/python /work/shared/bench/make_assets.py
#   .venv/bin/appliance models add /tmp/bench/assets/model.onnx --name bc --data-dir DATA_DIR
# Takes ~5 min (~8 with ALL=1).
set -euo pipefail
TREE=$(cd "$1" && pwd); DATA=$2; N=${3:-2000}
HERE=$(cd "$(dirname "$0")" && pwd)
CONF=$(mktemp -d)
SINK_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# the sink counts the traces it receives (opentelemetry-proto comes with the otel extra)
"$HERE/../.venv/bin/python" - "$SINK_PORT" "$CONF/traces" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
traces = set()
class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        traces.update(s.trace_id for r in request.resource_spans for ss in r.scope_spans
                      for s in ss.spans)
        with open(sys.argv[2], "w") as f:
            f.write(str(len(traces)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
SINK=$!
trap 'kill $SINK 2>/dev/null || true' EXIT
ENDPOINT="http://127.0.0.1:$SINK_PORT/v1/traces"
printf '[audit]\nenabled = false\n' > "$CONF/off.toml"
printf '[audit]\nenabled = false\n[tracing]\nendpoint = "%s"\nsample_ratio = %s\n' \
  "$ENDPOINT" 0.001 > "$CONF/on.toml"
printf '[audit]\nenabled = false\n[tracing]\nendpoint = "%s"\nsample_ratio = 1.0\n' \
  "$ENDPOINT" > "$CONF/all.toml"
# each run's report goes to stderr through a file: `tee /dev/stderr` would reopen (and
# truncate) a log file that stderr is redirected to
per() { "$HERE/instructions_per_request.sh" "$TREE" "$DATA" "$CONF/$1.toml" "$N" \
          > "$CONF/$1.out" 2>&1
        grep -a 'instructions over\|child processes' "$CONF/$1.out" >&2
        echo "traces received by the sink so far: $(cat "$CONF/traces" 2>/dev/null || echo 0)" >&2
        sed -nE 's/.* instructions over .* = ([0-9]+) per request/\1/p' "$CONF/$1.out"; }
off=$(per off)
on=$(per on)
python3 -c "import sys; on, off = int(sys.argv[1]), int(sys.argv[2]); print(
  f'tracing at 1/1000: {on} instr/request, off: {off}; on/off = {on / off:.4f}')" "$on" "$off"
if [ "${ALL:-0}" = 1 ]; then
  all=$(per all)
  python3 -c "import sys; a, off = int(sys.argv[1]), int(sys.argv[2]); print(
    f'every request traced: {a} instr/request; all/off = {a / off:.4f} '
    f'(+{a - off} per sampled request)')" "$all" "$off"
fi
