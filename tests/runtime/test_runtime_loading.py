"""Fault-tolerant loading, safe switching, registry watching, repository extension."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from helpers import make_services, serve
from helpers.models import scale_model

from appliance.packages.importer import import_model
from appliance.registry.db import bump_generation, transaction


def infer(url: str, model: str, version: str | None = None) -> httpx.Response:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 1]}]}
    return httpx.post(url + path, json=body)


def set_stage(services, model: str, version: str, stage: str) -> None:
    db = services.registry.db
    with transaction(db):
        db.execute("UPDATE versions SET stage = ?, stage_changed_at = datetime('now') "
                   "WHERE model = ? AND version = ?", [stage, model, version])
        bump_generation(db)


@pytest.fixture
def two_models(tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager, registry_poll_s=0.1)
    for name in ("good", "bad"):
        import_model(services.registry, services.catalog, scale_model(tmp_path / f"{name}.onnx", 2),
                     name=name)
    return services


def test_one_broken_model_never_prevents_the_others_from_serving(two_models):
    bad = two_models.registry.version("bad", "1")
    two_models.registry.artifact_path(bad).write_bytes(b"bit rot")
    server = serve(two_models)
    try:
        assert infer(server.url, "good").json()["outputs"][0]["data"] == [2.0, 2.0]
        r = httpx.get(f"{server.url}/v2/models/bad/versions/1/ready")
        assert r.status_code == 503 and "failed" in r.json()["error"]
        r = infer(server.url, "bad")
        assert r.status_code == 503 and "cannot load" in r.json()["error"]
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    finally:
        server.stop()


def test_promotion_switches_default_route_only_after_the_new_version_is_ready(
        tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager, registry_poll_s=0.1)
    import_model(services.registry, services.catalog, scale_model(tmp_path / "a.onnx", 1), name="m")
    set_stage(services, "m", "1", "production")
    server = serve(services)
    try:
        assert infer(server.url, "m").json()["model_version"] == "1"
        import_model(services.registry, services.catalog, scale_model(tmp_path / "b.onnx", 3),
                     name="m")
        record = services.registry.version("m", "2")
        services.repository.preload(record)  # ready, but not routed yet
        assert infer(server.url, "m").json()["model_version"] == "1"
        assert infer(server.url, "m", "2").json()["outputs"][0]["data"] == [3.0, 3.0]
        set_stage(services, "m", "1", "deprecated")
        set_stage(services, "m", "2", "production")
        services.repository.refresh()
        assert infer(server.url, "m").json()["model_version"] == "2"
    finally:
        server.stop()


def test_failed_preload_keeps_the_previous_version_serving(tmp_path, ort_plugin_manager):
    from appliance.errors import ServiceUnavailable
    services = make_services(tmp_path / "var", ort_plugin_manager)
    import_model(services.registry, services.catalog, scale_model(tmp_path / "a.onnx", 1), name="m")
    set_stage(services, "m", "1", "production")
    server = serve(services)
    try:
        import_model(services.registry, services.catalog, scale_model(tmp_path / "b.onnx", 3),
                     name="m")
        broken = services.registry.version("m", "2")
        services.registry.artifact_path(broken).write_bytes(b"truncated")
        with pytest.raises(ServiceUnavailable, match="did not load"):
            services.repository.preload(broken)
        assert infer(server.url, "m").json()["model_version"] == "1"
    finally:
        server.stop()


def test_server_picks_up_a_model_added_by_the_cli(two_models, tmp_path):
    server = serve(two_models)
    try:
        assert httpx.get(f"{server.url}/v2/models/late").status_code == 404
        env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path / "var")}
        env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)
        subprocess.run([sys.executable, "-m", "appliance.cli", "models", "add",
                        str(scale_model(tmp_path / "late.onnx", 5)), "--name", "late"],
                       env=env, check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 15
        while infer(server.url, "late").status_code != 200:
            assert time.monotonic() < deadline, "the server never picked up the new model"
            time.sleep(0.1)
        assert infer(server.url, "late").json()["outputs"][0]["data"] == [5.0, 5.0]
    finally:
        server.stop()


def test_archived_version_is_unloaded_after_refresh(two_models):
    server = serve(two_models)
    try:
        set_stage(two_models, "good", "1", "archived")
        two_models.repository.refresh()
        assert infer(server.url, "good").status_code == 404
        assert infer(server.url, "bad").status_code == 200
    finally:
        server.stop()


def test_repository_extension_index_unload_and_load(two_models):
    server = serve(two_models)
    try:
        index = httpx.post(f"{server.url}/v2/repository/index", json={}).json()
        assert {(e["name"], e["state"]) for e in index} == {("good", "READY"), ("bad", "READY")}
        assert httpx.post(f"{server.url}/v2/repository/models/good/unload").status_code == 200
        r = infer(server.url, "good")
        assert r.status_code == 503 and "unloaded" in r.json()["error"]
        assert infer(server.url, "bad").status_code == 200
        assert httpx.post(f"{server.url}/v2/repository/models/good/load").status_code == 200
        assert infer(server.url, "good").status_code == 200
        r = httpx.post(f"{server.url}/v2/repository/models/ghost/load")
        assert r.status_code == 404 and "ghost" in r.json()["error"]
    finally:
        server.stop()


def test_load_that_exceeds_its_timeout_fails_with_the_reason(tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager)
    import_model(services.registry, services.catalog, scale_model(tmp_path / "a.onnx", 1), name="m")
    loader = services.repository.loader
    original = loader.load

    def slow(served):
        time.sleep(1.0)
        return original(served)

    loader.load = slow  # a backend that hangs while loading
    services.repository.load_timeout_s = 0.2
    served = services.repository.load(services.registry.version("m", "1"))
    assert served.state == "failed" and "load_timeout_s" in served.reason


def _set_manifest(services, manifest: dict) -> None:
    import json
    db = services.registry.db
    with transaction(db):
        db.execute("UPDATE versions SET manifest = ? WHERE model = 'm'", [json.dumps(manifest)])


def test_warm_up_uses_the_package_inputs_and_a_failing_warm_up_fails_the_load(
        tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager)
    import_model(services.registry, services.catalog, scale_model(tmp_path / "a.onnx", 1), name="m")
    good = {"warmup": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [4, 2],
                                   "data": [1.0] * 8}]}}
    _set_manifest(services, good)
    served = services.repository.load(services.registry.version("m", "1"))
    assert served.ready and served.warmup["inputs"] == "manifest"
    bad = {"warmup": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                  "data": [1.0] * 3}]}}
    _set_manifest(services, bad)
    served = services.repository.load(services.registry.version("m", "1"))
    assert served.state == "failed" and "warm-up" in served.reason


def test_the_cli_load_check_loads_like_the_runtime_and_fails_on_a_bad_warm_up(
        tmp_path, ort_plugin_manager):
    from appliance.runtime.loading import load_check

    services = make_services(tmp_path / "var", ort_plugin_manager)
    import_model(services.registry, services.catalog, scale_model(tmp_path / "a.onnx", 1), name="m")
    check = load_check(services.registry, services.catalog, timeout_s=30)
    check(services.registry.version("m", "1"))  # loads, warms up, closes: no error
    _set_manifest(services, {"warmup": {"inputs": [{"name": "x", "datatype": "FP32",
                                                    "shape": [1, 3], "data": [1.0] * 3}]}})
    with pytest.raises(Exception, match="warm-up"):
        check(services.registry.version("m", "1"))


def test_within_timeout_returns_raises_or_gives_up_with_503():
    from appliance.errors import ServiceUnavailable
    from appliance.runtime.loading import within_timeout

    assert within_timeout(lambda: 42, 1.0, "answering") == 42
    with pytest.raises(ZeroDivisionError):
        within_timeout(lambda: 1 // 0, 1.0, "dividing")
    with pytest.raises(ServiceUnavailable, match="sleeping took longer than 0.05 s"):
        within_timeout(lambda: time.sleep(1.0), 0.05, "sleeping")


def test_a_pinned_backend_is_chosen_by_the_catalog_only_when_it_can_load_the_format(
        tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager)
    catalog = services.catalog
    backend, why = catalog.pinned("onnxruntime", "onnx")
    assert backend is not None and backend.name == "onnxruntime" and why == ""
    assert catalog.pinned("onnxruntime", "tflite") == (None, "")  # does not claim it
    assert catalog.pinned(None, "onnx") == (None, "")
    assert catalog.pinned("no-such-backend", "onnx") == (None, "")
