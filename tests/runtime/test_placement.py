"""The hardware profile decides backend, variant and fallbacks; never silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import appliance_onnxruntime
import httpx
import pytest
from helpers import serve
from helpers.models import scale_model

from appliance.hardware import discover, load_profile, match_profile
from appliance.packages.importer import import_model
from appliance.plugins import get_plugin_manager
from appliance.services import Hardware, build_services
from appliance.settings import load_settings

PROFILE = """
name = "test-box"
[prefer]
backends = {{ onnx = ["onnxruntime"] }}
precision = {precision}
gpu_fallback = "{fallback}"
"""


def hardware_with(tmp_path: Path, precision: list[str], fallback: str = "cpu") -> Hardware:
    path = tmp_path / "test-box.toml"
    path.write_text(PROFILE.format(precision=json.dumps(precision), fallback=fallback))
    facts = discover()
    return Hardware(facts, match_profile(facts, [load_profile(path)]))


def services_with(tmp_path: Path, hardware: Hardware, *plugins):
    pm = get_plugin_manager(autoload=False, extra=(appliance_onnxruntime, *plugins))
    settings = load_settings({"data_dir": tmp_path / "var"}, environ={})
    return build_services(settings, pm=pm, hardware=hardware)


def infer_y(url: str, model: str) -> list[float]:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 1]}]}
    r = httpx.post(f"{url}/v2/models/{model}/infer", json=body)
    assert r.status_code == 200, r.text
    return r.json()["outputs"][0]["data"]


@pytest.mark.parametrize(("precision", "expected", "variant"), [
    (["int8", "fp32"], [2.0, 2.0], "int8/onnx"),
    (["fp32", "int8"], [1.0, 1.0], "fp32/onnx"),
])
def test_profile_precision_picks_the_variant(tmp_path, precision, expected, variant):
    services = services_with(tmp_path, hardware_with(tmp_path, precision))
    import_model(services.registry, services.catalog, scale_model(tmp_path / "fp32.onnx", 1),
                 name="m", variants=[("int8", scale_model(tmp_path / "int8.onnx", 2))])
    server = serve(services)
    try:
        assert infer_y(server.url, "m") == expected
        meta = httpx.get(f"{server.url}/v2/models/m").json()
        assert meta["parameters"]["variant"] == variant
    finally:
        server.stop()


def test_broken_preferred_variant_falls_back_to_the_next_and_says_so(tmp_path):
    services = services_with(tmp_path, hardware_with(tmp_path, ["int8", "fp32"]))
    record = import_model(services.registry, services.catalog,
                          scale_model(tmp_path / "fp32.onnx", 1), name="m",
                          variants=[("int8", scale_model(tmp_path / "int8.onnx", 2))])
    stored = services.registry.artifact_path(record.variants[0])
    stored.write_bytes(b"corrupted on disk")
    server = serve(services)
    try:
        assert infer_y(server.url, "m") == [1.0, 1.0]
        params = httpx.get(f"{server.url}/v2/models/m").json()["parameters"]
        assert params["variant"] == "fp32/onnx"
        assert any("skipped: int8" in note for note in params["notes"])
    finally:
        server.stop()


def test_variants_must_share_tensor_names(tmp_path):
    from helpers.models import identity_model

    from appliance.errors import InvalidModelFile
    services = services_with(tmp_path, hardware_with(tmp_path, ["fp32"]))
    with pytest.raises(InvalidModelFile, match="same tensor names"):
        import_model(services.registry, services.catalog, scale_model(tmp_path / "a.onnx", 1),
                     name="m", variants=[("int8", identity_model(tmp_path / "b.onnx", name="a"))])
    assert services.registry.models() == []


def test_hardware_endpoint_reports_facts_profile_and_reasons(tmp_path):
    services = services_with(tmp_path, hardware_with(tmp_path, ["fp32"]))
    server = serve(services)
    try:
        report = httpx.get(f"{server.url}/v1/hardware").json()
        assert report["profile"] == "test-box"
        assert report["facts"]["arch"] in ("x86_64", "aarch64")
        assert report["reasons"]
    finally:
        server.stop()


def _cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir)}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_hardware_command_prints_facts_and_the_matched_profile(tmp_path):
    r = _cli("hardware", "--json", data_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["profile"] and report["reasons"] and report["facts"]["cores"] >= 1
    human = _cli("hardware", data_dir=tmp_path).stdout
    assert "Profile:" in human and "Why" in human


def test_unknown_profile_override_lists_the_known_ones(tmp_path):
    r = _cli("hardware", "--profile", "nope", data_dir=tmp_path)
    assert r.returncode == 1 and "generic-x86_64" in r.stderr


def test_broken_explicit_profile_stops_the_appliance_naming_file_and_key(tmp_path):
    bad = tmp_path / "mine.toml"
    bad.write_text('name = "mine"\n[prefer]\nthreads = "many"\n')
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(f'profile_dirs = ["{bad}"]\n')
    r = _cli("--config", str(cfg), "serve", "--port", "0", data_dir=tmp_path)
    assert r.returncode == 1
    assert "mine.toml" in r.stderr and "threads" in r.stderr


@pytest.mark.parametrize("fallback", ["cpu", "refuse"])
def test_model_pinned_to_a_gpu_on_a_box_without_one_follows_the_profile(tmp_path, fallback):
    import appliance_onnxruntime_cuda

    services = services_with(tmp_path, hardware_with(tmp_path, ["fp32"], fallback),
                             appliance_onnxruntime_cuda)
    if services.catalog.availability(services.catalog.by_name("onnxruntime-cuda")).available:
        pytest.skip("this box has a usable GPU: the no-GPU path cannot be shown here")
    import_model(services.registry, services.catalog, scale_model(tmp_path / "a.onnx", 2),
                 name="gpu-model", backend="onnxruntime-cuda")
    import_model(services.registry, services.catalog, scale_model(tmp_path / "b.onnx", 3),
                 name="cpu-model")
    server = serve(services)
    try:
        params = httpx.get(f"{server.url}/v2/models/gpu-model").json()["parameters"]
        if fallback == "cpu":
            assert infer_y(server.url, "gpu-model") == [2.0, 2.0]
            assert params["backend"] == "onnxruntime"
            assert any("onnxruntime-cuda is unavailable" in n for n in params["notes"])
        else:
            r = httpx.post(f"{server.url}/v2/models/gpu-model/infer", json={"inputs": []})
            assert r.status_code == 503 and "refuses to fall back" in r.json()["error"]
            assert params["state"] == "failed"
        assert infer_y(server.url, "cpu-model") == [3.0, 3.0]
    finally:
        server.stop()
