"""Traces of inference requests, end to end: a real server on 127.0.0.1 exports to a
real OTLP/HTTP receiver (tests/tracing/otlp_receiver.py). Spans are read after the
server stops: its shutdown flushes the exporter, so nothing here waits on a clock."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from helpers import make_services, serve
from helpers.models import scale_model
from otlp_receiver import OtlpReceiver
from sklearn.datasets import load_breast_cancer

from appliance.packages.importer import import_model
from appliance.services import seed_demo_models

X, _ = load_breast_cancer(return_X_y=True)
ROOT = "POST /v2/models/{name}/infer"
SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SPAN_KIND_SERVER
STATUS_ERROR = 2
INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_SPAN = "00f067aa0ba902b7"


def bc_body(rows: int = 1) -> dict:
    data = X[:rows].astype(np.float32)
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(data.shape),
                        "data": data.ravel().tolist()}]}


def trace_of(response: httpx.Response) -> tuple[str, str, str]:
    """(trace id, span id, flags) of a response's ``traceparent``."""
    version, trace_id, span_id, flags = response.headers["traceparent"].split("-")
    assert version == "00"
    return trace_id, span_id, flags


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def demo_server(tmp_path, pm, **tracing):
    services = make_services(tmp_path / "var", pm, tracing=tracing)
    seed_demo_models(services)
    return serve(services)


def test_a_sampled_request_reaches_the_collector_with_its_phase_spans_and_attributes(
        tmp_path, ort_plugin_manager, receiver):
    server = demo_server(tmp_path, ort_plugin_manager, endpoint=receiver.endpoint,
                         sample_ratio=1.0, service_name="edge-box-7")
    url = server.url + "/v2/models/breast_cancer/infer"
    try:
        ok = httpx.post(url, json=bc_body(2))
        tagged = httpx.post(url, json=bc_body(), headers={"X-Appliance-Traffic": "test"})
        bad = httpx.post(url, json={"inputs": [{"name": "input", "datatype": "FP32",
                                                 "shape": [1, 2], "data": [1, 2]}]})
    finally:
        server.stop()
    assert (ok.status_code, tagged.status_code, bad.status_code) == (200, 200, 400)
    assert receiver.paths[0] == ("/v1/traces", "application/x-protobuf")

    trace_id, span_id, flags = trace_of(ok)
    assert int(flags, 16) & 1  # sampled (0x02 may say the trace id is random: level 2)
    spans = receiver.trace(trace_id)
    assert {ROOT, "auth", "route", "decode", "compute", "encode"} <= set(spans)
    root = spans[ROOT]
    assert root.span_id == span_id and root.parent_span_id == "" and root.kind == SERVER_KIND
    assert root.attributes == {
        "http.request.method": "POST", "http.route": "/v2/models/{name}/infer",
        "http.response.status_code": 200, "appliance.model": "breast_cancer",
        "appliance.version": "1", "appliance.stage": root.attributes["appliance.stage"],
        "appliance.traffic": "production"}
    assert root.attributes["appliance.stage"]
    assert root.resource["service.name"] == "edge-box-7"
    for name in ("auth", "route", "decode", "compute", "encode"):
        child = spans[name]
        assert child.parent_span_id == root.span_id
        assert root.start_ns <= child.start_ns <= child.end_ns <= root.end_ns, name
    for name in ("route", "compute", "encode"):
        assert spans[name].attributes["appliance.model"] == "breast_cancer"
    # the phases follow one another
    order = [spans[n] for n in ("auth", "route", "decode", "compute", "encode")]
    assert all(a.end_ns <= b.start_ns for a, b in zip(order, order[1:]))

    assert receiver.trace(trace_of(tagged)[0])[ROOT].attributes["appliance.traffic"] == "test"
    failed = receiver.trace(trace_of(bad)[0])
    assert failed[ROOT].attributes["http.response.status_code"] == 400
    assert failed[ROOT].status_code != STATUS_ERROR  # a client's error is not the server's
    assert "compute" not in failed


def test_batched_and_pooled_requests_have_queue_batch_and_compute_spans(
        tmp_path, ort_plugin_manager, receiver):
    services = make_services(tmp_path / "var", ort_plugin_manager, models={
        "batched": {"max_batch_size": 8, "max_queue_delay_us": 100},
        "pooled": {"instances": 2}}, inline_threshold_us=0,
        tracing={"endpoint": receiver.endpoint, "sample_ratio": 1.0})
    for name in ("batched", "pooled"):
        import_model(services.registry, services.catalog,
                     scale_model(tmp_path / f"{name}.onnx", 2), name=name)
    server = serve(services)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 2], "data": [1] * 6}]}
    try:
        batched = httpx.post(f"{server.url}/v2/models/batched/infer", json=body)
        pooled = httpx.post(f"{server.url}/v2/models/pooled/versions/1/infer", json=body)
    finally:
        server.stop()
    assert batched.status_code == pooled.status_code == 200

    spans = receiver.trace(trace_of(batched)[0])
    batch = spans["batch"]
    assert batch.parent_span_id == spans[ROOT].span_id
    assert batch.attributes["appliance.batch_size"] == 3
    assert batch.attributes["appliance.model"] == "batched"
    for name in ("queue", "compute"):
        assert spans[name].parent_span_id == batch.span_id
        assert batch.start_ns <= spans[name].start_ns <= spans[name].end_ns <= batch.end_ns
    assert spans["queue"].end_ns <= spans["compute"].start_ns

    spans = receiver.trace(trace_of(pooled)[0])
    root = spans["POST /v2/models/{name}/versions/{version}/infer"]
    assert "batch" not in spans
    assert spans["queue"].parent_span_id == spans["compute"].parent_span_id == root.span_id
    assert spans["queue"].attributes["appliance.model"] == "pooled"


def test_an_incoming_sampled_traceparent_is_traced_at_ratio_zero_and_keeps_its_trace_id(
        tmp_path, ort_plugin_manager, receiver):
    server = demo_server(tmp_path, ort_plugin_manager, endpoint=receiver.endpoint,
                         sample_ratio=0.0)
    url = server.url + "/v2/models/breast_cancer/infer"
    try:
        traced = httpx.post(url, json=bc_body(), headers={
            "traceparent": f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-01",
            "tracestate": "vendor=opaque"})
        plain = [httpx.post(url, json=bc_body()) for _ in range(20)]
    finally:
        server.stop()
    assert traced.status_code == 200 and all(r.status_code == 200 for r in plain)
    trace_id, span_id, flags = trace_of(traced)
    assert trace_id == INCOMING_TRACE and flags == "01" and span_id != INCOMING_SPAN
    assert not any("traceparent" in r.headers for r in plain)  # ratio 0: none sampled
    root = receiver.trace(INCOMING_TRACE)[ROOT]
    assert root.span_id == span_id and root.parent_span_id == INCOMING_SPAN
    assert {s.trace_id for s in receiver.spans} == {INCOMING_TRACE}


def test_an_incoming_unsampled_traceparent_is_not_exported_even_at_ratio_one(
        tmp_path, ort_plugin_manager, receiver):
    server = demo_server(tmp_path, ort_plugin_manager, endpoint=receiver.endpoint,
                         sample_ratio=1.0)
    url = server.url + "/v2/models/breast_cancer/infer"
    try:
        unsampled = httpx.post(url, json=bc_body(), headers={
            "traceparent": f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-00"})
        malformed = httpx.post(url, json=bc_body(), headers={"traceparent": "00-zz-01"})
    finally:
        server.stop()
    assert unsampled.status_code == malformed.status_code == 200
    assert "traceparent" not in unsampled.headers
    # a malformed traceparent is ignored: the request starts a trace of its own
    new_trace = trace_of(malformed)[0]
    assert new_trace != INCOMING_TRACE
    assert {s.trace_id for s in receiver.spans} == {new_trace}


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("collector", ["refused", "silent"])
def test_an_unreachable_collector_never_blocks_inference(tmp_path, ort_plugin_manager,
                                                         collector):
    silent = socket.socket()  # listens, never accepts: an export waits for its timeout
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    port = _refused_port() if collector == "refused" else silent.getsockname()[1]
    server = demo_server(tmp_path, ort_plugin_manager,
                         endpoint=f"http://127.0.0.1:{port}/v1/traces", sample_ratio=1.0,
                         max_queue_size=16, max_export_batch_size=4, export_timeout_s=1.0)
    try:
        with httpx.Client(base_url=server.url) as client:
            answers = [client.post("/v2/models/breast_cancer/infer", json=bc_body())
                       for _ in range(300)]
    finally:
        server.stop()  # returns: the flush at shutdown gives up after export_timeout_s
        silent.close()
    assert all(r.status_code == 200 and "traceparent" in r.headers for r in answers)
