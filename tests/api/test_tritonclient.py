"""tritonclient[http] works unchanged against the appliance: JSON and binary tensors."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from helpers import ROOT
from sklearn.datasets import load_breast_cancer
from tritonclient.utils import InferenceServerException

from appliance.demo.magika_features import features, label

X, Y = load_breast_cancer(return_X_y=True)


@pytest.fixture
def triton_client(demo_url):
    client = triton.InferenceServerClient(demo_url.removeprefix("http://"))
    yield client
    client.close()


def test_tritonclient_reads_server_and_model_metadata(triton_client):
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert "binary_tensor_data" in triton_client.get_server_metadata()["extensions"]
    meta = triton_client.get_model_metadata("breast_cancer", "1")
    assert meta["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, 30]}
    magika = triton_client.get_model_metadata("magika")
    assert magika["outputs"][0]["name"] == "target_label"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infers_breast_cancer(triton_client, binary):
    rows = X[:32].astype(np.float32)
    inp = triton.InferInput("input", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows, binary_data=binary)
    outputs = [triton.InferRequestedOutput("label", binary_data=binary),
               triton.InferRequestedOutput("probabilities", binary_data=binary)]
    result = triton_client.infer("breast_cancer", [inp], outputs=outputs, request_id="r1")
    labels = result.as_numpy("label")
    assert labels.dtype == np.int64 and (labels == Y[:32]).mean() > 0.9
    probs = result.as_numpy("probabilities")
    assert probs.shape == (32, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert result.get_response()["id"] == "r1"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infers_magika_on_real_files(triton_client, binary):
    files = [Path(__file__), ROOT / "pyproject.toml"]
    batch = np.stack([features(f.read_bytes()) for f in files])
    inp = triton.InferInput("bytes", list(batch.shape), "INT32")
    inp.set_data_from_numpy(batch, binary_data=binary)
    result = triton_client.infer("magika", [inp], outputs=[
        triton.InferRequestedOutput("target_label", binary_data=binary)])
    scores = result.as_numpy("target_label")
    assert [label(row)[0] for row in scores] == ["python", "toml"]


def test_tritonclient_default_settings_use_binary_both_ways(triton_client):
    inp = triton.InferInput("input", [1, 30], "FP32")
    inp.set_data_from_numpy(X[:1].astype(np.float32))  # binary_data=True by default
    result = triton_client.infer("breast_cancer", [inp])
    assert result.as_numpy("label").shape == (1,)


def test_tritonclient_sees_clear_errors(triton_client):
    inp = triton.InferInput("input", [1, 29], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 29), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="shape"):
        triton_client.infer("breast_cancer", [inp])
    with pytest.raises(InferenceServerException, match="unknown model"):
        triton_client.get_model_metadata("ghost")


def test_raw_binary_request_is_the_single_input(demo_url):
    rows = X[:3].astype(np.float32)
    r = httpx.post(f"{demo_url}/v2/models/breast_cancer/infer", content=rows.tobytes(),
                   headers={"Inference-Header-Content-Length": "0",
                            "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["label"]["shape"] == [3]


@pytest.mark.parametrize(("body", "header", "fragment"), [
    (b'{"inputs":[{"name":"input","shape":[1,30],"datatype":"FP32",'
     b'"parameters":{"binary_data_size":120}}]}' + b"\0" * 100, None, "binary"),
    (b'{"inputs":[]}', "500", "Inference-Header-Content-Length"),
    (b"\0" * 7, "0", "whole number"),
], ids=["binary-shorter-than-declared", "header-beyond-body", "raw-binary-misaligned"])
def test_bad_binary_requests_are_400(demo_url, body, header, fragment):
    headers = {"Content-Type": "application/octet-stream"}
    if header is not None:
        headers["Inference-Header-Content-Length"] = header
    else:
        headers["Inference-Header-Content-Length"] = str(body.index(b"}]}") + 3)
    r = httpx.post(f"{demo_url}/v2/models/breast_cancer/infer", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert fragment.lower() in r.json()["error"].lower()
