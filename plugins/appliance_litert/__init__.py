"""LiteRT (TensorFlow Lite) backend for ``.tflite`` models, optionally with an external
delegate such as the Coral Edge TPU (``libedgetpu.so.1``).

``ai_edge_litert`` (or, failing that, the older ``tflite_runtime``) is imported lazily
so a box that never loads a TFLite model does not pay for it. A TFLite interpreter is
not thread-safe, so a loaded model keeps a pool of ``instances`` interpreters and each
``predict`` borrows one.

Options: ``num_threads`` (CPU threads per interpreter), ``instances`` (pool size,
default 1), ``delegate`` (external delegate library) and ``delegate_options`` (dict
passed to it).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import queue
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from appliance import (
    Availability,
    Backend,
    InvalidModelFile,
    LoadedModel,
    ModelSource,
    SignatureMismatch,
    TensorSpec,
    hookimpl,
)

log = logging.getLogger(__name__)

# numpy dtype the interpreter reports -> Open Inference Protocol datatype
TFLITE_TYPES: dict[np.dtype[Any], str] = {
    np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16",
    np.dtype(np.int8): "INT8", np.dtype(np.uint8): "UINT8", np.dtype(np.int16): "INT16",
    np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64", np.dtype(np.bool_): "BOOL",
    np.dtype(np.object_): "BYTES", np.dtype(np.bytes_): "BYTES", np.dtype(np.str_): "BYTES",
}


def _interpreter_module() -> tuple[ModuleType, str]:
    """The interpreter module and its distribution: LiteRT first, then tflite_runtime."""
    try:
        from ai_edge_litert import interpreter

        return interpreter, "ai-edge-litert"
    except ImportError as litert_exc:
        try:
            from tflite_runtime import interpreter

            return interpreter, "tflite-runtime"
        except ImportError:
            raise ImportError(f"neither ai_edge_litert nor tflite_runtime is installed "
                              f"({litert_exc}); pip install 'appliance[litert]'") from None


def _spec(detail: Mapping[str, Any]) -> TensorSpec:
    datatype = TFLITE_TYPES.get(np.dtype(detail["dtype"]))
    if datatype is None:
        raise InvalidModelFile(f"tensor {detail['name']!r} has type {detail['dtype']}, "
                               "which the Open Inference Protocol cannot carry")
    # shape_signature carries -1 for dynamic dimensions; shape is only what is allocated.
    sig = detail.get("shape_signature")
    shape = sig if sig is not None and len(sig) == len(detail["shape"]) else detail["shape"]
    return TensorSpec(detail["name"], datatype, tuple(int(d) for d in shape))


def _probe_delegate_library(library: str) -> None:
    """Raise OSError unless ``library`` loads and exports the external-delegate API.

    Checked with ctypes first because ``load_delegate`` on a missing library or one
    without these symbols leaves a half-built Delegate whose ``__del__`` raises."""
    lib = ctypes.CDLL(library)
    for symbol in ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate"):
        if not hasattr(lib, symbol):
            raise OSError(f"{library} is not a TFLite external delegate (no {symbol})")


class _Instance:
    """One interpreter plus the input shapes it currently has tensors allocated for."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        interpreter.allocate_tensors()
        details = interpreter.get_input_details()
        self.input_index = {d["name"]: int(d["index"]) for d in details}
        self.output_index = [int(d["index"]) for d in interpreter.get_output_details()]
        self.shapes = {int(d["index"]): tuple(int(x) for x in d["shape"]) for d in details}

    def run(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        it = self.interpreter
        resize = {self.input_index[n]: a.shape for n, a in feed.items()
                  if tuple(a.shape) != self.shapes.get(self.input_index[n])}
        if resize:
            try:
                for index, shape in resize.items():
                    # strict: only dimensions declared -1 in shape_signature may change
                    it.resize_tensor_input(index, list(shape), strict=True)
                it.allocate_tensors()
            except Exception:
                self.shapes = {}  # half-resized: force a full resize on the next call
                raise
            self.shapes = {i: tuple(feed[n].shape) for n, i in self.input_index.items()}
        for name, array in feed.items():
            it.set_tensor(self.input_index[name], array)
        it.invoke()
        return [it.get_tensor(i) for i in self.output_index]  # get_tensor copies


class LiteRTModel(LoadedModel):
    """A pool of interpreters over one ``.tflite`` model; ``predict`` is thread-safe."""

    def __init__(self, instances: list[_Instance], meta: dict[str, Any]) -> None:
        first = instances[0].interpreter
        self.inputs = [_spec(d) for d in first.get_input_details()]
        self.outputs = [_spec(d) for d in first.get_output_details()]
        self._dtypes = {d["name"]: np.dtype(d["dtype"]) for d in first.get_input_details()}
        self._pool: queue.Queue[_Instance] = queue.Queue()
        for inst in instances:
            self._pool.put(inst)
        self._meta = meta

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [s.name for s in self.inputs if s.name not in inputs]
        if missing:
            raise SignatureMismatch(f"missing input tensor(s) {', '.join(missing)}; the model "
                                    f"takes {', '.join(s.name for s in self.inputs)}")
        feed = {}
        for spec in self.inputs:
            array = np.asarray(inputs[spec.name])
            if spec.datatype != "BYTES":
                array = np.ascontiguousarray(array, dtype=self._dtypes[spec.name])
            if not spec.accepts_shape(array.shape):
                raise SignatureMismatch(f"input {spec.name!r} has shape {list(array.shape)}; "
                                        f"the model takes {list(spec.shape)} (-1 = any size)")
            feed[spec.name] = array
        inst = self._pool.get()  # blocks while every interpreter is busy
        try:
            results = inst.run(feed)
        except ValueError as exc:
            raise SignatureMismatch(f"LiteRT rejected the inputs: {exc}") from exc
        finally:
            self._pool.put(inst)
        out = {}
        for spec, array in zip(self.outputs, results, strict=True):
            if spec.datatype == "BYTES":  # string tensors come back as fixed-width bytes
                array = array.astype(object)
            out[spec.name] = array
        return out

    def metadata(self) -> dict[str, Any]:
        return dict(self._meta)

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().interpreter = None
            except queue.Empty:
                break


class LiteRTBackend(Backend):
    name = "litert"
    formats = ("tflite",)

    def availability(self) -> Availability:
        try:
            _, dist = _interpreter_module()
        except ImportError as exc:
            return Availability(False, str(exc))
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown version"
        return Availability(True, f"{dist} {version}", ["CPU"])

    def load(self, source: ModelSource, *, options: Mapping[str, Any]) -> LiteRTModel:
        module, dist = _interpreter_module()
        num_threads = options.get("num_threads")
        num_threads = int(num_threads) if num_threads is not None else None
        count = max(1, int(options.get("instances") or 1))
        content = source.read_bytes()
        meta: dict[str, Any] = {"backend": "litert", "device": "CPU", "runtime": dist,
                                "num_threads": num_threads, "instances": count}
        if not content:
            raise InvalidModelFile(f"LiteRT cannot load {source.path.name}: the file is empty")
        delegates = self._delegates(source, options, count, meta)
        instances = []
        for delegate in delegates:
            try:
                interpreter = module.Interpreter(model_content=content, num_threads=num_threads,
                                                 experimental_delegates=delegate)
                instances.append(_Instance(interpreter))
            except Exception as exc:
                raise InvalidModelFile(f"LiteRT cannot load {source.path.name}: "
                                       f"{str(exc).strip()[:300]}") from exc
        return LiteRTModel(instances, meta)

    @staticmethod
    def _delegates(source: ModelSource, options: Mapping[str, Any], count: int,
                   meta: dict[str, Any]) -> list[list[Any] | None]:
        """One delegate list per interpreter (a delegate instance is not shared between
        interpreters); all ``None`` (CPU) when the library cannot be loaded, with a
        warning logged and the reason put in ``meta``: never a silent fallback."""
        library = options.get("delegate")
        if not library:
            return [None] * count
        library = str(library)
        module, _ = _interpreter_module()
        try:
            _probe_delegate_library(library)
            opts = dict(options.get("delegate_options") or {})
            delegates: list[list[Any] | None] = [
                [module.load_delegate(library, opts)] for _ in range(count)]
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("LiteRT delegate %s could not be loaded for %s; running on CPU "
                        "instead: %s", library, source.path.name, exc)
            meta.update(delegate=library, delegate_error=f"not loaded, running on CPU: {exc}")
            return [None] * count
        meta.update(device=library, delegate=library)
        return delegates


@hookimpl
def appliance_backends() -> list[Backend]:
    return [LiteRTBackend()]
