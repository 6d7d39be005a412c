"""ONNX Runtime backend on NVIDIA GPUs: the CUDA execution provider, TensorRT first
when its libraries are present.

It runs the ``onnxruntime-gpu`` wheel, which installs the same ``onnxruntime`` module as
the CPU wheel: the appliance's ``cpu`` and ``cuda`` extras are mutually exclusive, and
:func:`both_runtimes_installed` warns at start-up when both are installed anyway.

ONNX Runtime quietly runs a model on the CPU when the CUDA provider cannot start
(missing CUDA or cuDNN libraries, a driver too old, no device). :func:`check_providers`
turns that into a :class:`CudaProviderError` unless ``allow_cpu_fallback`` is set, and
sessions are built with ONNX Runtime's own retry-on-CPU fallback turned off.
``onnxruntime`` is imported lazily: importing this module does not load it.

Options (all optional), as :func:`parse_options` reads them:

- ``device_id`` (int, 0): the CUDA device.
- ``gpu_mem_limit_mb`` (int, 0): cap on the CUDA memory arena; 0 means no cap.
- ``fp16`` (bool, False): let TensorRT build FP16 engines (only when TensorRT is used).
- ``tensorrt`` (bool): put the TensorRT provider first; by default on when this ONNX
  Runtime has it and ``libnvinfer`` can be loaded.
- ``trt_cache_dir`` (str): where TensorRT engines are cached between restarts.
- ``tf32`` (bool, False): allow TF32 matmuls/convolutions on Ampere and newer (faster,
  about 1e-3 relative error); off keeps FP32 results close to the CPU backend's.
- ``allow_cpu_fallback`` (bool, False): serve on the CPU, with a loud warning, when the
  CUDA provider does not start, instead of refusing to load.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import importlib.util
import io
import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from appliance_onnxruntime import OrtModel

from appliance import (
    Availability,
    Backend,
    ConfigError,
    InvalidModelFile,
    ModelSource,
    discover_hardware,
    hookimpl,
)

log = logging.getLogger(__name__)

BACKEND_NAME = "onnxruntime-cuda"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
CPU_EP = "CPUExecutionProvider"
INSTALL_HINT = "install the appliance with the [cuda] extra (and without the [cpu] one)"
#: libraries the TensorRT provider needs; tried with dlopen, newest first
NVINFER_LIBS = ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so")
_MIB = 1024 * 1024

ProviderList = list[str | tuple[str, dict[str, str]]]


class CudaProviderError(ConfigError):
    """The CUDA execution provider did not start and CPU fallback was not allowed.

    A :class:`ConfigError`, not an :class:`InvalidModelFile`: the model file is fine, the
    box is misconfigured, and the catalog must not quietly hand the model to a CPU backend.
    """


# ---------------------------------------------------------------------------- checks


def check_providers(session_providers: Sequence[str], wanted: str,
                    allow_cpu_fallback: bool, *, detail: str = "") -> str | None:
    """None when ``wanted`` is among the providers a session actually got.

    Otherwise raise :class:`CudaProviderError`, or, when ``allow_cpu_fallback`` is true,
    return the warning text to log and show in the model's metadata. ``detail`` (an
    error ONNX Runtime raised while creating the session) is added to the message.
    """
    if wanted in session_providers:
        return None
    why = (f"{_short(wanted)} execution provider failed to initialise (providers in "
           f"session: {list(session_providers)})")
    if detail:
        why += f": {detail}"
    if allow_cpu_fallback:
        return f"{why}; serving on the CPU because allow_cpu_fallback is set"
    raise CudaProviderError(
        f"{why}; check the CUDA/cuDNN libraries match this onnxruntime-gpu build (see "
        "python -c 'import onnxruntime; onnxruntime.print_debug_info()'), that the "
        "NVIDIA driver is loaded and the GPU is passed into the container; or set "
        f"allow_cpu_fallback = true in the {BACKEND_NAME} options to serve on the CPU")


def both_runtimes_installed() -> str | None:
    """A warning when both the ``onnxruntime`` and ``onnxruntime-gpu`` distributions are
    installed (they overwrite each other's ``onnxruntime`` module); None otherwise."""
    versions: dict[str, str] = {}
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            versions[dist] = importlib.metadata.version(dist) or "?"
        except importlib.metadata.PackageNotFoundError:
            continue
    if len(versions) < 2:
        return None
    return (f"both onnxruntime {versions['onnxruntime']} and onnxruntime-gpu "
            f"{versions['onnxruntime-gpu']} are installed: they install the same "
            "'onnxruntime' module over each other, so which one runs depends on install "
            "order; run 'pip uninstall -y onnxruntime onnxruntime-gpu', then reinstall "
            "the appliance with exactly one of the [cpu] or [cuda] extras")


def availability_from(ort_version: str, providers: Sequence[str],
                      gpus: Sequence[str], hidden_reason: str = "") -> Availability:
    """Availability from what ONNX Runtime offers and which GPUs are visible (pure,
    for tests). ``hidden_reason`` explains an empty ``gpus`` when known."""
    if CUDA_EP not in providers:
        return Availability(False, (
            f"onnxruntime-gpu is not installed (the installed onnxruntime {ort_version} "
            f"has providers {', '.join(providers) or 'none'}): {INSTALL_HINT}"))
    if not gpus:
        why = hidden_reason or "nvidia-smi lists none and /dev/nvidia0 is absent"
        return Availability(False, (
            f"no NVIDIA GPU visible ({why}): check the NVIDIA driver, and pass the GPU "
            "into the container (docker run --gpus all)"))
    extra = " + TensorRT" if TRT_EP in providers and tensorrt_loadable() else ""
    return Availability(True, f"onnxruntime-gpu {ort_version}, CUDA{extra}", list(gpus))


def visible_gpus(root: Path = Path("/")) -> tuple[list[str], str]:
    """(``cuda:N`` labels of the GPUs CUDA can see, why none when empty). Cheap checks
    first (``CUDA_VISIBLE_DEVICES``, ``/dev/nvidiaN``), then nvidia-smi and the Jetson
    markers through :func:`appliance.discover_hardware`. Never raises."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1", "none", "NoDevFiles"):
        return [], f"CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU"
    try:
        nodes = [p for p in (root / "dev").glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)]
    except OSError:
        nodes = []
    if nodes:
        return [f"cuda:{i}" for i in range(len(nodes))], ""
    facts = discover_hardware(root=root)
    if facts.nvidia_gpus:
        return [f"cuda:{i} ({g.name})" for i, g in enumerate(facts.nvidia_gpus)], ""
    if facts.is_jetson:
        return [f"cuda:0 ({facts.board_model or 'Jetson'})"], ""
    return [], ""


@cache
def tensorrt_loadable() -> bool:
    """Whether the TensorRT runtime library can be loaded (the provider needs it)."""
    for name in NVINFER_LIBS:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


@cache
def preload_cuda_libraries() -> str:
    """Load CUDA/cuDNN from NVIDIA's pip packages (``nvidia-*``) when they are installed,
    via ``onnxruntime.preload_dlls``, before the first CUDA session; once per process.
    Returns what it printed (also logged); "" when there is nothing to preload."""
    import onnxruntime as ort

    if not hasattr(ort, "preload_dlls") or importlib.util.find_spec("nvidia") is None:
        return ""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            ort.preload_dlls()
    except Exception as exc:
        out.write(f"preload_dlls failed: {type(exc).__name__}: {exc}")
    said = out.getvalue().strip()
    if said:
        log.warning("onnxruntime.preload_dlls: %s", said)
    return said


def _runtime_providers(ort: Any) -> list[str]:
    """Providers this ONNX Runtime build offers, plus plugin EPs that expose devices."""
    names = list(ort.get_available_providers())
    try:
        names += [d.ep_name for d in ort.get_ep_devices() if d.ep_name not in names]
    except Exception as exc:  # older builds lack get_ep_devices; a broken plugin EP
        log.debug("get_ep_devices: %s", exc)
    return list(dict.fromkeys(names))


def _short(provider: str) -> str:
    return {CUDA_EP: "CUDA", TRT_EP: "TensorRT"}.get(provider, provider)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class CudaOptions:
    """Parsed backend options; see the module docstring."""

    device_id: int = 0
    gpu_mem_limit_mb: int = 0
    fp16: bool = False
    tensorrt: bool = False
    trt_cache_dir: str | None = None
    tf32: bool = False
    allow_cpu_fallback: bool = False


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes",
                                                            "no", "on", "off"):
        return value.strip().lower() in ("true", "1", "yes", "on")
    raise ConfigError(f"{BACKEND_NAME} option {name} must be true or false, not {value!r}")


def _as_count(name: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ConfigError(f"{BACKEND_NAME} option {name} must be a whole number >= 0, "
                      f"not {value!r}")


def parse_options(options: Mapping[str, Any], *, tensorrt_default: bool) -> CudaOptions:
    """Validate ``options``; :class:`ConfigError` names a bad one. ``tensorrt_default``
    is used when ``tensorrt`` is absent (None)."""
    trt = options.get("tensorrt")
    cache_dir = options.get("trt_cache_dir") or None
    return CudaOptions(
        device_id=_as_count("device_id", options.get("device_id") or 0),
        gpu_mem_limit_mb=_as_count("gpu_mem_limit_mb", options.get("gpu_mem_limit_mb") or 0),
        fp16=_as_bool("fp16", options.get("fp16", False)),
        tensorrt=tensorrt_default if trt is None else _as_bool("tensorrt", trt),
        trt_cache_dir=str(cache_dir) if cache_dir is not None else None,
        tf32=_as_bool("tf32", options.get("tf32", False)),
        allow_cpu_fallback=_as_bool("allow_cpu_fallback",
                                    options.get("allow_cpu_fallback", False)))


def provider_list(opts: CudaOptions) -> ProviderList:
    """The ``providers`` argument for ``InferenceSession``: TensorRT (if used), CUDA, CPU.
    Values are strings, as ONNX Runtime parses them ("1"/"0" for booleans)."""
    cuda = {"device_id": str(opts.device_id), "arena_extend_strategy": "kSameAsRequested",
            "use_tf32": "1" if opts.tf32 else "0"}
    if opts.gpu_mem_limit_mb:
        cuda["gpu_mem_limit"] = str(opts.gpu_mem_limit_mb * _MIB)
    providers: ProviderList = []
    if opts.tensorrt:
        trt = {"device_id": str(opts.device_id), "trt_fp16_enable": "1" if opts.fp16 else "0"}
        if opts.trt_cache_dir:
            trt.update(trt_engine_cache_enable="1", trt_engine_cache_path=opts.trt_cache_dir)
        providers.append((TRT_EP, trt))
    providers += [(CUDA_EP, cuda), CPU_EP]
    return providers


# ----------------------------------------------------------------------------- model


class CudaOrtModel(OrtModel):
    """An ONNX Runtime session on a GPU; ``metadata`` says what actually runs it."""

    def __init__(self, session: Any, opts: CudaOptions, fallback_reason: str | None,
                 notes: list[str]) -> None:
        super().__init__(session, session.get_providers())
        self._opts = opts
        self._fallback_reason = fallback_reason
        self._notes = notes

    def metadata(self) -> dict[str, Any]:
        """Backend, device, the session's providers; ``fp16`` and ``tensorrt`` say what is
        in effect (FP16 needs TensorRT); ``fallback`` when serving on the CPU."""
        trt = TRT_EP in self._providers
        meta: dict[str, Any] = {"backend": BACKEND_NAME,
                                "device": f"cuda:{self._opts.device_id}",
                                "providers": list(self._providers),
                                "fp16": bool(self._opts.fp16 and trt), "tensorrt": trt}
        if self._fallback_reason:
            meta.update(fallback="CPU", fallback_reason=self._fallback_reason)
        if self._notes:
            meta["notes"] = list(self._notes)
        return meta


class OnnxRuntimeCudaBackend(Backend):
    """ONNX Runtime with the CUDA (and TensorRT) execution providers."""

    name = BACKEND_NAME
    formats = ("onnx",)

    def availability(self) -> Availability:
        try:
            import onnxruntime as ort

            version = str(getattr(ort, "__version__", "?"))
            providers = _runtime_providers(ort)
        except ModuleNotFoundError as exc:
            return Availability(False, f"onnxruntime-gpu is not installed ({exc}): "
                                       f"{INSTALL_HINT}")
        except Exception as exc:  # e.g. the GPU wheel's CUDA libraries broke the import
            return Availability(False, f"importing onnxruntime failed ({type(exc).__name__}: "
                                       f"{exc}); is onnxruntime-gpu installed with the CUDA "
                                       f"libraries it was built for? {INSTALL_HINT}")
        if CUDA_EP not in providers:
            return availability_from(version, providers, [])
        try:
            gpus, hidden = visible_gpus()
        except Exception as exc:  # discover() never raises; be safe anyway
            gpus, hidden = [], f"GPU probe failed: {exc}"
        return availability_from(version, providers, gpus, hidden)

    def load(self, source: ModelSource, *, options: Mapping[str, Any]) -> CudaOrtModel:
        import onnxruntime as ort

        preload_cuda_libraries()
        available = _runtime_providers(ort)
        opts = parse_options(options, tensorrt_default=TRT_EP in available
                             and tensorrt_loadable())
        if opts.tensorrt and opts.trt_cache_dir:
            Path(opts.trt_cache_dir).mkdir(parents=True, exist_ok=True)
        data = source.read_bytes()
        notes: list[str] = []
        providers = provider_list(opts)
        session, said = _try_session(ort, data, providers)
        if session is None and opts.tensorrt:
            notes.append(f"TensorRT provider failed ({said}); retried with CUDA only")
            log.warning("%s: %s", source.path.name, notes[-1])
            session, said = _try_session(ort, data, providers[1:])
        if session is None:  # the GPU providers failed: can the CPU load the model at all?
            session, cpu_said = _try_session(ort, data, [CPU_EP])
            if session is None:
                raise InvalidModelFile(f"onnxruntime cannot load {source.path.name}: "
                                       f"{cpu_said}")
        got = session.get_providers()
        if opts.tensorrt and TRT_EP not in got and not notes:
            notes.append("TensorRT provider requested but absent from the session (are the "
                         "TensorRT libraries installed?); running on CUDA")
            log.warning("%s: %s", source.path.name, notes[-1])
        fallback = check_providers(got, CUDA_EP, opts.allow_cpu_fallback, detail=said)
        if fallback:
            log.warning("!!! %s: %s !!!", source.path.name, fallback)
        return CudaOrtModel(session, opts, fallback, notes)


def _try_session(ort: Any, data: bytes, providers: ProviderList) -> tuple[Any, str]:
    """(session, "") or (None, the error ONNX Runtime raised). Its own retry-on-CPU
    fallback is off. Its warnings (such as a provider this build lacks) are logged and
    returned as the second item when the session was created; the filter that records
    them is process-wide for the moment the session takes to build, so a warning another
    thread raises meanwhile is logged here too instead of shown."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    session, error = None, ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            session = ort.InferenceSession(data, sess_options=so, providers=providers,
                                           enable_fallback=0)
        except Exception as exc:
            error = str(exc).strip()[:300] or type(exc).__name__
    said = [str(w.message) for w in caught]
    for text in said:
        log.info("onnxruntime: %s", text)
    return session, error or "; ".join(said)


# ----------------------------------------------------------------------------- hooks


@hookimpl
def appliance_backends() -> list[Backend]:
    return [OnnxRuntimeCudaBackend()]


@hookimpl
def appliance_startup(settings: Any, registry: Any) -> None:
    """Warn once at start-up when both ONNX Runtime wheels are installed."""
    message = both_runtimes_installed()
    if message:
        log.warning("%s", message)
