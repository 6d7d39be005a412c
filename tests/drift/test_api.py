"""Drift, feedback and KPIs through the real server on 127.0.0.1, with the demo
breast_cancer model (real ONNX Runtime) and the monitor on a controllable clock."""

from __future__ import annotations

import numpy as np
from drifting import infer


def _capture_reference(server, cancer):
    for chunk in np.array_split(cancer, 3):
        infer(server.client, chunk)
    server.clock.advance(300)
    answer = server.client.post("/v1/drift/breast_cancer/evaluate")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_shifted_inputs_show_drift_at_v1_drift(drift_server, cancer):
    status = _capture_reference(drift_server, cancer)
    assert status["reference"]["rows"] == 569 and status["reference"]["source"] == "capture"
    rng = np.random.default_rng(11)
    shifted = cancer[rng.integers(0, len(cancer), 600)].copy()
    shifted[:, 0] *= 1.5  # mean radius half as large again
    for chunk in np.array_split(shifted, 4):
        infer(drift_server.client, chunk)
    drift_server.clock.advance(300)
    assert drift_server.client.post("/v1/drift/breast_cancer/evaluate").status_code == 200
    answer = drift_server.client.get("/v1/drift/breast_cancer")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "drift" and body["drift"] is True
    latest = body["latest"]
    assert "input[0]" in latest["drifted"]
    assert latest["features"]["input[0]"]["severity"] == "critical"
    assert latest["window"]["seen"] == 600
    assert 0.5 < latest["accuracy"]["estimated"] <= 1.0
    history = drift_server.client.get("/v1/drift/breast_cancer/history").json()
    assert [h["status"] for h in history] == ["drift"]


def test_an_unknown_request_id_gets_404(drift_server):
    answer = drift_server.client.post("/v1/feedback", json={"request_id": "nope", "label": 1})
    assert answer.status_code == 404
    assert "request id 'nope' is unknown" in answer.json()["error"]


def test_an_expired_request_id_gets_404(drift_server, cancer):
    infer(drift_server.client, cancer[:1], request_id="r-old")
    drift_server.clock.advance(601)
    answer = drift_server.client.post("/v1/feedback", json={"request_id": "r-old",
                                                            "label": 0})
    assert answer.status_code == 404
    assert "has expired" in answer.json()["error"]


def test_labels_for_known_ids_are_stored_and_realised_accuracy_appears(drift_server,
                                                                        cancer):
    from sklearn.datasets import load_breast_cancer

    labels = load_breast_cancer().target
    _capture_reference(drift_server, cancer)
    for i in range(120):
        answer = infer(drift_server.client, cancer[i:i + 1], request_id=f"r{i}")
        assert answer["id"] == f"r{i}"
    for i in range(120):
        reply = drift_server.client.post("/v1/feedback", json={
            "request_id": f"r{i}", "label": int(labels[i]), "reward": 1.0})
        assert reply.status_code == 200, reply.text
    drift_server.clock.advance(300)
    latest = drift_server.client.post("/v1/drift/breast_cancer/evaluate").json()["latest"]
    accuracy = latest["accuracy"]
    assert accuracy["labelled_rows"] == 120
    assert 0.8 < accuracy["realised"] <= 1.0 and accuracy["estimated"] is not None
    stored = drift_server.client.get("/v1/feedback", params={"request_id": "r5"}).json()
    assert stored[0]["reward"] == 1.0 and stored[0]["label"] == int(labels[5])


def test_kpi_points_with_bad_times_or_values_get_400_naming_the_point(drift_server):
    good = {"name": "revenue", "time": "2025-06-01T00:00:00Z", "value": 3.5}
    cases = [
        ({"time": "2025-06-01T00:00:00"}, "point 1: time", "no timezone"),
        ({"time": "yesterday"}, "point 1: time", "not an ISO 8601 time"),
        ({"value": "lots"}, "point 1: value", "must be a number"),
        ({"value": 1e999}, "point 1: value", "finite"),
    ]
    for change, where, why in cases:
        answer = drift_server.client.post(
            "/v1/kpis", content=_json([good, {**good, **change}]),
            headers={"content-type": "application/json"})
        assert answer.status_code == 400, (change, answer.text)
        assert where in answer.json()["error"] and why in answer.json()["error"]
    assert drift_server.client.post("/v1/kpis", json=[good]).json() == {"stored": 1}


def _json(value) -> str:
    import json

    return json.dumps(value).replace("Infinity", "1e999")


def test_a_drift_config_naming_an_unknown_feature_gets_400(drift_server):
    answer = drift_server.client.put("/v1/drift/breast_cancer/config", json={
        "features": {"input[30]": {"psi_warning": 0.2}, "input[3]": {"ignore": True}}})
    assert answer.status_code == 400
    assert "unknown feature(s) 'input[30]'" in answer.json()["error"]
    ok = drift_server.client.put("/v1/drift/breast_cancer/config", json={
        "correction": "bonferroni", "features": {"input[3]": {"psi_critical": 0.5}}})
    assert ok.status_code == 200, ok.text
    status = drift_server.client.get("/v1/drift/breast_cancer").json()
    assert status["config"]["correction"] == "bonferroni"


def test_an_uploaded_reference_of_the_wrong_width_gets_400(drift_server, cancer):
    answer = drift_server.client.put("/v1/drift/breast_cancer/reference",
                                     json={"rows": cancer[:20, :29].tolist()})
    assert answer.status_code == 400 and "needs 30 values" in answer.json()["error"]
    ok = drift_server.client.put("/v1/drift/breast_cancer/reference",
                                 json={"rows": cancer.tolist()})
    assert ok.status_code == 200 and ok.json()["reference"]["source"] == "upload"


def test_drift_of_an_unknown_model_gets_404(drift_server):
    assert drift_server.client.get("/v1/drift/nope").status_code == 404
