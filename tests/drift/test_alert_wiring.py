"""Drift into the alerting engine and the health report (monitoring/alert_sources.py):
a window that drifts raises DriftCritical for its model and degrades /v1/health, while
readiness stays 200."""

from __future__ import annotations

import httpx
import numpy as np
from drifting import infer
from helpers import make_services, serve

from appliance.drift import DriftMonitor
from appliance.services import _signature_of, seed_demo_models


def test_a_drifted_window_raises_drift_critical_and_degrades_health(tmp_path,
                                                                    ort_plugin_manager,
                                                                    clock, cancer):
    services = make_services(tmp_path / "var", ort_plugin_manager,
                             drift={"capture_rows": 569, "min_window": 100})
    seed_demo_models(services)
    services.drift = services.dataplane.drift = DriftMonitor(
        services.settings.drift, services.settings.data_dir,
        signature_of=_signature_of(services.repository), clock=clock)
    server = serve(services)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for chunk in np.array_split(cancer, 3):
                infer(client, chunk)
            clock.advance(300)
            assert client.post("/v1/drift/breast_cancer/evaluate").status_code == 200
            assert services.alerts is not None
            services.alerts.tick()
            assert services.alerts.list_alerts(state="firing") == []
            shifted = cancer[np.random.default_rng(3).integers(0, len(cancer), 400)].copy()
            shifted[:, 0] *= 1.5
            infer(client, shifted)
            clock.advance(300)
            assert client.post("/v1/drift/breast_cancer/evaluate").status_code == 200
            services.alerts.tick()
            (alert,) = client.get("/v1/alerts", params={"state": "firing"}).json()
            assert (alert["name"], alert["labels"]["model"]) == ("DriftCritical",
                                                                 "breast_cancer")
            health = client.get("/v1/health").json()
            assert health["status"] == "degraded"
            assert any("breast_cancer: input drift (drift)" in r for r in health["reasons"])
            assert client.get("/v2/health/ready").status_code == 200
    finally:
        server.stop()
