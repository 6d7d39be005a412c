"""Toy ONNX models built offline with onnx.helper, for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def identity_model(path: Path, *, elem: int = TensorProto.FLOAT, shape=(None, 3),
                   name: str = "x", out: str = "y") -> Path:
    """y = Identity(x) for any element type."""
    inp = helper.make_tensor_value_info(name, elem, list(shape))
    outp = helper.make_tensor_value_info(out, elem, list(shape))
    graph = helper.make_graph([helper.make_node("Identity", [name], [out])], "identity",
                              [inp], [outp])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def two_output_model(path: Path) -> Path:
    """sum = a + b and prod = a * b over FP32 [-1, 2]."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 2])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 2])
    s = helper.make_tensor_value_info("sum", TensorProto.FLOAT, [None, 2])
    p = helper.make_tensor_value_info("prod", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["sum"]),
                               helper.make_node("Mul", ["a", "b"], ["prod"])],
                              "two", [a, b], [s, p])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def scale_model(path: Path, factor: float) -> Path:
    """y = x * factor over FP32 [-1, 2]: versions of one model that answer differently."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    k = numpy_helper.from_array(np.array([factor], dtype=np.float32), "k")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["y"])], "scale",
                              [x], [y], initializer=[k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def scale_manifest(**extra: object) -> dict:
    """The manifest of a two-variant package of :func:`scale_model` (fp32 and int8 files
    under ``fp32/`` and ``int8/``), without hashes; ``extra`` adds or replaces fields."""
    return {
        "name": "scale", "version": "1", "description": "y = 2x",
        "variants": [
            {"precision": "fp32", "format": "onnx", "primary": "fp32/model.onnx",
             "files": [{"path": "fp32/model.onnx"}]},
            {"precision": "int8", "format": "onnx", "primary": "int8/model.int8.onnx",
             "files": [{"path": "int8/model.int8.onnx"}]}],
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
        "tags": {"owner": "ml@example.com", "sensitivity": "internal", "impact": "low"},
        **extra}
