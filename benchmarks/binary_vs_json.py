"""P4: a 1x3x224x224 FP32 tensor through the appliance and back, JSON vs binary.

    .venv/bin/python benchmarks/binary_vs_json.py [--n 30]

Starts `appliance serve` (pinned to core 0 when possible) on a fresh data dir with an
Identity model of that shape, then times tritonclient round trips (client encode, HTTP,
server decode/predict/encode, client decode) with binary_data=False and =True, and
checks both return the tensor exactly.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.http as triton
from onnx import TensorProto, helper


def identity(path: Path) -> Path:
    shape = [None, 3, 224, 224]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args()
    root = Path(__file__).resolve().parent.parent
    appliance = str(root / ".venv" / "bin" / "appliance")
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "var"
        subprocess.run([appliance, "models", "add", str(identity(Path(d) / "img.onnx")),
                        "--name", "img", "--data-dir", str(data)], check=True,
                       capture_output=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "APPLIANCE_LOG_LEVEL": "warning"}
        proc = subprocess.Popen(["taskset", "-c", "0", appliance, "serve", "--port", str(port),
                                 "--data-dir", str(data), "--no-demo"], env=env)
        try:
            client = triton.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=120)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.is_model_ready("img"):
                        break
                except Exception:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("server not ready")
                time.sleep(0.1)
            x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
            results = {}
            for binary in (False, True):
                times = []
                for i in range(args.n + 3):
                    t0 = time.perf_counter()
                    inp = triton.InferInput("x", list(x.shape), "FP32")
                    inp.set_data_from_numpy(x, binary_data=binary)
                    out = client.infer("img", [inp], outputs=[
                        triton.InferRequestedOutput("y", binary_data=binary)])
                    y = out.as_numpy("y")
                    if i >= 3:  # warm-up rounds not counted
                        times.append(time.perf_counter() - t0)
                assert np.array_equal(y, x), "round trip changed the tensor"
                results[binary] = statistics.median(times) * 1000
            client.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    print(f"1x3x224x224 FP32 round trip, median of {args.n}:")
    print(f"  JSON   {results[False]:8.2f} ms")
    print(f"  binary {results[True]:8.2f} ms")
    print(f"  binary is {results[False] / results[True]:.1f}x faster")


if __name__ == "__main__":
    sys.exit(main())
