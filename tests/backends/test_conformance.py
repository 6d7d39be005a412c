"""The backend conformance suite (appliance.testing.conformance) run on every built-in
backend and format, plus cross-backend agreement on the same model file: built offline
(ONNX linear, TFLite fully connected) and real shipped models (magika, MediaPipe)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from helpers import ROOT

from appliance.backend import Backend, ModelSource
from appliance.testing.conformance import BackendConformanceTests, ConformanceCase
from appliance.testing.conformance_cases import BUILTIN_CASES, onnx_linear_case

#: case id -> modules it needs (the plugin packages themselves import nothing heavy)
REQUIRES = {
    "onnxruntime-onnx": ("onnx", "onnxruntime"),
    "openvino-ir": ("onnx", "openvino"),
    "openvino-onnx": ("onnx", "openvino"),
    "openvino-tflite": ("ai_edge_litert", "flatbuffers", "openvino"),
    "litert-tflite": ("ai_edge_litert", "flatbuffers"),
}


class _BuiltinCase(BackendConformanceTests):
    """Runs the suite on ``BUILTIN_CASES[case_id]``; models are built once per class."""

    case_id: ClassVar[str]

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_case(cls, tmp_path_factory: pytest.TempPathFactory) -> ConformanceCase:
        for module in REQUIRES[cls.case_id]:
            importlib.import_module(module)
        return BUILTIN_CASES[cls.case_id](tmp_path_factory.mktemp(cls.case_id))


class TestOnnxRuntimeOnnx(_BuiltinCase):
    case_id = "onnxruntime-onnx"


class TestOpenVINOIR(_BuiltinCase):
    case_id = "openvino-ir"


class TestOpenVINOOnnx(_BuiltinCase):
    case_id = "openvino-onnx"


class TestOpenVINOTflite(_BuiltinCase):
    case_id = "openvino-tflite"


class TestLiteRTTflite(_BuiltinCase):
    case_id = "litert-tflite"


CUDA_PLUGIN = ROOT / "plugins" / "appliance_onnxruntime_cuda"


@pytest.mark.gpu
class TestOnnxRuntimeCudaOnnx(BackendConformanceTests):
    """The suite on the ``onnxruntime-cuda`` plugin: skipped unless it is available
    here (the onnxruntime-gpu wheel and a visible NVIDIA GPU). Default options, so TF32
    is off and FP32 results meet the same tolerances as on the CPU."""

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_case(cls, tmp_path_factory: pytest.TempPathFactory) -> ConformanceCase:
        if not CUDA_PLUGIN.is_dir():
            pytest.skip("the onnxruntime-cuda plugin is not in this tree")
        importlib.import_module("onnx")
        if importlib.util.find_spec(CUDA_PLUGIN.name) is None:
            sys.path.append(str(CUDA_PLUGIN.parent))  # not in the editable install's map
        backend = importlib.import_module(CUDA_PLUGIN.name).OnnxRuntimeCudaBackend()
        avail = backend.availability()
        if not avail.available:
            pytest.skip(f"onnxruntime-cuda is unavailable: {avail.reason}")
        return onnx_linear_case(tmp_path_factory.mktemp("onnxruntime-cuda"), backend)


# -- the same file on two backends -------------------------------------------------------


@pytest.fixture(scope="module")
def ort() -> Backend:
    importlib.import_module("onnxruntime")
    from appliance_onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend()


@pytest.fixture(scope="module")
def openvino() -> Backend:
    importlib.import_module("openvino")
    from appliance_openvino import OpenVINOBackend

    return OpenVINOBackend()


@pytest.fixture(scope="module")
def litert() -> Backend:
    importlib.import_module("ai_edge_litert.interpreter")
    from appliance_litert import LiteRTBackend

    return LiteRTBackend()


def _agree(path: Path, fmt: str, first: Backend, second: Backend,
           feed: dict[str, np.ndarray], atol: float) -> None:
    """Both backends load ``path`` with default options, declare the same signature
    and give the same outputs for ``feed`` within ``atol``."""
    source = ModelSource(path, fmt)
    a, b = first.load(source, options={}), second.load(source, options={})
    try:
        assert [s.name for s in a.inputs] == [s.name for s in b.inputs]
        assert [(s.name, s.datatype) for s in a.outputs] == \
            [(s.name, s.datatype) for s in b.outputs]
        got_a, got_b = a.predict(feed), b.predict(feed)
        assert sorted(got_a) == sorted(got_b)
        for name in got_a:
            assert got_a[name].shape == got_b[name].shape, name
            assert np.isfinite(got_a[name]).all(), name
            np.testing.assert_allclose(got_a[name], got_b[name], rtol=0, atol=atol,
                                       err_msg=f"{first.name} vs {second.name}: {name}")
    finally:
        a.close()
        b.close()


def _installed_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"{package} is not installed: run the README's set-up (./dev.sh setup)")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        pytest.fail(f"{package} has no {'/'.join(parts)}")
    return path


def test_onnx_model_agrees_on_onnxruntime_and_openvino(ort: Backend, openvino: Backend,
                                                       tmp_path: Path) -> None:
    importlib.import_module("onnx")
    from appliance.testing.ov_models import build_onnx_linear_model

    path = build_onnx_linear_model(tmp_path / "linear.onnx", in_features=30, out_features=2)
    x = np.random.default_rng(3).standard_normal((16, 30)).astype(np.float32)
    _agree(path, "onnx", ort, openvino, {"x": x}, atol=1e-5)


def test_tflite_model_agrees_on_litert_and_openvino(litert: Backend, openvino: Backend,
                                                    tmp_path: Path) -> None:
    from appliance.testing.tflite_builder import build_fully_connected_model

    path = build_fully_connected_model(tmp_path / "fc.tflite", in_features=30,
                                       out_features=5, seed=2)
    x = np.random.default_rng(4).standard_normal((16, 30)).astype(np.float32)
    _agree(path, "tflite", litert, openvino, {"x": x}, atol=1e-5)


def test_magika_onnx_agrees_on_onnxruntime_and_openvino(ort: Backend,
                                                        openvino: Backend) -> None:
    path = _installed_file("magika", "models", "standard_v3_3", "model.onnx")
    x = np.random.default_rng(5).integers(0, 257, size=(8, 2048), dtype=np.int32)
    _agree(path, "onnx", ort, openvino, {"bytes": x}, atol=1e-4)


def test_mediapipe_face_detector_agrees_on_litert_and_openvino(litert: Backend,
                                                               openvino: Backend) -> None:
    path = _installed_file("mediapipe", "modules", "face_detection",
                           "face_detection_short_range.tflite")
    x = np.random.default_rng(6).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    _agree(path, "tflite", litert, openvino, {"input": x}, atol=1e-3)
