"""OpenVINO backend: OpenVINO IR, ONNX and TFLite models on CPU, Intel GPU or NPU.

Registered through the ``appliance`` entry-point group like any third-party backend.
``openvino`` is imported lazily (in :meth:`OpenVINOBackend.availability` and
:meth:`OpenVINOBackend.load`): importing it costs a few hundred milliseconds, which a
box that never serves an OpenVINO model should not pay at start-up.

Load options (all optional):

``device``
    ``CPU`` (default), ``GPU``, ``NPU``, ``GPU.1`` …, or a virtual device ``AUTO``,
    ``AUTO:GPU,CPU``, ``MULTI:…``, ``HETERO:…`` whose members must be present.
``performance_hint``
    ``LATENCY`` (default) or ``THROUGHPUT``.
``num_streams`` / ``inference_num_threads``
    Passed to the device (``num_streams`` may also be ``AUTO``).
``inference_precision``
    ``f32`` (default), ``bf16``, ``f16`` or ``auto`` (the device's own default). The
    default is ``f32`` because OpenVINO otherwise computes in bf16 on CPUs with AMX /
    AVX512-BF16 (and f16 on GPUs), so results would differ from the model's reference
    by ~1e-3; ``bf16``/``f16`` is an explicit opt-in for speed.
``cache_dir``
    Compiled-blob cache, so a restart imports the blob instead of recompiling. Not used
    for a model encrypted at rest: the blob would hold its weights in plaintext.

Encrypted models (``source.encrypted``) are read
from memory only: ONNX as bytes, IR as XML text plus a weights Tensor sharing the
decrypted buffer. An encrypted ``.tflite`` is refused, since OpenVINO's TFLite frontend
reads files only; LiteRT serves it.
``instances``
    Number of infer requests, i.e. how many ``predict`` calls run at once
    (default: the compiled model's ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from appliance import (
    Availability,
    Backend,
    ConfigError,
    InvalidModelFile,
    LoadedModel,
    ModelSource,
    SignatureMismatch,
    TensorSpec,
    hookimpl,
)

# OpenVINO element type name (``Type.get_type_name()``) -> Open Inference Protocol datatype
OV_TYPES = {
    "f32": "FP32", "f16": "FP16", "f64": "FP64",
    "i8": "INT8", "i16": "INT16", "i32": "INT32", "i64": "INT64",
    "u8": "UINT8", "u16": "UINT16", "u32": "UINT32", "u64": "UINT64",
    "boolean": "BOOL", "string": "BYTES",
}
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")
INFERENCE_PRECISIONS = ("f32", "bf16", "f16", "auto")
VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO")


def _spec(port: Any, fallback_name: str) -> TensorSpec:
    """The :class:`TensorSpec` of an OpenVINO port; unnamed ports get ``fallback_name``."""
    name = port.get_any_name() if port.get_names() else fallback_name
    type_name = port.get_element_type().get_type_name()
    datatype = OV_TYPES.get(type_name)
    if datatype is None:
        raise InvalidModelFile(f"tensor {name!r} has OpenVINO type {type_name}, which the "
                               "Open Inference Protocol cannot carry")
    pshape = port.get_partial_shape()
    # A dynamic rank cannot be written as a TensorSpec shape; () is the closest we have.
    if pshape.rank.is_dynamic:
        return TensorSpec(name, datatype, ())
    shape = tuple(d.get_length() if d.is_static else -1 for d in pshape)
    return TensorSpec(name, datatype, shape)


def _to_ov_strings(value: np.ndarray) -> np.ndarray:
    """BYTES arrays arrive as object arrays, which OpenVINO rejects: make them ``S``."""
    if value.dtype.kind == "S":
        return value
    items = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in value.ravel()]
    return np.array(items, dtype=np.bytes_).reshape(value.shape)


class OpenVINOModel(LoadedModel):
    """A compiled model plus a pool of infer requests.

    An ``InferRequest`` may only run one inference at a time, while a ``CompiledModel``
    serves many requests in parallel (one per stream). Each ``predict`` borrows a request
    from the pool, so concurrent callers never share one and the compiled model's
    streams are kept busy; callers beyond the pool size wait for a free request.
    """

    def __init__(self, compiled: Any, *, pool_size: int, info: dict[str, Any]) -> None:
        self.compiled = compiled
        self.inputs = [_spec(p, f"input_{i}") for i, p in enumerate(compiled.inputs)]
        self.outputs = [_spec(p, f"output_{i}") for i, p in enumerate(compiled.outputs)]
        self._bytes_inputs = {s.name for s in self.inputs if s.datatype == "BYTES"}
        self._bytes_outputs = {s.name for s in self.outputs if s.datatype == "BYTES"}
        # String results cannot be views (OpenVINO copies them and warns), so only share
        # output memory when every output is numeric.
        self._share_outputs = not self._bytes_outputs
        self._info = info
        self._pool: queue.Queue[Any] = queue.Queue()
        for _ in range(pool_size):
            self._pool.put(compiled.create_infer_request())
        self._pool_size = pool_size

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed: dict[int, np.ndarray] = {}
        for index, spec in enumerate(self.inputs):
            try:
                value = inputs[spec.name]
            except KeyError:
                raise SignatureMismatch(f"input {spec.name!r} is missing; the model takes "
                                        f"{[s.name for s in self.inputs]}") from None
            value = np.asarray(value)
            if spec.name in self._bytes_inputs:
                value = _to_ov_strings(value)
            feed[index] = value  # by index: generated names are unknown to OpenVINO
        request = self._pool.get()
        try:
            # share_inputs: zero-copy for contiguous arrays of the right dtype (others
            # are converted); safe because infer() is synchronous and we own the call.
            results = request.infer(feed, share_inputs=True,
                                    share_outputs=self._share_outputs,
                                    decode_strings=False).to_tuple()
            # Shared results are views into request-owned memory that the next infer on
            # this request overwrites: copy them before the request goes back to the pool.
            out = {spec.name: np.array(r, copy=self._share_outputs)
                   for spec, r in zip(self.outputs, results, strict=True)}
        finally:
            self._pool.put(request)
        for name in self._bytes_outputs:
            out[name] = out[name].astype(object)  # protocol BYTES: object array of bytes
        return out

    def metadata(self) -> dict[str, Any]:
        return {"backend": "openvino", **self._info, "infer_requests": self._pool_size}

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait()
            except queue.Empty:
                break
        self.compiled = None


class OpenVINOBackend(Backend):
    name = "openvino"
    formats = ("openvino", "onnx", "tflite")

    def __init__(self) -> None:
        self._core: Any = None
        self._core_lock = threading.Lock()

    def _get_core(self) -> Any:
        """One ``openvino.Core`` per backend: creating it loads device plugins, and a
        Core is safe to share between threads and models."""
        with self._core_lock:
            if self._core is None:
                import openvino as ov

                self._core = ov.Core()
            return self._core

    def availability(self) -> Availability:
        try:
            import openvino as ov
        except ImportError as exc:
            return Availability(False, f"openvino is not installed ({exc}); "
                                "install it with: pip install 'appliance[openvino]'")
        try:
            devices = list(self._get_core().available_devices)
        except Exception as exc:  # a broken plugin install raises RuntimeError here
            return Availability(False, f"openvino {ov.__version__} cannot list devices: "
                                f"{str(exc).strip()[:200]}")
        if not devices:
            return Availability(False, f"openvino {ov.__version__} found no device")
        return Availability(True, f"openvino {ov.__version__}", devices)

    def load(self, source: ModelSource, *, options: Mapping[str, Any]) -> OpenVINOModel:
        try:
            import openvino as ov
        except ImportError as exc:
            raise ConfigError("the openvino backend needs the openvino package: "
                              "pip install 'appliance[openvino]'") from exc
        core = self._get_core()
        device = str(options.get("device") or "CPU").upper()
        _check_device(device, list(core.available_devices))
        config, hint = _compile_config(options)
        encrypted = source.encrypted
        if encrypted:
            # a compiled blob holds the weights in plaintext: never cache an encrypted model
            config.pop("CACHE_DIR", None)
        model = _read_model(ov, core, source)
        try:
            compiled = core.compile_model(model, device, config)
        except Exception as exc:
            raise InvalidModelFile(f"openvino cannot compile {source.path.name} for {device}: "
                                   f"{_short(exc)}") from exc
        pool_size = _pool_size(compiled, options)
        info = {
            "device": device,
            "execution_devices": list(_property(compiled, "EXECUTION_DEVICES", [device])),
            "performance_hint": hint,
            "inference_precision": config.get("INFERENCE_PRECISION_HINT", "auto"),
            "openvino_version": ov.__version__,
            "loaded_from_cache": bool(_property(compiled, "LOADED_FROM_CACHE", False)),
        }
        if encrypted:
            info["encrypted_at_rest"] = True
        return OpenVINOModel(compiled, pool_size=pool_size, info=info)


def _check_device(device: str, available: list[str]) -> None:
    """Raise ConfigError unless ``device`` (or every member of a virtual device) is here.

    ``GPU`` also matches ``GPU.0``/``GPU.1``: OpenVINO numbers devices once there are
    several of a kind, and the bare name then means the first one.
    """
    kind, _, members = device.partition(":")
    if kind in VIRTUAL_DEVICES:
        # "AUTO:-CPU" excludes a device rather than naming one; either way it must exist.
        wanted = [m.strip().lstrip("-") for m in members.split(",") if m.strip()]
    else:
        wanted = [device]
    for name in wanted:
        if name not in available and not any(a.split(".")[0] == name for a in available):
            raise ConfigError(
                f"openvino device {name!r} is not available on this machine; available "
                f"devices: {', '.join(available) or 'none'} (or AUTO). Set the model's "
                "'device' option to one of them.")


def _compile_config(options: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Validated ``compile_model`` properties from the load options, and the hint."""
    hint = str(options.get("performance_hint") or "LATENCY").upper()
    if hint not in PERFORMANCE_HINTS:
        raise ConfigError(f"openvino performance_hint must be one of {PERFORMANCE_HINTS}, "
                          f"not {options.get('performance_hint')!r}")
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
    precision = str(options.get("inference_precision") or "f32").lower()
    if precision not in INFERENCE_PRECISIONS:
        raise ConfigError(f"openvino inference_precision must be one of "
                          f"{INFERENCE_PRECISIONS}, not {options.get('inference_precision')!r}")
    if precision != "auto":
        config["INFERENCE_PRECISION_HINT"] = precision
    streams = options.get("num_streams")
    if streams is not None:
        config["NUM_STREAMS"] = ("AUTO" if str(streams).upper() == "AUTO"
                                 else _positive_int("num_streams", streams))
    threads = options.get("inference_num_threads")
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = _positive_int("inference_num_threads", threads)
    cache_dir = options.get("cache_dir")
    if cache_dir:
        path = Path(cache_dir).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"openvino cache_dir {str(path)!r} cannot be created: "
                              f"{exc.strerror}") from exc
        # Per compile, not core.set_property: the Core is shared by every model this
        # backend loads, and each model may name its own cache directory (or none).
        config["CACHE_DIR"] = str(path)
    return config, hint


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ConfigError(f"openvino option {name} must be a positive integer, not {value!r}")
    return number


@contextlib.contextmanager
def _load_errors(name: str) -> Iterator[None]:
    """Map what reading a model can raise to InvalidModelFile naming the file."""
    try:
        yield
    except InvalidModelFile:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidModelFile(f"openvino cannot read {name}: {exc}") from exc
    except Exception as exc:
        raise InvalidModelFile(f"openvino cannot load {name}: {_short(exc)}") from exc


def _read_model(ov: Any, core: Any, source: ModelSource) -> Any:
    """Read ``source`` into an ``openvino.Model``, from memory where OpenVINO allows it."""
    if source.encrypted:
        return _read_encrypted(ov, core, source)
    path = source.path
    with _load_errors(path.name):
        if source.format == "openvino":
            bin_path = path.with_suffix(".bin")
            if not bin_path.is_file():
                raise InvalidModelFile(f"openvino IR {path.name} needs its weights file "
                                       f"{bin_path.name} beside it")
            # np.fromfile gives a writable buffer, which ov.Tensor can share without a
            # second copy of the (possibly large) weights; the Tensor keeps it alive.
            weights = ov.Tensor(np.fromfile(bin_path, dtype=np.uint8), shared_memory=True)
            return core.read_model(path.read_text(encoding="utf-8"), weights)
        if source.format == "tflite":
            # OpenVINO's TFLite frontend only reads files: bytes and BytesIO both fail
            # with "Unable to read the model" (checked with openvino 2026.4.1).
            return core.read_model(str(path))
        data = source.read_bytes()
    try:
        return core.read_model(data)
    except Exception as exc:
        first = exc
    # An ONNX model with external data cannot load from bytes: the frontend resolves
    # the data files relative to the model's directory, which bytes do not have.
    try:
        return core.read_model(str(path))
    except Exception:
        raise InvalidModelFile(
            f"openvino cannot load {path.name}: {_short(first)}") from first


def _read_encrypted(ov: Any, core: Any, source: ModelSource) -> Any:
    """Read an encrypted model from memory only; its files on disk are ciphertext."""
    name = source.path.name
    if source.format == "tflite":
        raise InvalidModelFile(
            f"openvino cannot load {name}: it is encrypted at rest and OpenVINO reads "
            "TFLite only from a plaintext file, which the appliance never writes; the "
            "litert backend loads it from memory (pip install 'appliance[litert]')")
    with _load_errors(name):
        if source.format == "openvino":
            xml = source.read_bytes().decode("utf-8")
            # a writable buffer: the Tensor shares it instead of copying the weights
            weights = np.frombuffer(source.read_file_buffer(Path(name).stem + ".bin"),
                                    dtype=np.uint8)
            return core.read_model(xml, ov.Tensor(weights, shared_memory=True))
        data = source.read_bytes()
    with _load_errors(name):  # no path fallback: the file on disk is ciphertext
        return core.read_model(data)


def _pool_size(compiled: Any, options: Mapping[str, Any]) -> int:
    if options.get("instances") is not None:
        return _positive_int("instances", options["instances"])
    return max(1, int(_property(compiled, "OPTIMAL_NUMBER_OF_INFER_REQUESTS", 1)))


def _property(compiled: Any, name: str, default: Any) -> Any:
    """A compiled-model property, or ``default`` where the device does not report it."""
    try:
        return compiled.get_property(name)
    except Exception:
        return default


def _short(exc: BaseException) -> str:
    """OpenVINO errors carry C++ source locations; keep the last meaningful line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("Exception from src/")]
    return (useful[-1] if useful else (lines[-1] if lines else type(exc).__name__))[:300]


@hookimpl
def appliance_backends() -> list[Backend]:
    return [_BACKEND]


@hookimpl
def appliance_hardware_facts() -> dict[str, Any] | None:
    """Intel CPU/GPU/NPU devices as OpenVINO sees them (imports openvino: ~0.3 s)."""
    availability = _BACKEND.availability()
    if not availability.available:
        return None
    return {"openvino_devices": list(availability.devices)}


_BACKEND = OpenVINOBackend()
