"""The LiteRT backend plugin, on models built offline with appliance.testing.tflite_builder
and on a real shipped model (MediaPipe's face detector), cross-checked against OpenVINO."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import ai_edge_litert.interpreter  # noqa: F401  the set-up installs it: a broken install fails
import appliance_litert
import numpy as np
import pytest
from appliance_litert import LiteRTBackend

from appliance.backend import ModelSource
from appliance.errors import InvalidModelFile, SignatureMismatch
from appliance.plugins import get_plugin_manager, installed_backends
from appliance.testing.tflite_builder import (
    build_add_mul_model,
    build_fully_connected_model,
    reference_fully_connected,
)


def _load(path: Path, **options: Any) -> appliance_litert.LiteRTModel:
    return LiteRTBackend().load(ModelSource(path, "tflite"), options=options)


def _openvino_run(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    ov = importlib.import_module("openvino")
    core = ov.Core()
    # f32 explicitly: on CPUs with bf16 support OpenVINO otherwise defaults to bf16.
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(x)
    return {o.get_any_name(): result[o] for o in compiled.outputs}


@pytest.fixture
def add_mul(tmp_path: Path) -> Path:
    return build_add_mul_model(tmp_path / "add_mul.tflite")


def test_plugin_registers_litert_backend_for_tflite() -> None:
    pm = get_plugin_manager(autoload=False, extra=(appliance_litert,))
    backends = [b for b in installed_backends(pm) if b.name == "litert"]
    assert len(backends) == 1
    assert backends[0].formats == ("tflite",)
    avail = backends[0].availability()
    assert avail.available and "ai-edge-litert" in avail.reason and avail.devices == ["CPU"]


def test_unavailable_without_any_tflite_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import raise ImportError
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    avail = LiteRTBackend().availability()
    assert not avail.available
    assert "ai_edge_litert" in avail.reason and "tflite_runtime" in avail.reason


def test_signature_declares_dynamic_batch(add_mul: Path) -> None:
    model = _load(add_mul)
    assert [s.to_dict() for s in model.inputs] == [
        {"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert [s.to_dict() for s in model.outputs] == [
        {"name": "y", "datatype": "FP32", "shape": [-1, 4]}]


def test_litert_predicts_add_mul_model_exactly(add_mul: Path) -> None:
    model = _load(add_mul)
    x = np.array([[0.0, 1.0, -2.5, 3.25]], np.float32)
    out = model.predict({"x": x})
    assert set(out) == {"y"}
    assert out["y"].dtype == np.float32
    np.testing.assert_array_equal(out["y"], x * 2 + 1)


def test_variable_batch_dimension_resizes_input(add_mul: Path) -> None:
    model = _load(add_mul)
    rng = np.random.default_rng(0)
    for batch in (1, 7, 3, 7, 1, 64):
        x = rng.standard_normal((batch, 4)).astype(np.float32)
        y = model.predict({"x": x})["y"]
        assert y.shape == (batch, 4)
        np.testing.assert_allclose(y, x * 2 + 1, rtol=0, atol=1e-6)


def test_fixed_batch_model_rejects_other_batch(tmp_path: Path) -> None:
    model = _load(build_add_mul_model(tmp_path / "fixed.tflite", batch=2))
    assert model.inputs[0].shape == (2, 4)
    model.predict({"x": np.zeros((2, 4), np.float32)})
    with pytest.raises(SignatureMismatch, match=r"\[3, 4\]"):
        model.predict({"x": np.zeros((3, 4), np.float32)})


def test_missing_input_is_signature_mismatch(add_mul: Path) -> None:
    with pytest.raises(SignatureMismatch, match="missing input"):
        _load(add_mul).predict({"z": np.zeros((1, 4), np.float32)})


def test_fully_connected_matches_numpy_reference(tmp_path: Path) -> None:
    path = build_fully_connected_model(tmp_path / "fc.tflite", in_features=5,
                                       out_features=3, seed=7)
    model = _load(path, num_threads=2)
    x = np.random.default_rng(1).standard_normal((6, 5)).astype(np.float32)
    probs = model.predict({"x": x})["probs"]
    expected = reference_fully_connected(x, seed=7, in_features=5, out_features=3)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_builder_models_agree_with_openvino(tmp_path: Path, add_mul: Path) -> None:
    fc = build_fully_connected_model(tmp_path / "fc.tflite")
    x = np.random.default_rng(2).standard_normal((4, 4)).astype(np.float32)
    for path, name in ((add_mul, "y"), (fc, "probs")):
        litert = _load(path).predict({"x": x})[name]
        np.testing.assert_allclose(_openvino_run(path, x)[name], litert, atol=1e-5)


def test_concurrent_predicts_from_threads_agree(tmp_path: Path) -> None:
    model = _load(build_fully_connected_model(tmp_path / "fc.tflite"), instances=3)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(25):
                # varying batch sizes force resizes while other threads run
                x = rng.standard_normal((int(rng.integers(1, 9)), 4)).astype(np.float32)
                got = model.predict({"x": x})["probs"]
                np.testing.assert_allclose(got, reference_fully_connected(x), atol=1e-5)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert model.metadata()["instances"] == 3


def test_metadata_reports_cpu_threads_and_instances(add_mul: Path) -> None:
    meta = _load(add_mul, num_threads=2, instances=2).metadata()
    assert meta["backend"] == "litert"
    assert meta["device"] == "CPU"
    assert meta["num_threads"] == 2 and meta["instances"] == 2
    assert "delegate_error" not in meta


@pytest.mark.parametrize("content", [b"", b"not a flatbuffer at all" * 4,
                                     b"\x1c\x00\x00\x00TFL3" + b"\xff" * 40])
def test_corrupt_file_gives_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.tflite"
    path.write_bytes(content)
    with pytest.raises(InvalidModelFile, match=r"LiteRT cannot load broken\.tflite"):
        _load(path)


def test_truncated_model_gives_clear_error(tmp_path: Path, add_mul: Path) -> None:
    path = tmp_path / "truncated.tflite"
    path.write_bytes(add_mul.read_bytes()[:60])
    with pytest.raises(InvalidModelFile, match=r"truncated\.tflite"):
        _load(path)


@pytest.mark.parametrize("library", [
    "/nonexistent/libedgetpu.so.1",  # a path that does not exist
    "libedgetpu-missing.so.1",  # a soname the dynamic linker cannot find
    pytest.param("libc.so.6", marks=pytest.mark.skipif(  # loads, but is no delegate
        not sys.platform.startswith("linux"), reason="glibc soname")),
])
def test_missing_delegate_library_falls_back_to_cpu_loudly(
        add_mul: Path, library: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="appliance_litert"):
        model = _load(add_mul, delegate=library, instances=2)
    assert any(library in r.getMessage() and "CPU" in r.getMessage() for r in caplog.records)
    meta = model.metadata()
    assert meta["device"] == "CPU"
    assert meta["delegate"] == library
    assert "running on CPU" in meta["delegate_error"]
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(model.predict({"x": x})["y"], x * 2 + 1)


def _face_detector() -> Path:
    # find_spec does not import mediapipe (installed without its dependencies)
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("mediapipe is not installed: run the README's set-up (./dev.sh setup)")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "modules" / "face_detection" / "face_detection_short_range.tflite"


def test_real_face_detector_predicts_and_agrees_with_openvino() -> None:
    path = _face_detector()
    model = _load(path, num_threads=2)
    assert [s.to_dict() for s in model.inputs] == [
        {"name": "input", "datatype": "FP32", "shape": [1, 128, 128, 3]}]
    assert all(s.datatype == "FP32" and -1 not in s.shape for s in model.outputs)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    out = model.predict({"input": x})
    assert set(out) == {s.name for s in model.outputs}
    for spec in model.outputs:
        assert out[spec.name].shape == spec.shape
        assert np.isfinite(out[spec.name]).all()
    reference = _openvino_run(path, x)
    for spec in model.outputs:
        np.testing.assert_allclose(out[spec.name], reference[spec.name], atol=1e-3)
