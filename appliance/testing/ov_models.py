"""Build small test models offline: an ONNX linear classifier and its OpenVINO IR.

``onnx`` and ``openvino`` are imported inside the builders so importing this module
costs nothing and a box without them can still import :mod:`appliance.testing`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def linear_weights(
    in_features: int = 4, out_features: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The deterministic ``(W, b)`` used by :func:`build_onnx_linear_model` for ``seed``."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((in_features, out_features)).astype(np.float32)
    # A small bias keeps roughly half the ReLU outputs non-zero for N(0, 1) inputs,
    # so comparisons against the reference exercise real values, not just zeros.
    b = (0.1 * rng.standard_normal(out_features)).astype(np.float32)
    return w, b


def reference_linear(
    x: np.ndarray,
    in_features: int = 4,
    out_features: int = 3,
    seed: int = 0,
    activation: str = "relu",
) -> np.ndarray:
    """What :func:`build_onnx_linear_model` computes, in numpy: ``act(x @ W + b)``."""
    w, b = linear_weights(in_features, out_features, seed)
    z = np.asarray(x, dtype=np.float32) @ w + b
    out: np.ndarray
    if activation == "relu":
        out = np.maximum(z, 0.0).astype(np.float32)
        return out
    if activation == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        out = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
        return out
    raise ValueError(f"activation must be 'relu' or 'softmax', not {activation!r}")


def build_onnx_linear_model(
    path: Path | str,
    in_features: int = 4,
    out_features: int = 3,
    seed: int = 0,
    activation: str = "relu",
) -> Path:
    """Write ``y = act(x @ W + b)`` as ONNX to ``path``: input ``x`` FP32 ``[N, in]``,
    output ``y`` FP32 ``[N, out]`` with a dynamic batch ``N``. Returns ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if activation not in ("relu", "softmax"):
        raise ValueError(f"activation must be 'relu' or 'softmax', not {activation!r}")
    w, b = linear_weights(in_features, out_features, seed)
    act = (helper.make_node("Relu", ["z"], ["y"]) if activation == "relu"
           else helper.make_node("Softmax", ["z"], ["y"], axis=-1))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]),
         helper.make_node("Add", ["xw", "b"], ["z"]),
         act],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_features])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    # opset 17 / IR 8: old enough for every runtime we test against (ORT, OpenVINO).
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="appliance.testing")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_openvino_ir(path_xml: Path | str, from_onnx: Path | str) -> Path:
    """Convert the ONNX model ``from_onnx`` to OpenVINO IR at ``path_xml`` (``.bin``
    beside it). Weights stay FP32 so results match the ONNX reference. Returns ``path_xml``."""
    import openvino as ov

    path_xml = Path(path_xml)
    path_xml.parent.mkdir(parents=True, exist_ok=True)
    model = ov.convert_model(str(from_onnx))
    ov.save_model(model, str(path_xml), compress_to_fp16=False)
    return path_xml
