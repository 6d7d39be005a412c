"""The OpenVINO backend: IR / ONNX / TFLite loading, agreement with ONNX Runtime,
dynamic batch, thread safety, compile cache, errors and lazy import."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openvino  # noqa: F401  the set-up installs it: a broken install fails, not skips
import pytest
from appliance_openvino import OpenVINOBackend, appliance_backends
from helpers import ROOT

from appliance.backend import ModelSource
from appliance.errors import ConfigError, InvalidModelFile
from appliance.signature import TensorSpec
from appliance.testing.ov_models import (
    build_onnx_linear_model,
    build_openvino_ir,
    reference_linear,
)


@pytest.fixture(scope="module")
def backend() -> OpenVINOBackend:
    return OpenVINOBackend()


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_onnx_linear_model(tmp_path_factory.mktemp("ov") / "linear.onnx",
                                   in_features=4, out_features=3, seed=0)


@pytest.fixture(scope="module")
def ir_path(onnx_path: Path) -> Path:
    return build_openvino_ir(onnx_path.with_name("linear.xml"), onnx_path)


def _x(batch: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 4)).astype(np.float32)


def test_plugin_registers_backend() -> None:
    (b,) = appliance_backends()
    assert b.name == "openvino" and b.formats == ("openvino", "onnx", "tflite")


def test_availability_lists_cpu(backend: OpenVINOBackend) -> None:
    avail = backend.availability()
    assert avail.available, avail.reason
    assert "CPU" in avail.devices


def test_ir_predicts_reference(backend: OpenVINOBackend, ir_path: Path) -> None:
    model = backend.load(ModelSource(ir_path, "openvino"), options={})
    assert model.inputs == [TensorSpec("x", "FP32", (-1, 4))]
    assert model.outputs == [TensorSpec("y", "FP32", (-1, 3))]
    x = _x(16)
    y = model.predict({"x": x})["y"]
    assert y.dtype == np.float32 and y.shape == (16, 3)
    np.testing.assert_allclose(y, reference_linear(x), rtol=0, atol=1e-6)
    assert (y > 0).any()  # the reference is not trivially all-zero after ReLU
    meta = model.metadata()
    assert meta["backend"] == "openvino" and meta["device"] == "CPU"
    assert meta["performance_hint"] == "LATENCY" and meta["openvino_version"]
    model.close()


def test_ir_without_bin_is_invalid(backend: OpenVINOBackend, ir_path: Path,
                                   tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(ir_path.read_bytes())
    with pytest.raises(InvalidModelFile, match=r"lonely\.bin"):
        backend.load(ModelSource(lonely, "openvino"), options={})


def test_onnx_agrees_with_onnxruntime(backend: OpenVINOBackend, onnx_path: Path) -> None:
    from appliance_onnxruntime import OnnxRuntimeBackend

    source = ModelSource(onnx_path, "onnx")
    ov_model = backend.load(source, options={})
    ort_model = OnnxRuntimeBackend().load(source, options={})
    assert ov_model.inputs == ort_model.inputs and ov_model.outputs == ort_model.outputs
    x = _x(32, seed=2)
    np.testing.assert_allclose(ov_model.predict({"x": x})["y"],
                               ort_model.predict({"x": x})["y"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_variable_batch_sizes(backend: OpenVINOBackend, ir_path: Path, batch: int) -> None:
    model = backend.load(ModelSource(ir_path, "openvino"), options={})
    x = _x(batch, seed=batch)
    y = model.predict({"x": x})["y"]
    assert y.shape == (batch, 3)
    np.testing.assert_allclose(y, reference_linear(x), rtol=0, atol=1e-6)


def test_concurrent_predicts_agree(backend: OpenVINOBackend, onnx_path: Path) -> None:
    model = backend.load(ModelSource(onnx_path, "onnx"),
                         options={"performance_hint": "THROUGHPUT", "instances": 4})
    assert model.metadata()["infer_requests"] == 4
    xs = [_x(1 + i % 9, seed=100 + i) for i in range(200)]

    def run(x: np.ndarray) -> np.ndarray:
        return model.predict({"x": x})["y"]

    # 8 threads over a pool of 4 requests: callers queue for a request, results must
    # never leak between callers (each output is copied out of its request's memory).
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, xs))
    for x, y in zip(xs, results, strict=True):
        np.testing.assert_allclose(y, reference_linear(x), rtol=0, atol=1e-6)


def test_cache_dir_is_populated_and_reused(onnx_path: Path, tmp_path: Path) -> None:
    cache = tmp_path / "ov-cache" / "nested"  # created by the backend
    source = ModelSource(onnx_path, "onnx")
    first = OpenVINOBackend().load(source, options={"cache_dir": str(cache)})
    assert any(cache.iterdir()), "compiled blob was not written to cache_dir"
    assert first.metadata()["loaded_from_cache"] is False
    # A fresh backend (new Core) stands in for a restart.
    second = OpenVINOBackend().load(source, options={"cache_dir": str(cache)})
    assert second.metadata()["loaded_from_cache"] is True
    x = _x(5)
    np.testing.assert_allclose(second.predict({"x": x})["y"], reference_linear(x),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize(("fmt", "name"), [("onnx", "broken.onnx"), ("openvino", "broken.xml")])
def test_corrupt_file_is_invalid(backend: OpenVINOBackend, tmp_path: Path,
                                 fmt: str, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(os.urandom(512))
    path.with_suffix(".bin").write_bytes(os.urandom(64))
    with pytest.raises(InvalidModelFile, match=name.replace(".", r"\.")):
        backend.load(ModelSource(path, fmt), options={})


def test_unknown_device_lists_available(backend: OpenVINOBackend, onnx_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"NOSUCHDEVICE.*available devices: .*CPU"):
        backend.load(ModelSource(onnx_path, "onnx"), options={"device": "NOSUCHDEVICE"})
    with pytest.raises(ConfigError, match="NOSUCHDEVICE"):
        backend.load(ModelSource(onnx_path, "onnx"), options={"device": "AUTO:NOSUCHDEVICE"})


def test_auto_device_loads(backend: OpenVINOBackend, onnx_path: Path) -> None:
    model = backend.load(ModelSource(onnx_path, "onnx"), options={"device": "AUTO"})
    x = _x(3)
    np.testing.assert_allclose(model.predict({"x": x})["y"], reference_linear(x),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("options", [{"performance_hint": "FAST"}, {"num_streams": "x"},
                                     {"inference_num_threads": 0}, {"instances": -1},
                                     {"inference_precision": "int4"}])
def test_bad_options_are_config_errors(backend: OpenVINOBackend, onnx_path: Path,
                                       options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        backend.load(ModelSource(onnx_path, "onnx"), options=options)


def test_tflite_loads_from_path(backend: OpenVINOBackend, tmp_path: Path) -> None:
    importlib.import_module("ai_edge_litert")
    builder = importlib.import_module("appliance.testing.tflite_builder")
    path = builder.build_add_mul_model(tmp_path / "add_mul.tflite", batch=-1, features=4)
    model = backend.load(ModelSource(path, "tflite"), options={})
    x = _x(6)
    (name,) = [s.name for s in model.outputs]
    np.testing.assert_allclose(model.predict({model.inputs[0].name: x})[name], x * 2 + 1,
                               rtol=0, atol=1e-6)


def test_string_tensors_round_trip(backend: OpenVINOBackend, tmp_path: Path) -> None:
    import openvino as ov
    import openvino.opset13 as ops

    param = ops.parameter([-1], ov.Type.string, name="text")
    # An identity on strings: OpenVINO has few string ops, but a Result is enough to
    # exercise BYTES in (object array of bytes) and out (object array of bytes). The
    # Result shares the Parameter's tensor, hence its name.
    graph = ov.Model([ops.result(param)], [param], "echo")
    xml = tmp_path / "echo.xml"
    ov.save_model(graph, str(xml))
    model = backend.load(ModelSource(xml, "openvino"), options={})
    assert model.inputs == model.outputs == [TensorSpec("text", "BYTES", (-1,))]
    text = np.array([b"hello", "w\u00f6rld", b"x"], dtype=object)
    out = model.predict({"text": text})["text"]
    assert out.dtype == object and out.tolist() == [b"hello", "w\u00f6rld".encode(), b"x"]


def test_unnamed_ports_get_generated_names(backend: OpenVINOBackend, tmp_path: Path) -> None:
    import openvino as ov
    import openvino.opset13 as ops

    param = ops.parameter([-1, 2], ov.Type.f32)
    graph = ov.Model([ops.relu(param)], [param], "unnamed")
    xml = tmp_path / "unnamed.xml"
    ov.save_model(graph, str(xml))
    # OpenVINO 2026 names every port when it builds a Model, so drop the names from
    # the IR by hand, as an older or hand-written IR may have none.
    xml.write_text(re.sub(r' (output_)?names="[^"]*"', "", xml.read_text()))
    model = backend.load(ModelSource(xml, "openvino"), options={})
    assert [s.name for s in model.inputs] == ["input_0"]
    assert [s.name for s in model.outputs] == ["output_0"]
    x = np.array([[-1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(model.predict({"input_0": x})["output_0"], [[0.0, 2.0]])


def test_import_does_not_import_openvino() -> None:
    code = ("import sys, appliance_openvino\n"
            "b = appliance_openvino.appliance_backends()[0]\n"
            "assert 'openvino' not in sys.modules, 'openvino imported eagerly'\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT, timeout=60)


def _magika_model() -> Path:
    spec = importlib.util.find_spec("magika")
    if spec is None or spec.origin is None:
        pytest.fail("magika is not installed: run the README's set-up (./dev.sh setup)")
    path = Path(spec.origin).parent / "models" / "standard_v3_3" / "model.onnx"
    if not path.is_file():
        pytest.fail(f"magika model not found at {path}")
    return path


def test_magika_onnx_agrees_with_onnxruntime(backend: OpenVINOBackend) -> None:
    from appliance_onnxruntime import OnnxRuntimeBackend

    source = ModelSource(_magika_model(), "onnx")
    ov_model = backend.load(source, options={})
    ort_model = OnnxRuntimeBackend().load(source, options={})
    assert ov_model.inputs == [TensorSpec("bytes", "INT32", (-1, 2048))]
    assert ov_model.outputs == [TensorSpec("target_label", "FP32", (-1, 214))]
    x = np.random.default_rng(1234).integers(0, 257, size=(4, 2048), dtype=np.int32)
    got = ov_model.predict({"bytes": x})["target_label"]
    want = ort_model.predict({"bytes": x})["target_label"]
    assert got.shape == (4, 214)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
