"""The conformance cases of the built-in backends (ONNX Runtime, OpenVINO, LiteRT), and
model-building helpers a plugin's own cases can reuse; the suite itself is
:mod:`appliance.testing.conformance`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from appliance.backend import Backend
from appliance.testing.conformance import ConformanceCase

__all__ = [
    "BUILTIN_CASES",
    "builtin_cases",
    "normal_inputs",
    "onnx_linear_case",
    "openvino_ir_case",
    "tflite_fully_connected_case",
]

Feed = dict[str, np.ndarray]


def normal_inputs(name: str, features: int, seed: int = 0) -> Callable[[int], Feed]:
    """``inputs`` for a case: ``{name: float32 [batch, features]}`` drawn from N(0, 1)
    with a fixed seed, so a batch size always gives the same arrays."""

    def inputs(batch: int) -> Feed:
        rng = np.random.default_rng(seed)
        return {name: rng.standard_normal((batch, features)).astype(np.float32)}

    return inputs


def onnx_linear_case(directory: Path, backend: Backend, *, options: dict[str, Any] | None
                     = None, atol: float = 1e-5, rtol: float = 1e-5) -> ConformanceCase:
    """``softmax(x @ W + b)`` (8 -> 3, dynamic batch) as ONNX, for ``backend``."""
    from appliance.testing.ov_models import build_onnx_linear_model, reference_linear

    path = build_onnx_linear_model(Path(directory) / "linear.onnx", in_features=8,
                                   out_features=3, seed=0, activation="softmax")
    return ConformanceCase(
        backend, path, "onnx", normal_inputs("x", 8),
        lambda feed: {"y": reference_linear(feed["x"], 8, 3, 0, "softmax")},
        atol, rtol, dict(options or {}))


def openvino_ir_case(directory: Path, backend: Backend, *, options: dict[str, Any] | None
                     = None, atol: float = 1e-5, rtol: float = 1e-5) -> ConformanceCase:
    """The model of :func:`onnx_linear_case` converted to OpenVINO IR (needs openvino)."""
    from appliance.testing.ov_models import build_openvino_ir

    onnx_case = onnx_linear_case(directory, backend, options=options, atol=atol, rtol=rtol)
    # Another stem than the ONNX file's, so the IR's only sibling is its own .bin.
    xml = build_openvino_ir(Path(directory) / "linear_ir.xml", onnx_case.model_path)
    onnx_case.model_path, onnx_case.format = xml, "openvino"
    return onnx_case


def tflite_fully_connected_case(directory: Path, backend: Backend, *,
                                options: dict[str, Any] | None = None, atol: float = 1e-5,
                                rtol: float = 1e-5) -> ConformanceCase:
    """``softmax(fully_connected(x))`` (8 -> 3, dynamic batch) as ``.tflite``."""
    from appliance.testing.tflite_builder import (
        build_fully_connected_model,
        reference_fully_connected,
    )

    path = build_fully_connected_model(Path(directory) / "fully_connected.tflite",
                                       in_features=8, out_features=3, seed=0)
    return ConformanceCase(
        backend, path, "tflite", normal_inputs("x", 8),
        lambda feed: {"probs": reference_fully_connected(feed["x"], 0, 8, 3)},
        atol, rtol, dict(options or {}))


def _ort() -> Backend:
    from appliance_onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend()


def _openvino() -> Backend:
    from appliance_openvino import OpenVINOBackend

    return OpenVINOBackend()


def _litert() -> Backend:
    from appliance_litert import LiteRTBackend

    return LiteRTBackend()


#: case id -> factory(directory) for the built-in backends and their formats. Each
#: factory imports only the runtimes (and model builders) that its case needs.
BUILTIN_CASES: dict[str, Callable[[Path], ConformanceCase]] = {
    "onnxruntime-onnx": lambda d: onnx_linear_case(d, _ort()),
    "openvino-ir": lambda d: openvino_ir_case(d, _openvino()),
    "openvino-onnx": lambda d: onnx_linear_case(d, _openvino()),
    "openvino-tflite": lambda d: tflite_fully_connected_case(d, _openvino()),
    "litert-tflite": lambda d: tflite_fully_connected_case(d, _litert()),
}


def builtin_cases(directory: Path) -> dict[str, ConformanceCase]:
    """Every built-in case, its models written under ``directory/<case id>/``."""
    cases = {}
    for case_id, factory in BUILTIN_CASES.items():
        sub = Path(directory) / case_id
        sub.mkdir(parents=True, exist_ok=True)
        cases[case_id] = factory(sub)
    return cases
