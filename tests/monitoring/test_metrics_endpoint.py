"""GET /metrics against a real server with the demo models: Triton's names and counts,
failure reasons, histograms, traffic classes, Server-Timing, settings."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from helpers import make_services, serve
from scraping import scrape, value
from sklearn.datasets import load_breast_cancer

from appliance.services import seed_demo_models

X, _ = load_breast_cancer(return_X_y=True)
BC = {"model": "breast_cancer", "version": "1"}
TRITON = ("nv_inference_request_success", "nv_inference_request_failure",
          "nv_inference_count", "nv_inference_exec_count",
          "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
          "nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
          "nv_inference_compute_output_duration_us", "nv_inference_pending_request_count")


def bc_body(rows: int = 1) -> dict:
    data = X[:rows].astype(np.float32)
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(data.shape),
                        "data": data.ravel().tolist()}]}


def infer(url: str, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(url + "/v2/models/breast_cancer/infer", json=body, headers=headers)


def production(samples: dict) -> dict:
    """Every series of the production traffic: Triton's, and traffic="production"."""
    return {name: {k: v for k, v in series.items() if ("traffic", "test") not in k
                   and ("traffic", "synthetic") not in k}
            for name, series in samples.items()
            if name.startswith(("nv_inference", "appliance_request", "appliance_queue",
                                "appliance_compute"))
            and name != "nv_inference_exec_count"}


@pytest.fixture
def served_url(demo_url) -> str:
    return demo_url


def test_metrics_hold_triton_names_and_count_requests_and_rows(served_url):
    for rows in (1, 1, 3):
        assert infer(served_url, bc_body(rows)).status_code == 200
    samples = scrape(served_url)
    for name in TRITON:
        assert name in samples, name
    assert value(samples, "nv_inference_request_success", **BC) == 3
    assert value(samples, "nv_inference_count", **BC) == 5  # rows
    assert value(samples, "nv_inference_exec_count", **BC) == 3
    assert value(samples, "nv_inference_request_duration_us", **BC) > 0
    assert value(samples, "nv_inference_compute_infer_duration_us", **BC) > 0
    assert value(samples, "nv_inference_pending_request_count", **BC) == 0
    # every served model is visible, requested or not
    assert value(samples, "nv_inference_request_success", model="magika", version="1") == 0
    assert value(samples, "appliance_model_up", **BC) == 1
    assert value(samples, "appliance_models_loaded") >= 2
    assert value(samples, "appliance_model_load_seconds", **BC) > 0
    assert value(samples, "appliance_model_warmup_seconds", **BC) > 0


def test_failures_are_counted_by_triton_reason(served_url):
    bad = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    assert infer(served_url, bad).status_code == 400
    assert infer(served_url, bc_body(), **{"X-Request-Timeout-Ms": "-1"}).status_code == 400
    samples = scrape(served_url)
    assert value(samples, "nv_inference_request_failure", reason="OTHER", **BC) == 2
    for reason in ("REJECTED", "CANCELED", "BACKEND"):
        assert value(samples, "nv_inference_request_failure", reason=reason, **BC) == 0
    assert value(samples, "nv_inference_request_success", **BC) == 0


def test_histogram_buckets_sum_to_their_count(served_url):
    for _ in range(7):
        assert infer(served_url, bc_body()).status_code == 200
    samples = scrape(served_url)
    for name in ("appliance_request_duration_seconds", "appliance_queue_duration_seconds",
                 "appliance_compute_duration_seconds"):
        buckets = {dict(k)["le"]: v for k, v in samples[name + "_bucket"].items()
                   if ("traffic", "production") in k and ("model", "breast_cancer") in k}
        assert buckets["+Inf"] == value(samples, name + "_count", traffic="production",
                                        **BC) == 7
        ordered = sorted(buckets.items(), key=lambda kv: float(kv[0]))
        assert [v for _, v in ordered] == sorted(v for _, v in ordered)  # cumulative
    batch = {dict(k)["le"]: v for k, v in samples["appliance_batch_size_bucket"].items()
             if ("model", "breast_cancer") in k}
    assert batch["1.0"] == batch["+Inf"] == 7


def test_tagged_traffic_is_labelled_and_leaves_the_production_series_unchanged(served_url):
    for _ in range(3):
        assert infer(served_url, bc_body()).status_code == 200
    before = scrape(served_url)
    for traffic in ("test", "synthetic", "TEST"):
        assert infer(served_url, bc_body(), **{"X-Appliance-Traffic": traffic}
                     ).status_code == 200
    bad = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    assert infer(served_url, bad, **{"X-Appliance-Traffic": "test"}).status_code == 400
    after = scrape(served_url)
    assert production(after) == production(before)
    assert value(after, "appliance_request_duration_seconds_count", traffic="test", **BC) == 2
    assert value(after, "appliance_request_duration_seconds_count", traffic="synthetic",
                 **BC) == 1
    assert value(after, "appliance_request_failures_total", traffic="test", reason="OTHER",
                 **BC) == 1


def test_an_unknown_traffic_class_is_refused_with_400(served_url):
    r = infer(served_url, bc_body(), **{"X-Appliance-Traffic": "canary"})
    assert r.status_code == 400
    assert "X-Appliance-Traffic must be one of production, test, synthetic" in r.json()["error"]


def test_every_inference_response_carries_server_timing(served_url):
    r = infer(served_url, bc_body())
    parts = dict(p.strip().split(";dur=") for p in r.headers["server-timing"].split(","))
    assert set(parts) == {"queue", "compute"}
    assert float(parts["compute"]) > 0 and float(parts["queue"]) >= 0


def test_audit_writer_queue_and_drops_are_scraped(served_url):
    assert infer(served_url, bc_body()).status_code == 200
    samples = scrape(served_url)
    assert value(samples, "appliance_audit_dropped_total") == 0
    assert value(samples, "appliance_audit_queue_depth") >= 0
    assert "appliance_audit_written_total" in samples


def test_per_model_buckets_come_from_the_settings(tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager, metrics={
        "buckets_ms": [1, 10], "models": {"breast_cancer": {"buckets_ms": [0.5, 2, 8, 32]}}})
    seed_demo_models(services)
    server = serve(services)
    try:
        assert infer(server.url, bc_body()).status_code == 200
        samples = scrape(server.url)
        les = {dict(k)["le"] for k in samples["appliance_request_duration_seconds_bucket"]
               if ("model", "breast_cancer") in k}
        assert les == {"0.0005", "0.002", "0.008", "0.032", "+Inf"}
    finally:
        server.stop()


def test_metrics_off_removes_the_route_and_the_timing(tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager,
                             metrics={"enabled": False, "server_timing": False})
    seed_demo_models(services)
    server = serve(services)
    try:
        r = infer(server.url, bc_body())
        assert r.status_code == 200 and "server-timing" not in r.headers
        assert httpx.get(server.url + "/metrics").status_code == 404
        assert services.dataplane.monitor.versions == {}  # nothing recorded per request
    finally:
        server.stop()


def test_batched_and_pooled_models_report_queue_compute_and_executions(tmp_path,
                                                                       ort_plugin_manager):
    from concurrent.futures import ThreadPoolExecutor

    from helpers.models import scale_model

    from appliance.packages.importer import import_model

    services = make_services(tmp_path / "var", ort_plugin_manager, models={
        "batched": {"max_batch_size": 8, "max_queue_delay_us": 20000},
        "pooled": {"instances": 2}}, inline_threshold_us=0)
    for name in ("batched", "pooled"):
        import_model(services.registry, services.catalog,
                     scale_model(tmp_path / f"{name}.onnx", 2), name=name)
    server = serve(services)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 1]}]}
    try:
        for name in ("batched", "pooled"):
            with ThreadPoolExecutor(4) as pool:
                url = f"{server.url}/v2/models/{name}/infer"
                answers = list(pool.map(lambda u: httpx.post(u, json=body), [url] * 4))
            assert all(r.status_code == 200 for r in answers)
            assert all("compute;dur=" in r.headers["server-timing"] for r in answers)
        samples = scrape(server.url)
        for name in ("batched", "pooled"):
            labels = {"model": name, "version": "1"}
            assert value(samples, "nv_inference_request_success", **labels) == 4
            assert value(samples, "nv_inference_count", **labels) == 4
            execs = value(samples, "nv_inference_exec_count", **labels)
            assert 1 <= execs <= 4
            assert value(samples, "appliance_batch_size_count", **labels) == execs
            assert value(samples, "nv_inference_compute_infer_duration_us", **labels) > 0
        assert value(samples, "nv_inference_exec_count", model="pooled", version="1") == 4
    finally:
        server.stop()
