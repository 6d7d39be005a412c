"""Peak RSS and wall time of `appliance package build` and `appliance models push` for a
large package (issue 11: a 1 GB push peaked at 3.1 GB and printed nothing for 17.5 s).

    .venv/bin/python benchmarks/push_memory.py [--mb 1024] [--tree DIR] [--keep DIR]

The package is one ONNX variant: a small graph (y = x * 2, plus 0 * sum(big)) whose
initializer ``big`` holds ``--mb`` MiB, embedded in ``model.onnx`` (ONNX Runtime loads
it from memory, so the served model is a real one). The file is written without building
it in memory: a serialized ModelProto followed by a second one holding only
``graph.initializer``; protobuf merges the two when it parses the file.

Each command runs as a fresh process on a fresh data directory (encryption at rest on,
the default); its peak RSS is the kernel's ``ru_maxrss`` for that child (``os.wait4``).
``--tree DIR`` runs the commands from another checkout (``git worktree add
/tmp/push-before HEAD``) to measure the code before a change; its plugins/ is used too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 8 << 20

MANIFEST = """\
name = "big"
version = "1"

[[variants]]
precision = "fp32"
format = "onnx"
primary = "model.onnx"
files = [{ path = "model.onnx" }]

[[inputs]]
name = "x"
datatype = "FP32"
shape = [-1, 2]

[[outputs]]
name = "y"
datatype = "FP32"
shape = [-1, 2]

[tags]
owner = "bench@example.com"
sensitivity = "internal"
impact = "low"
"""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, length: int) -> bytes:
    """The tag and length of a length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(length)


def write_big_onnx(path: Path, weight_bytes: int) -> Path:
    """An ONNX model whose FP32 initializer ``big`` has ``weight_bytes`` (a multiple of
    4) of data, streamed to ``path`` in 8 MiB pieces."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    k = numpy_helper.from_array(np.array([2.0], dtype=np.float32), "k")
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")
    nodes = [helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
             helper.make_node("Mul", ["s", "zero"], ["z"]),
             helper.make_node("Mul", ["x", "k"], ["xk"]),
             helper.make_node("Add", ["xk", "z"], ["y"])]
    graph = helper.make_graph(nodes, "big", [x], [y], initializer=[k, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    head = TensorProto(name="big", dims=[weight_bytes // 4], data_type=TensorProto.FLOAT)
    tensor_head = head.SerializeToString() + _field(9, weight_bytes)  # raw_data follows
    tensor_len = len(tensor_head) + weight_bytes
    graph_head = _field(5, tensor_len)  # GraphProto.initializer
    pattern = (np.arange(CHUNK // 4, dtype=np.float32) % 251 / 251).tobytes()
    with path.open("wb") as f:
        f.write(model.SerializeToString())
        f.write(_field(7, len(graph_head) + tensor_len) + graph_head + tensor_head)
        left = weight_bytes
        while left:
            f.write(pattern[:min(left, CHUNK)])
            left -= min(left, CHUNK)
    return path


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(peak RSS in MiB, wall seconds, stderr) of one CLI command."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        err.seek(0)
        text = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{text}")
    return usage.ru_maxrss / 1024, wall, text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=1024, help="weights in MiB (default 1024)")
    ap.add_argument("--tree", type=Path, default=None,
                    help="run the CLI from this checkout (e.g. a worktree of HEAD)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="work in this directory and keep it (default: a temporary one)")
    opts = ap.parse_args()
    tree = (opts.tree or ROOT).resolve()
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'plugins'}",
           "APPLIANCE_LOG_LEVEL": "warning"}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)
    with tempfile.TemporaryDirectory(prefix="push-memory-") as tmp:
        work = opts.keep or Path(tmp)
        src, var = work / "src", work / "var"
        src.mkdir(parents=True, exist_ok=True)
        (src / "model.toml").write_text(MANIFEST)
        t0 = time.perf_counter()
        write_big_onnx(src / "model.onnx", opts.mb << 20)
        print(f"made a {opts.mb} MiB package in {time.perf_counter() - t0:.1f} s "
              f"(code: {tree})")
        base, _, _ = run(["models", "list", "--data-dir", str(var)], env)
        print(f"{'models list (baseline)':<24} peak RSS {base:8.0f} MiB")
        tar = work / "big.tar"
        for label, args in (("package build", ["package", "build", str(src), "-o", str(tar)]),
                            ("models push", ["models", "push", str(tar), "--data-dir",
                                             str(var)])):
            rss, wall, _ = run(args, env)
            print(f"{label:<24} peak RSS {rss:8.0f} MiB  (+{rss - base:.0f} over baseline)"
                  f"  wall {wall:6.1f} s")


if __name__ == "__main__":
    main()
