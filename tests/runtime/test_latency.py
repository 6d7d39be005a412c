"""Latency windows: every request of every model is measured, inline ones included."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from appliance.runtime.latency import LatencyWindow


def test_window_keeps_the_newest_samples_oldest_first():
    window = LatencyWindow(8)
    for i in range(13):
        window.record(float(i))
    assert window.count == 13 and len(window) == 8
    assert window.recent().tolist() == [5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
    assert window.total_s == sum(range(13))


def test_since_returns_only_what_arrived_after_a_count():
    window = LatencyWindow(4)
    for i in range(3):
        window.record(float(i))
    seen = window.count
    assert window.since(seen).size == 0
    window.record(9.0)
    assert window.since(seen).tolist() == [9.0]
    for i in range(10):
        window.record(float(i))
    assert window.since(seen).tolist() == [6.0, 7.0, 8.0, 9.0]  # capped at the window


def test_percentile_needs_enough_samples():
    window = LatencyWindow(64)
    for _ in range(19):
        window.record(0.001)
    assert window.percentile_ms(95) is None
    window.record(0.001)
    assert window.percentile_ms(95) == pytest.approx(1.0)


def test_window_size_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        LatencyWindow(1000)


def test_inline_models_are_measured_too(demo_services, client: httpx.Client):
    served = demo_services.repository.find("breast_cancer", None)
    assert served.execution.inline  # the demo model is cheap enough to run inline
    before = served.execution.latencies.count
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30],
                        "data": np.zeros(30).tolist()}]}
    for _ in range(25):
        assert client.post("/v2/models/breast_cancer/infer", json=body).status_code == 200
    assert served.execution.latencies.count == before + 25
    assert served.execution.p95_ms() is not None
    meta = client.get("/v2/models/breast_cancer").json()
    assert "p95_ms" in meta["parameters"]


def test_a_non_finite_request_timeout_is_a_400(client: httpx.Client):
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30],
                        "data": np.zeros(30).tolist()}]}
    for value in ("nan", "inf", "-1", "soon"):
        r = client.post("/v2/models/breast_cancer/infer", json=body,
                        headers={"X-Request-Timeout-Ms": value})
        assert r.status_code == 400 and "milliseconds" in r.json()["error"], value
