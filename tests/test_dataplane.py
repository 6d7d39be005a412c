"""Direct tests of the data plane (no HTTP): decode, check, execute and encode in-process."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from appliance.errors import BadRequest, NotFound, SignatureMismatch, UnsupportedMediaType
from appliance.services import load_models

ROW = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30],
                   "data": [0.0] * 30}]}


@pytest.fixture
def plane(demo_services):
    load_models(demo_services, watch=False)
    yield demo_services.dataplane
    demo_services.close()


def infer(plane, body: object, **kwargs):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return asyncio.run(plane.infer("breast_cancer", None, raw, **kwargs))


def test_a_row_is_answered_with_every_output(plane):
    body, headers = infer(plane, ROW, content_type="application/json")
    answer = msgspec.json.decode(body)
    assert headers["Content-Type"] == "application/json"
    assert [o["name"] for o in answer["outputs"]] == ["label", "probabilities"]
    assert answer["model_name"] == "breast_cancer" and answer["model_version"]


def test_requested_outputs_come_binary_when_asked(plane):
    request = {**ROW, "outputs": [{"name": "probabilities",
                                   "parameters": {"binary_data": True}}]}
    body, headers = infer(plane, request)
    length = int(headers["Inference-Header-Content-Length"])
    header = msgspec.json.decode(body[:length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 8 == len(body) - length


@pytest.mark.parametrize(("body", "kwargs", "error"), [
    (ROW, {"content_type": "text/plain"}, UnsupportedMediaType),
    ({"inputs": [{**ROW["inputs"][0], "shape": [1, 29]}]}, {}, SignatureMismatch),
    (b"{", {}, BadRequest),
    (ROW, {"header_length": "x"}, BadRequest),
])
def test_bad_requests_raise_the_error_that_maps_to_their_status(plane, body, kwargs, error):
    with pytest.raises(error):
        infer(plane, body, **kwargs)


def test_an_unknown_model_is_not_found(plane):
    with pytest.raises(NotFound, match="unknown model 'nope'"):
        asyncio.run(plane.infer("nope", None, json.dumps(ROW).encode()))
