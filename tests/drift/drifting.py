"""Drift fixtures: the breast-cancer data, a controllable clock, a demo server whose drift
monitor runs on that clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from helpers import make_services, serve
from sklearn.datasets import load_breast_cancer

from appliance.drift import DriftMonitor
from appliance.services import _signature_of, seed_demo_models


@dataclass
class Clock:
    """Seconds since the epoch, moved only by the test."""

    now: float = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def cancer() -> np.ndarray:
    """The 569 x 30 breast-cancer features, float64."""
    return np.asarray(load_breast_cancer().data, dtype=np.float64)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class DriftServer:
    url: str
    client: httpx.Client
    monitor: DriftMonitor
    clock: Clock


@pytest.fixture
def drift_server(tmp_path, ort_plugin_manager, clock) -> Iterator[DriftServer]:
    """The demo models on a real server; drift captures its reference from the first
    569 rows and evaluates windows of 100 rows or more when the test says so."""
    services = make_services(tmp_path / "var", ort_plugin_manager,
                             drift={"capture_rows": 569, "min_window": 100,
                                    "feedback_ttl_s": 600})
    seed_demo_models(services)
    monitor = DriftMonitor(services.settings.drift, services.settings.data_dir,
                           signature_of=_signature_of(services.repository), clock=clock)
    services.drift = services.dataplane.drift = monitor
    server = serve(services)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield DriftServer(server.url, client, monitor, clock)
    server.stop()


def infer(client: httpx.Client, rows: np.ndarray, request_id: str | None = None) -> dict:
    """One inference request on breast_cancer; the decoded answer."""
    body: dict = {"inputs": [{"name": "input", "datatype": "FP32",
                              "shape": [len(rows), 30],
                              "data": np.asarray(rows, dtype=np.float32).ravel().tolist()}]}
    if request_id is not None:
        body["id"] = request_id
    answer = client.post("/v2/models/breast_cancer/infer", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()
