"""The audit chain sees what happens on a real server: inferences, admin actions from any
process, and auth failures; and it verifies."""

from __future__ import annotations

import time

import httpx
from helpers import make_services, serve
from helpers.models import scale_model

from appliance.audit.checkpoints import verify
from appliance.packages.importer import import_model


def wait_for(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def kinds(services) -> list[str]:
    return [r.kind for r in services.audit.log.records()]


def test_inferences_and_admin_actions_land_in_a_verifiable_chain(tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager, registry_poll_s=0.1)
    import_model(services.registry, services.catalog, scale_model(tmp_path / "m.onnx", 2),
                 name="m", created_by="alice")
    server = serve(services)
    try:
        body = {"id": "req-1", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                                           "data": [1, 2]}]}
        assert httpx.post(f"{server.url}/v2/models/m/infer", json=body).status_code == 200
        r = httpx.post(f"{server.url}/v1/models/m/versions/1/promote",
                       json={"to": "shadow", "actor": "bob"})
        assert r.status_code == 200, r.text
        wait_for(lambda: "model.promote" in kinds(services) and any(
            k.startswith("inference") for k in kinds(services)))
        records = list(services.audit.log.records())
        added = next(r for r in records if r.kind == "model.add")
        assert added.actor == "alice"
        inference = next(r for r in records if r.kind.startswith("inference"))
        assert "req-1" in inference.body and "m" in inference.body
        assert verify(services.audit.log).ok
    finally:
        server.stop()


def test_auth_failures_are_audited(tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager,
                             auth={"mode": "on"})
    import_model(services.registry, services.catalog, scale_model(tmp_path / "m.onnx", 2),
                 name="m")
    server = serve(services)
    try:
        r = httpx.post(f"{server.url}/v2/models/m/infer",
                       headers={"Authorization": "Bearer not-a-token"}, json={})
        assert r.status_code == 401
        wait_for(lambda: "auth.failure" in kinds(services))
    finally:
        server.stop()


def test_tagged_test_and_synthetic_traffic_is_audited_with_its_class(tmp_path,
                                                                     ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager)
    import_model(services.registry, services.catalog, scale_model(tmp_path / "m.onnx", 2),
                 name="m")
    server = serve(services)
    try:
        for request_id, traffic in (("p", None), ("t", "test"), ("s", "synthetic")):
            body = {"id": request_id, "inputs": [{"name": "x", "datatype": "FP32",
                                                  "shape": [1, 2], "data": [1, 2]}]}
            headers = {"X-Appliance-Traffic": traffic} if traffic else {}
            r = httpx.post(f"{server.url}/v2/models/m/infer", json=body, headers=headers)
            assert r.status_code == 200, r.text
        assert services.audit is not None and services.audit.writer is not None
        assert services.audit.writer.flush()
        routed = {r.data()["request_id"]: r.data()["routing"]
                  for r in services.audit.log.records(kinds=["inference"])}
    finally:
        server.stop()
    assert "traffic" not in routed["p"]
    assert (routed["t"]["traffic"], routed["s"]["traffic"]) == ("test", "synthetic")
