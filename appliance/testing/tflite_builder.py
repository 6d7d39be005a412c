"""Build tiny but real ``.tflite`` flatbuffers offline, for tests.

Uses the schema bindings LiteRT ships (``ai_edge_litert.schema_py_generated``) and
the ``flatbuffers`` package, so no TensorFlow and no network are needed. The models
are plain float32 graphs any TFLite reader (LiteRT, OpenVINO's TFLite frontend)
understands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "build_add_mul_model",
    "build_fully_connected_model",
    "fully_connected_weights",
    "reference_fully_connected",
]


def _schema() -> Any:
    # Imported lazily so importing appliance.testing never requires LiteRT.
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


class _GraphBuilder:
    """Accumulates buffers, tensors, op codes and operators of a single subgraph."""

    def __init__(self) -> None:
        self.s = _schema()
        buf0 = self.s.BufferT()  # buffer 0 is the mandatory empty sentinel
        self.buffers: list[Any] = [buf0]
        self.tensors: list[Any] = []
        self.opcodes: list[Any] = []
        self.operators: list[Any] = []

    def tensor(self, name: str, shape: list[int], *, signature: list[int] | None = None,
               data: np.ndarray | None = None) -> int:
        """Add a float32 tensor (a constant when ``data`` is given); return its index."""
        t = self.s.TensorT()
        t.name = name
        t.type = self.s.TensorType.FLOAT32
        t.shape = list(shape)
        if signature is not None and signature != list(shape):
            t.shapeSignature = list(signature)
        t.buffer = 0
        if data is not None:
            buf = self.s.BufferT()
            buf.data = np.ascontiguousarray(data, dtype="<f4").view(np.uint8).ravel()
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, builtin: int, inputs: list[int], outputs: list[int], *,
           options_type: int = 0, options: Any = None) -> None:
        """Append a builtin operator, registering its op code once."""
        codes = [c.builtinCode for c in self.opcodes]
        if builtin in codes:
            index = codes.index(builtin)
        else:
            code = self.s.OperatorCodeT()
            code.builtinCode = builtin
            # Readers of older schemas look at the int8 field; codes < 127 fit there.
            code.deprecatedBuiltinCode = min(builtin, 127)
            code.version = 1
            self.opcodes.append(code)
            index = len(self.opcodes) - 1
        o = self.s.OperatorT()
        o.opcodeIndex = index
        o.inputs = list(inputs)
        o.outputs = list(outputs)
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        self.operators.append(o)

    def save(self, path: str | Path, inputs: list[int], outputs: list[int],
             description: str) -> Path:
        """Serialize the model with the ``TFL3`` file identifier and write it to ``path``."""
        import flatbuffers

        sub = self.s.SubGraphT()
        sub.tensors, sub.operators = self.tensors, self.operators
        sub.inputs, sub.outputs = list(inputs), list(outputs)
        sub.name = "main"
        model = self.s.ModelT()
        model.version = 3
        model.description = description
        model.operatorCodes = self.opcodes
        model.subgraphs = [sub]
        model.buffers = self.buffers
        fb = flatbuffers.Builder(1024)
        fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
        path = Path(path)
        path.write_bytes(bytes(fb.Output()))
        return path


def _batch_dims(batch: int) -> tuple[int, int]:
    """(static shape dim, signature dim): a dynamic batch is allocated as 1 and
    declared -1 in ``shape_signature``, which is how TFLite expresses it."""
    return (1, -1) if batch < 0 else (batch, batch)


def build_add_mul_model(path: str | Path, *, batch: int = -1, features: int = 4) -> Path:
    """Write a model with FP32 input ``x`` [N, features] and output ``y = x * 2 + 1``.

    ``batch=-1`` makes N dynamic (shape ``[1, features]``, shape_signature
    ``[-1, features]``); callers resize the input before running other batch sizes.
    """
    s = _schema()
    g = _GraphBuilder()
    static, sig = _batch_dims(batch)
    x = g.tensor("x", [static, features], signature=[sig, features])
    two = g.tensor("two", [1], data=np.array([2.0], np.float32))
    one = g.tensor("one", [1], data=np.array([1.0], np.float32))
    mid = g.tensor("x_times_two", [static, features], signature=[sig, features])
    y = g.tensor("y", [static, features], signature=[sig, features])
    g.op(s.BuiltinOperator.MUL, [x, two], [mid],
         options_type=s.BuiltinOptions.MulOptions, options=s.MulOptionsT())
    g.op(s.BuiltinOperator.ADD, [mid, one], [y],
         options_type=s.BuiltinOptions.AddOptions, options=s.AddOptionsT())
    return g.save(path, [x], [y], "appliance test model: y = x * 2 + 1")


def fully_connected_weights(seed: int = 0, in_features: int = 4,
                            out_features: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The fixed (weights [out, in], bias [out]) float32 arrays for ``seed``."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((out_features, in_features)).astype(np.float32)
    bias = rng.standard_normal(out_features).astype(np.float32)
    return weights, bias


def reference_fully_connected(x: np.ndarray, seed: int = 0, in_features: int = 4,
                              out_features: int = 3) -> np.ndarray:
    """numpy reference for :func:`build_fully_connected_model`: softmax(x @ W.T + b)."""
    weights, bias = fully_connected_weights(seed, in_features, out_features)
    logits = np.asarray(x, np.float32) @ weights.T + bias
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    out: np.ndarray = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return out


def build_fully_connected_model(path: str | Path, *, in_features: int = 4,
                                out_features: int = 3, seed: int = 0,
                                batch: int = -1) -> Path:
    """Write a model: FP32 input ``x`` [N, in] -> FULLY_CONNECTED (fixed random weights
    and bias from ``seed``) -> SOFTMAX -> output ``probs`` [N, out].

    ``batch=-1`` declares N dynamic, as in :func:`build_add_mul_model`.
    """
    s = _schema()
    weights, bias = fully_connected_weights(seed, in_features, out_features)
    g = _GraphBuilder()
    static, sig = _batch_dims(batch)
    x = g.tensor("x", [static, in_features], signature=[sig, in_features])
    w = g.tensor("weights", [out_features, in_features], data=weights)
    b = g.tensor("bias", [out_features], data=bias)
    logits = g.tensor("logits", [static, out_features], signature=[sig, out_features])
    probs = g.tensor("probs", [static, out_features], signature=[sig, out_features])
    g.op(s.BuiltinOperator.FULLY_CONNECTED, [x, w, b], [logits],
         options_type=s.BuiltinOptions.FullyConnectedOptions,
         options=s.FullyConnectedOptionsT())
    softmax = s.SoftmaxOptionsT()
    softmax.beta = 1.0
    g.op(s.BuiltinOperator.SOFTMAX, [logits], [probs],
         options_type=s.BuiltinOptions.SoftmaxOptions, options=softmax)
    return g.save(path, [x], [probs], "appliance test model: softmax(fully_connected(x))")
