"""ONNX Runtime backend (CPU execution provider).

Registered through the ``appliance`` entry-point group, exactly as a third-party
backend would be. ``onnxruntime`` is imported lazily on first use so a box that never
loads an ONNX model does not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from appliance import (
    Availability,
    Backend,
    InvalidModelFile,
    LoadedModel,
    ModelSource,
    TensorSpec,
    hookimpl,
)

# ONNX element type string -> Open Inference Protocol datatype
ORT_TYPES = {
    "tensor(bool)": "BOOL", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(int8)": "INT8",
    "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _spec(arg: Any) -> TensorSpec:
    datatype = ORT_TYPES.get(arg.type)
    if datatype is None:
        raise InvalidModelFile(f"tensor {arg.name!r} has type {arg.type}, which the "
                               "Open Inference Protocol cannot carry")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, datatype, shape)


class OrtModel(LoadedModel):
    """One ``InferenceSession``; ORT sessions are safe to ``run`` from several threads."""

    def __init__(self, session: Any, providers: list[str]) -> None:
        self.session = session
        self.inputs = [_spec(i) for i in session.get_inputs()]
        self.outputs = [_spec(o) for o in session.get_outputs()]
        self._output_names = [o.name for o in self.outputs]
        self._bytes_inputs = {s.name for s in self.inputs if s.datatype == "BYTES"}
        self._providers = providers

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = dict(inputs)
        for name in self._bytes_inputs:  # ORT wants str for tensor(string)
            feed[name] = np.vectorize(_to_str, otypes=[object])(feed[name])
        results = self.session.run(self._output_names, feed)
        return dict(zip(self._output_names, results))

    def metadata(self) -> dict[str, Any]:
        return {"backend": "onnxruntime", "device": "CPU", "providers": self._providers}

    def close(self) -> None:
        self.session = None


def _to_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    formats = ("onnx",)

    def availability(self) -> Availability:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return Availability(False, f"onnxruntime is not installed ({exc})")
        return Availability(True, f"onnxruntime {ort.__version__}", ["CPU"])

    def load(self, source: ModelSource, *, options: Mapping[str, Any]) -> OrtModel:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(options.get("intra_op_threads") or
                                      len(os.sched_getaffinity(0)))
        so.inter_op_num_threads = int(options.get("inter_op_threads") or 1)
        so.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(source.read_bytes(), sess_options=so,
                                           providers=providers)
        except Exception as exc:
            raise InvalidModelFile(
                f"onnxruntime cannot load {source.path.name}: {str(exc).strip()[:300]}") from exc
        return OrtModel(session, session.get_providers())


@hookimpl
def appliance_backends() -> list[Backend]:
    return [OnnxRuntimeBackend()]
