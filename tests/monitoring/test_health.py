"""GET /v1/health, readiness after a production model fails, the recovery probe, and
the metrics:read scope, against real servers."""

from __future__ import annotations

import json

import appliance_onnxruntime
import flaky_backend
import httpx
import pytest
from helpers import make_services, serve
from scraping import scrape, value

from appliance.cli.tokens import mint_token
from appliance.packages.importer import import_model
from appliance.plugins import get_plugin_manager
from appliance.registry.db import bump_generation, transaction

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 1]}]}


def set_stage(services, model: str, version: str, stage: str) -> None:
    db = services.registry.db
    with transaction(db):
        db.execute("UPDATE versions SET stage = ? WHERE model = ? AND version = ?",
                   [stage, model, version])
        bump_generation(db)


@pytest.fixture
def flaky(tmp_path):
    """A server whose production model ``f`` (the flaky backend) and registered model
    ``other`` both serve; ``flaky_backend.BROKEN`` breaks every predict."""
    flaky_backend.BROKEN.clear()
    pm = get_plugin_manager(autoload=False, extra=(appliance_onnxruntime, flaky_backend))
    services = make_services(tmp_path / "var", pm,
                             metrics={"failing_after_errors": 3, "retry_failing_s": 3600})
    for name in ("f", "other"):
        path = tmp_path / f"{name}.flaky"
        path.write_text(json.dumps({"scale": 2}))
        import_model(services.registry, services.catalog, path, name=name)
    set_stage(services, "f", "1", "production")
    server = serve(services)
    yield server.url, services
    flaky_backend.BROKEN.clear()
    server.stop()


def infer(url: str, model: str = "f") -> httpx.Response:
    return httpx.post(f"{url}/v2/models/{model}/infer", json=BODY)


def test_a_healthy_box_reports_ok_with_models_and_dependencies(flaky):
    url, _ = flaky
    assert infer(url).status_code == 200
    health = httpx.get(url + "/v1/health").json()
    assert health["status"] == "ok" and health["reasons"] == []
    f = next(m for m in health["models"] if m["name"] == "f")
    assert f["stage"] == "production" and f["state"] == "ready" and not f["failing"]
    assert f["load_s"] > 0 and f["warmup_s"] > 0 and f["memory_bytes"] >= 0
    assert f["last_success_at"] is not None and f["last_error"] is None
    deps = health["dependencies"]
    assert deps["registry"]["writable"] and deps["disk"]["free_bytes"] > 0
    assert deps["audit_writer"]["alive"] and deps["audit_writer"]["dropped"] == 0
    assert "numpy" in deps["backend_libraries"]
    one = httpx.get(url + "/v1/health/models/f").json()
    assert one["status"] == "ok" and [v["version"] for v in one["versions"]] == ["1"]
    assert httpx.get(url + "/v1/health/models/nope").status_code == 404


def test_readiness_turns_503_once_a_production_model_fails_at_inference(flaky):
    url, services = flaky
    assert httpx.get(url + "/v2/health/ready").status_code == 200
    flaky_backend.BROKEN.set()
    for _ in range(2):
        assert infer(url).status_code == 500
    assert httpx.get(url + "/v2/health/ready").status_code == 200  # 2 < 3 in a row
    assert infer(url).status_code == 500
    r = httpx.get(url + "/v2/health/ready")
    assert r.status_code == 503
    assert "f version 1 is failing at inference (3 backend errors in a row" in r.json()["error"]
    assert httpx.get(url + "/v2/health/live").status_code == 200
    health = httpx.get(url + "/v1/health").json()
    assert health["status"] == "failing"
    f = next(m for m in health["models"] if m["name"] == "f")
    assert f["failing"] and f["last_error"] == "RuntimeError: device lost"
    samples = scrape(url)
    assert value(samples, "nv_inference_request_failure", model="f", reason="BACKEND") == 3
    assert value(samples, "appliance_model_up", model="f") == 0
    # the probe re-tries off the request path: once the backend works, the box is ready
    flaky_backend.BROKEN.clear()
    assert services.probe.probe_once() == 1
    assert httpx.get(url + "/v2/health/ready").status_code == 200


def test_a_success_between_backend_errors_keeps_the_box_ready(flaky):
    url, _ = flaky
    for _ in range(3):
        flaky_backend.BROKEN.set()
        assert infer(url).status_code == 500
        flaky_backend.BROKEN.clear()
        assert infer(url).status_code == 200
    assert httpx.get(url + "/v2/health/ready").status_code == 200


def test_a_failing_model_outside_production_degrades_but_keeps_readiness(flaky):
    url, services = flaky
    flaky_backend.BROKEN.set()
    for _ in range(3):
        assert infer(url, "other").status_code == 500
    flaky_backend.BROKEN.clear()
    assert httpx.get(url + "/v2/health/ready").status_code == 200
    health = httpx.get(url + "/v1/health").json()
    assert health["status"] == "degraded"
    assert any("other version 1: failing at inference" in r for r in health["reasons"])


def test_a_production_version_that_fails_to_reload_fails_readiness(flaky):
    url, services = flaky
    services.repository.unload_model("f")
    record = services.registry.version("f", "1")
    services.registry.artifact_path(record).write_bytes(b"bit rot")
    services.repository.load_model("f")
    r = httpx.get(url + "/v2/health/ready")
    assert r.status_code == 503 and "f version 1 failed to load" in r.json()["error"]
    assert httpx.get(url + "/v1/health/models/f").json()["status"] == "failing"


def test_health_sources_degrade_the_report_and_never_readiness(flaky):
    url, services = flaky
    services.health.add_health_source(lambda: [("f", "input drift on x (psi 0.4)"),
                                               "p99 SLO breached"])
    health = httpx.get(url + "/v1/health").json()
    assert health["status"] == "degraded"
    assert "f: input drift on x (psi 0.4)" in health["reasons"]
    assert "p99 SLO breached" in health["reasons"]
    assert httpx.get(url + "/v2/health/ready").status_code == 200
    assert httpx.get(url + "/v1/health/models/f").json()["versions"][0]["reasons"] == [
        "input drift on x (psi 0.4)"]


def test_metrics_and_health_need_the_metrics_read_scope_when_auth_is_on(tmp_path,
                                                                        ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager, auth={"mode": "on"})
    token = {name: mint_token(tmp_path / "var", issuer="appliance-local",
                              audience="appliance", subject="prom", scopes=scopes, roles=[],
                              ttl_s=60)[0]
             for name, scopes in (("metrics", ["metrics:read"]), ("reader", ["models:read"]))}
    server = serve(services)
    try:
        for path in ("/metrics", "/v1/health"):
            assert httpx.get(server.url + path).status_code == 401
            r = httpx.get(server.url + path,
                          headers={"Authorization": f"Bearer {token['reader']}"})
            assert r.status_code == 403 and "metrics:read" in r.json()["error"]
            assert httpx.get(server.url + path, headers={
                "Authorization": f"Bearer {token['metrics']}"}).status_code == 200
    finally:
        server.stop()


def test_a_failing_production_model_raises_model_down_and_recovery_resolves_it(flaky):
    url, services = flaky
    assert services.alerts is not None
    services.alerts.tick()
    assert services.alerts.list_alerts(name="ModelDown", state="firing") == []
    flaky_backend.BROKEN.set()
    for _ in range(3):
        assert infer(url).status_code == 500
    services.alerts.tick()  # the server's alert thread does this every tick_s
    (down,) = httpx.get(url + "/v1/alerts", params={"state": "firing"}).json()
    assert (down["name"], down["labels"]["model"], down["severity"]) == ("ModelDown", "f",
                                                                         "critical")
    flaky_backend.BROKEN.clear()
    assert services.probe.probe_once() == 1
    services.alerts.tick()
    assert services.alerts.list_alerts(name="ModelDown", state="firing") == []
