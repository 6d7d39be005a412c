"""The ONNX Runtime CUDA backend (``onnxruntime-cuda``).

On a CPU-only box (the CPU ``onnxruntime`` wheel): availability says why not, the plugin
registers, importing it stays cheap, the provider check refuses a silent CPU fallback,
and option parsing builds the provider list ONNX Runtime expects. Tests marked ``gpu``
run where this ONNX Runtime has the CUDA provider (``benchmarks/gpu_check.sh``) and are
skipped elsewhere (unless ``APPLIANCE_REQUIRE_GPU=1``, which makes them fail instead).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

from appliance.backend import ModelSource
from appliance.errors import ConfigError, InvalidModelFile
from appliance.plugins import get_plugin_manager, installed_backends
from appliance.testing.ov_models import build_onnx_linear_model, reference_linear

if importlib.util.find_spec("appliance_onnxruntime_cuda") is None:
    sys.path.append(str(ROOT / "plugins"))  # not (yet) in the editable install's mapping
cuda = importlib.import_module("appliance_onnxruntime_cuda")

IN, OUT = 64, 16


def _cuda_in_build() -> bool:
    """Whether the installed onnxruntime offers the CUDA provider (the onnxruntime-gpu
    wheel); False when onnxruntime is absent or is the CPU wheel."""
    try:
        import onnxruntime as ort
    except Exception:
        return False
    return cuda.CUDA_EP in cuda._runtime_providers(ort)


HAS_CUDA = _cuda_in_build()
cpu_only = pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has the CUDA provider")
#: set by benchmarks/gpu_check.sh where nvidia-smi sees a GPU: GPU tests fail, not skip
REQUIRE_GPU = os.environ.get("APPLIANCE_REQUIRE_GPU") == "1"
needs_cuda = pytest.mark.skipif(not (HAS_CUDA or REQUIRE_GPU), reason=(
    "no CUDAExecutionProvider: not the onnxruntime-gpu wheel, so no GPU to test here"))


@pytest.fixture(scope="module")
def backend():
    return cuda.OnnxRuntimeCudaBackend()


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> ModelSource:
    path = build_onnx_linear_model(tmp_path_factory.mktemp("cuda") / "linear.onnx",
                                   in_features=IN, out_features=OUT, seed=3)
    return ModelSource(path, "onnx")


def _x(batch: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, IN)).astype(np.float32)


# ------------------------------------------------------------------ any box


def test_plugin_registers_through_pluggy() -> None:
    pm = get_plugin_manager(autoload=False, extra=(cuda,))
    (b,) = [b for b in installed_backends(pm) if b.name == "onnxruntime-cuda"]
    assert b.formats == ("onnx",)
    pm.hook.appliance_startup(settings=None, registry=None)  # the startup hook is callable


def test_import_does_not_import_onnxruntime() -> None:
    code = ("import sys, appliance_onnxruntime_cuda as m; m.appliance_backends(); "
            "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported eagerly'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "plugins"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@cpu_only
def test_unavailable_on_cpu_wheel(backend) -> None:
    avail = backend.availability()
    assert not avail.available
    assert "onnxruntime-gpu is not installed" in avail.reason
    assert "[cuda] extra" in avail.reason and "CPUExecutionProvider" in avail.reason


def test_unavailable_without_onnxruntime(backend, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ModuleNotFoundError
    avail = backend.availability()
    assert not avail.available
    assert "onnxruntime-gpu is not installed" in avail.reason and "[cuda] extra" in avail.reason


def test_availability_needs_a_visible_gpu() -> None:
    providers = [cuda.CUDA_EP, cuda.CPU_EP]
    none = cuda.availability_from("1.32.0", providers, [])
    assert not none.available and "no NVIDIA GPU visible" in none.reason
    hidden = cuda.availability_from("1.32.0", providers, [], "CUDA_VISIBLE_DEVICES='' hides")
    assert "CUDA_VISIBLE_DEVICES" in hidden.reason
    ok = cuda.availability_from("1.32.0", providers, ["cuda:0 (NVIDIA H200)"])
    assert ok.available and ok.devices == ["cuda:0 (NVIDIA H200)"]
    wheel = cuda.availability_from("1.32.0", [cuda.CPU_EP], ["cuda:0"])
    assert not wheel.available and "[cuda] extra" in wheel.reason


def test_visible_gpus_from_device_nodes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    (tmp_path / "dev").mkdir()
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (tmp_path / "dev" / name).touch()
    assert cuda.visible_gpus(tmp_path) == (["cuda:0", "cuda:1"], "")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    gpus, why = cuda.visible_gpus(tmp_path)
    assert gpus == [] and "CUDA_VISIBLE_DEVICES" in why


def _fake_dist(site: Path, name: str, version: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def _fake_other_runtime(site: Path) -> None:
    """Add whichever of the two ONNX Runtime distributions is not installed (both when
    neither is), so both appear installed."""
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            _fake_dist(site, name, "0.0.1")


def test_both_runtimes_installed(tmp_path: Path, monkeypatch, caplog) -> None:
    assert cuda.both_runtimes_installed() is None  # this box installs exactly one
    with caplog.at_level(logging.WARNING, logger=cuda.__name__):
        cuda.appliance_startup(settings=None, registry=None)
    assert not caplog.records
    _fake_other_runtime(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    message = cuda.both_runtimes_installed()
    assert message and "onnxruntime-gpu" in message and "pip uninstall" in message
    with caplog.at_level(logging.WARNING, logger=cuda.__name__):
        cuda.appliance_startup(settings=None, registry=None)
    assert [r.getMessage() for r in caplog.records] == [message]


def test_check_providers() -> None:
    got = [cuda.CUDA_EP, cuda.CPU_EP]
    assert cuda.check_providers(got, cuda.CUDA_EP, False) is None
    with pytest.raises(cuda.CudaProviderError, match=r"CUDA execution provider failed to "
                       r"initialise \(providers in session: \['CPUExecutionProvider'\]\)"
                       r".*CUDA/cuDNN.*allow_cpu_fallback") as err:
        cuda.check_providers([cuda.CPU_EP], cuda.CUDA_EP, False, detail="libcudnn.so.9")
    assert "libcudnn.so.9" in err.value.message
    assert not isinstance(err.value, InvalidModelFile)  # no quiet catalog fallback to CPU
    warning = cuda.check_providers([cuda.CPU_EP], cuda.CUDA_EP, True)
    assert warning and "CPU" in warning and "allow_cpu_fallback" in warning


def test_provider_list_defaults_and_limits() -> None:
    opts = cuda.parse_options({"device_id": 1, "gpu_mem_limit_mb": 512},
                              tensorrt_default=False)
    assert cuda.provider_list(opts) == [
        (cuda.CUDA_EP, {"device_id": "1", "arena_extend_strategy": "kSameAsRequested",
                        "use_tf32": "0", "gpu_mem_limit": str(512 * 1024 * 1024)}),
        cuda.CPU_EP]
    unlimited = cuda.provider_list(cuda.parse_options({}, tensorrt_default=False))
    assert "gpu_mem_limit" not in unlimited[0][1] and unlimited[0][1]["device_id"] == "0"


def test_provider_list_tensorrt(tmp_path: Path) -> None:
    opts = cuda.parse_options({"fp16": True, "trt_cache_dir": str(tmp_path)},
                              tensorrt_default=True)
    trt, cu, cpu = cuda.provider_list(opts)
    assert trt == (cuda.TRT_EP, {"device_id": "0", "trt_fp16_enable": "1",
                                 "trt_engine_cache_enable": "1",
                                 "trt_engine_cache_path": str(tmp_path)})
    assert cu[0] == cuda.CUDA_EP and cpu == cuda.CPU_EP
    off = cuda.parse_options({"tensorrt": False}, tensorrt_default=True)
    assert [p if isinstance(p, str) else p[0] for p in cuda.provider_list(off)] == [
        cuda.CUDA_EP, cuda.CPU_EP]


@pytest.mark.parametrize("options", [{"device_id": -1}, {"device_id": "gpu0"},
                                     {"gpu_mem_limit_mb": 1.5}, {"fp16": "maybe"},
                                     {"allow_cpu_fallback": 2}])
def test_bad_options_are_config_errors(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="onnxruntime-cuda option"):
        cuda.parse_options(options, tensorrt_default=False)


@cpu_only
def test_load_without_cuda_refuses_silent_cpu(backend, linear: ModelSource) -> None:
    with pytest.raises(cuda.CudaProviderError, match="CUDA execution provider failed"):
        backend.load(linear, options={})


@cpu_only
def test_load_with_allowed_fallback_serves_on_cpu(backend, linear: ModelSource) -> None:
    model = backend.load(linear, options={"allow_cpu_fallback": True})
    meta = model.metadata()
    assert meta["backend"] == "onnxruntime-cuda" and meta["device"] == "cuda:0"
    assert meta["providers"] == ["CPUExecutionProvider"] and meta["fallback"] == "CPU"
    assert "allow_cpu_fallback" in meta["fallback_reason"]
    assert meta["fp16"] is False and meta["tensorrt"] is False
    x = _x(5)
    np.testing.assert_allclose(model.predict({"x": x})["y"],
                               reference_linear(x, IN, OUT, seed=3), rtol=0, atol=1e-5)
    model.close()


def test_corrupt_file_is_invalid(backend, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "broken.onnx"
    path.write_bytes(os.urandom(256))
    with pytest.raises(InvalidModelFile, match=r"broken\.onnx"):
        backend.load(ModelSource(path, "onnx"), options={"allow_cpu_fallback": True})


# ------------------------------------------------------------- GPU machine only


@pytest.fixture(scope="module")
def gpu_model(backend, linear: ModelSource):
    model = backend.load(linear, options={"tensorrt": False})
    yield model
    model.close()


@pytest.mark.gpu
@needs_cuda
def test_gpu_available(backend) -> None:
    avail = backend.availability()
    assert avail.available, avail.reason
    assert avail.devices and avail.devices[0].startswith("cuda:0")


@pytest.mark.gpu
@needs_cuda
def test_gpu_matches_cpu_backend(gpu_model, linear: ModelSource) -> None:
    from appliance_onnxruntime import OnnxRuntimeBackend

    assert gpu_model.session.get_providers()[0] == "CUDAExecutionProvider"
    meta = gpu_model.metadata()
    assert meta["device"] == "cuda:0" and "fallback" not in meta and meta["tensorrt"] is False
    cpu_model = OnnxRuntimeBackend().load(linear, options={})
    assert gpu_model.inputs == cpu_model.inputs and gpu_model.outputs == cpu_model.outputs
    x = _x(32, seed=2)
    np.testing.assert_allclose(gpu_model.predict({"x": x})["y"],
                               cpu_model.predict({"x": x})["y"], rtol=0, atol=1e-4)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_gpu_variable_batch(gpu_model, batch: int) -> None:
    x = _x(batch, seed=batch)
    y = gpu_model.predict({"x": x})["y"]
    assert y.shape == (batch, OUT) and y.dtype == np.float32
    np.testing.assert_allclose(y, reference_linear(x, IN, OUT, seed=3), rtol=0, atol=1e-4)


@pytest.mark.gpu
@needs_cuda
def test_gpu_concurrent_predicts(gpu_model) -> None:
    xs = [_x(1 + i % 64, seed=100 + i) for i in range(200)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda x: gpu_model.predict({"x": x})["y"], xs))
    for x, y in zip(xs, results, strict=True):
        np.testing.assert_allclose(y, reference_linear(x, IN, OUT, seed=3), rtol=0, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_CUDA and cuda.tensorrt_loadable()),
                    reason="no CUDAExecutionProvider or no TensorRT libraries here")
def test_gpu_tensorrt_fp16_engine_cache(backend, linear: ModelSource, tmp_path: Path) -> None:
    model = backend.load(linear, options={"tensorrt": True, "fp16": True,
                                          "trt_cache_dir": str(tmp_path / "trt")})
    meta = model.metadata()
    assert meta["tensorrt"] is True and meta["fp16"] is True, meta
    x = _x(8)
    np.testing.assert_allclose(model.predict({"x": x})["y"],
                               reference_linear(x, IN, OUT, seed=3), rtol=0, atol=5e-2)
    assert any((tmp_path / "trt").iterdir()), "no TensorRT engine was cached"
