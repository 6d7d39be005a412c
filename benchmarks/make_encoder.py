"""A MiniLM-sized dense encoder in ONNX, built offline (onnx.helper, fixed seed).

    .venv/bin/python benchmarks/make_encoder.py OUT.onnx

Input ``x`` FP32 [-1, 384] -> 6 residual blocks (384x1536 MatMul, Relu, 1536x384 MatMul,
Add) -> ``y`` FP32 [-1, 384]: 7.1 M parameters (all-MiniLM-L6-v2 has 22.7 M, of which
11.9 M in embeddings; its six layers hold ~1.8 M each). Not a language model: a
stand-in with the same GEMM shapes, for measuring what batching does to a compute-bound
model on this CPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN, INTER, LAYERS = 384, 1536, 6


def build(path: Path) -> Path:
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    prev = "x"
    for i in range(LAYERS):
        w1 = (rng.standard_normal((HIDDEN, INTER)) / np.sqrt(HIDDEN)).astype(np.float32)
        w2 = (rng.standard_normal((INTER, HIDDEN)) / np.sqrt(INTER)).astype(np.float32)
        inits += [numpy_helper.from_array(w1, f"w1_{i}"), numpy_helper.from_array(w2, f"w2_{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w1_{i}"], [f"h{i}"]),
                  helper.make_node("Relu", [f"h{i}"], [f"r{i}"]),
                  helper.make_node("MatMul", [f"r{i}", f"w2_{i}"], [f"o{i}"]),
                  helper.make_node("Add", [prev, f"o{i}"], [f"b{i}" if i < LAYERS - 1 else "y"])]
        prev = f"b{i}"
    graph = helper.make_graph(
        nodes, "encoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, HIDDEN])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
