"""The Open Inference Protocol v2 REST API against a real server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from appliance.demo.magika_features import features, label

X, Y = load_breast_cancer(return_X_y=True)


def bc_body(rows: np.ndarray, **extra) -> dict:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape),
                        "data": rows.ravel().tolist()}], **extra}


def test_server_metadata_names_the_binary_extension(client):
    body = client.get("/v2").json()
    assert body["name"] == "appliance"
    assert "binary_tensor_data" in body["extensions"]


def test_health_live_and_ready_answer_200(client):
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_model_metadata_lists_signature_and_serving_backend(client):
    meta = client.get("/v2/models/breast_cancer").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}]
    assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}
    assert meta["versions"] == ["1"]
    assert meta["parameters"]["backend"] == "onnxruntime"
    same = client.get("/v2/models/breast_cancer/versions/1").json()
    assert same["inputs"] == meta["inputs"]


def test_model_ready_is_200_for_a_loaded_version(client):
    assert client.get("/v2/models/breast_cancer/ready").status_code == 200
    assert client.get("/v2/models/magika/versions/1/ready").json()["ready"] is True


def test_breast_cancer_predictions_match_the_training_labels(client):
    rows = X[:64].astype(np.float32)
    r = client.post("/v2/models/breast_cancer/infer", json=bc_body(rows, id="req-7"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "req-7"
    assert body["model_name"] == "breast_cancer" and body["model_version"] == "1"
    out = {o["name"]: o for o in body["outputs"]}
    labels = np.array(out["label"]["data"])
    assert out["label"]["datatype"] == "INT64" and out["label"]["shape"] == [64]
    assert (labels == Y[:64]).mean() > 0.9
    assert out["probabilities"]["shape"] == [64, 2]


def test_nested_data_is_accepted(client):
    rows = X[:2].astype(np.float32)
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 30],
                        "data": rows.tolist()}]}
    assert client.post("/v2/models/breast_cancer/infer", json=body).status_code == 200


def test_requested_outputs_subset_and_parameters_pass_through(client):
    body = bc_body(X[:1].astype(np.float32), outputs=[{"name": "label"}],
                   parameters={"trace": "abc"})
    out = client.post("/v2/models/breast_cancer/versions/1/infer", json=body).json()
    assert [o["name"] for o in out["outputs"]] == ["label"]
    assert out["parameters"]["trace"] == "abc"


def test_magika_names_the_type_of_a_python_file(client):
    row = features(Path(__file__).read_bytes())
    body = {"inputs": [{"name": "bytes", "datatype": "INT32", "shape": [1, 2048],
                        "data": row.tolist()}]}
    out = client.post("/v2/models/magika/infer", json=body).json()["outputs"][0]
    assert out["shape"] == [1, 214]
    name, score = label(np.array(out["data"], dtype=np.float32))
    assert name == "python" and score > 0.9


def test_openapi_schema_is_served(client):
    schema = client.get("/schema/openapi.json").json()
    assert "/v2/models/{name}/infer" in schema["paths"]


# -- bad input: each answers clearly and the server keeps serving ----------------------

def _still_serving(client):
    r = client.post("/v2/models/breast_cancer/infer", json=bc_body(X[:1].astype(np.float32)))
    assert r.status_code == 200


@pytest.mark.parametrize(("request_kwargs", "status", "fragment"), [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "JSON"),
    ({"content": b"a=1", "headers": {"content-type": "text/plain"}}, 415, "content type"),
    ({"json": {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 30],
                           "data": [0.0] * 30}]}}, 400, "datatype FP32"),
    ({"json": {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 29],
                           "data": [0.0] * 29}]}}, 400, "shape"),
    ({"json": {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30],
                           "data": [0.0] * 31}]}}, 400, "input"),
    ({"json": {"inputs": [{"name": "wrong", "datatype": "FP32", "shape": [1, 30],
                           "data": [0.0] * 30}]}}, 400, "no input named 'wrong'"),
    ({"json": {"inputs": []}}, 400, "missing"),
    ({"json": {"nothing": 1}}, 400, "inputs"),
    ({"json": {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30],
                           "data": [0.0] * 30}], "outputs": [{"name": "nope"}]}}, 400, "nope"),
], ids=["malformed-json", "wrong-content-type", "wrong-datatype", "wrong-shape",
        "data-length-mismatch", "unknown-input", "missing-input", "no-inputs-field",
        "unknown-output"])
def test_bad_requests_get_a_clear_error_and_the_server_keeps_serving(
        client, request_kwargs, status, fragment):
    r = client.post("/v2/models/breast_cancer/infer", **request_kwargs)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    _still_serving(client)


def test_unknown_model_and_version_are_404(client):
    r = client.post("/v2/models/nope/infer", json=bc_body(X[:1]))
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = client.get("/v2/models/breast_cancer/versions/9")
    assert r.status_code == 404 and "no version '9'" in r.json()["error"]
    assert client.get("/v2/models/nope/ready").status_code == 404
    _still_serving(client)


def test_body_over_the_size_limit_is_413(tmp_path, ort_plugin_manager):
    from helpers import make_services, serve

    from appliance.services import seed_demo_models

    services = make_services(tmp_path / "var", ort_plugin_manager, max_body_bytes=4096)
    seed_demo_models(services)
    server = serve(services)
    try:
        import httpx
        with httpx.Client(base_url=server.url) as c:
            big = bc_body(np.zeros((64, 30), dtype=np.float32))
            r = c.post("/v2/models/breast_cancer/infer", json=big)
            assert r.status_code == 413
            assert "too large" in r.json()["error"]
            _still_serving(c)
    finally:
        server.stop()


def test_get_on_infer_is_405_naming_post(client):
    r = client.get("/v2/models/breast_cancer/infer")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert "POST" in r.json()["error"]


def test_model_readiness_says_retry_after_while_loading(demo_services, client):
    served = demo_services.repository.find("breast_cancer", None)
    served.state = "loading"
    try:
        for path in ("/v2/models/breast_cancer/ready", "/v2/models/breast_cancer/versions/"
                     f"{served.record.version}/ready"):
            r = client.get(path)
            assert r.status_code == 503 and r.headers["retry-after"] == "5", path
            assert "is loading" in r.json()["error"]
        r = client.post("/v2/models/breast_cancer/versions/"
                        f"{served.record.version}/infer", json=bc_body(X[:1]))
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
    finally:
        served.state = "ready"
    assert client.get("/v2/models/breast_cancer/ready").status_code == 200


def test_a_fault_answers_the_same_from_the_inference_front_and_litestar(
        demo_services, client, caplog):
    served = demo_services.repository.find("breast_cancer", None)
    original = served.execution.run

    async def broken(*args, **kwargs):
        raise KeyError("boom")

    served.execution.run = broken
    try:
        r = client.post("/v2/models/breast_cancer/infer", json=bc_body(X[:1]))
    finally:
        served.execution.run = original
    assert r.status_code == 500
    assert r.json() == {"error": "internal server error (KeyError); the server log has the "
                                 "details"}
    assert any("unhandled error on POST /v2/models/breast_cancer/infer" in rec.getMessage()
               and rec.exc_info for rec in caplog.records)


def test_inference_front_takes_its_rule_from_the_access_table():
    from appliance.api import auth, infer_route

    table = {(m, p): r for m, p, r in auth.ROUTE_SCOPES}
    assert infer_route._REQUIRES[False] == table[("POST", "/v2/models/{name}/infer")]
    assert infer_route._REQUIRES[True] == table[
        ("POST", "/v2/models/{name}/versions/{version}/infer")]
