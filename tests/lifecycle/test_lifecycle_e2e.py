"""The lifecycle end to end against a real server: promote, roll back, deprecate, hold,
and crashes in the middle of a promotion."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers import make_services, serve, unsigned_config
from helpers.models import scale_model

from appliance.packages.importer import import_model
from appliance.registry import Registry


def infer(url: str, model: str = "m") -> httpx.Response:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 1]}]}
    return httpx.post(f"{url}/v2/models/{model}/infer", json=body, timeout=30)


def post(url: str, path: str, **body) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60)


@pytest.fixture
def lifecycle_server(tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager, registry_poll_s=0.1)
    for factor in (1, 2):
        import_model(services.registry, services.catalog,
                     scale_model(tmp_path / f"v{factor}.onnx", factor), name="m",
                     created_by="pusher")
    server = serve(services)
    yield server.url, services
    server.stop()


def test_promote_and_roll_back_through_the_api_switch_what_answers(lifecycle_server):
    url, _ = lifecycle_server
    r = post(url, "/v1/models/m/versions/1/promote", to="production", actor="ops")
    assert r.status_code == 200, r.text
    assert infer(url).json()["model_version"] == "1"
    r = post(url, "/v1/models/m/versions/2/promote", to="production", actor="ops")
    assert r.status_code == 200 and r.json()["demoted"] == "1"
    assert infer(url).json()["outputs"][0]["data"] == [2.0, 2.0]
    r = post(url, "/v1/models/m/rollback", reason="bad numbers", actor="ops")
    assert r.status_code == 200, r.text
    assert infer(url).json()["model_version"] == "1"
    history = httpx.get(f"{url}/v1/models/m/versions/2").json()
    assert [h["to"] for h in history["stage_history"]][-2:] == ["production",
                                                                       "deprecated"]


def test_api_refusals_have_the_right_status(lifecycle_server):
    url, services = lifecycle_server
    r = post(url, "/v1/models/m/versions/1/promote", to="archived")
    assert r.status_code == 200
    r = post(url, "/v1/models/m/versions/1/promote", to="production")
    assert r.status_code == 409 and "legal from archived" in r.json()["error"]
    r = post(url, "/v1/models/m/versions/9/promote", to="shadow")
    assert r.status_code == 404
    r = post(url, "/v1/models/m/versions/2/approve", approver="pusher", reason="mine")
    assert r.status_code == 403
    r = post(url, "/v1/models/m/versions/2/hold", holder="legal", reason="litigation")
    assert r.status_code == 200, r.text
    r = httpx.request("DELETE", f"{url}/v1/models/m/versions/2",
                      json={"actor": "ops", "reason": "cleanup"})
    assert r.status_code == 409 and "litigation" in r.json()["error"]


def test_deprecated_version_answers_with_deprecation_sunset_and_link(lifecycle_server):
    url, _ = lifecycle_server
    r = post(url, "/v1/models/m/versions/1/deprecate", deprecation_date="2026-01-01",
             sunset_date="2027-01-01", successor="2", actor="ops")
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while "Deprecation" not in (r := httpx.post(
            f"{url}/v2/models/m/versions/1/infer",
            json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                              "data": [1, 1]}]})).headers:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert r.headers["Deprecation"].startswith("@")
    assert "2027" in r.headers["Sunset"]
    assert 'versions/2>; rel="successor-version"' in r.headers["Link"]


def _cli(data_dir, *args) -> subprocess.Popen:
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir),
           "APPLIANCE_CONFIG": str(unsigned_config(Path(data_dir).parent))}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.Popen([sys.executable, "-m", "appliance.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _consistent(data_dir) -> list[str]:
    registry = Registry(data_dir)
    try:
        assert registry.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stages = {v.version: v.stage for v in registry.versions("m")}
        assert list(stages.values()).count("production") <= 1, stages
        for version, stage in stages.items():
            last = registry.db.execute(
                "SELECT to_stage FROM stage_history WHERE model='m' AND version=? "
                "ORDER BY id DESC LIMIT 1", [version]).fetchone()[0]
            assert last == stage, f"version {version}: stage {stage}, history says {last}"
        return [v for v, s in stages.items() if s == "production"]
    finally:
        registry.close()


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.6, 0.9, 1.3])
def test_sigkill_during_a_cli_promotion_leaves_old_or_new_and_serving_continues(
        lifecycle_server, tmp_path, delay):
    url, services = lifecycle_server
    assert post(url, "/v1/models/m/versions/1/promote", to="production").status_code == 200
    proc = _cli(tmp_path / "var", "models", "promote", "m", "2", "--to", "production",
                "--by", "ops")
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    production = _consistent(tmp_path / "var")
    assert production in (["1"], ["2"])
    time.sleep(0.5)  # the watcher picks up whatever was committed
    r = infer(url)
    assert r.status_code == 200 and r.json()["model_version"] == production[0]
