"""Synthetic probes against a real server: golden examples replayed through the data
plane as synthetic traffic, answers checked, results on /metrics, /v1/probes, in the
health report and as ProbeFailed alerts. The schedule runs on a clock the test moves."""

from __future__ import annotations

import httpx
import wrong_backend
from helpers import make_services, serve
from probe_packages import DOUBLES, package
from scraped import scrape, value

from appliance.packages import push_package

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [3, 4]}]}
W = {"model": "w", "version": "1"}
HEALTHY = {"model": "healthy", "version": "1"}


def infer(url: str, model: str) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/{model}/infer", json=BODY)


def synthetic_successes(samples: dict, model: str) -> float:
    return value(samples, "appliance_request_duration_seconds_count", model=model,
                 traffic="synthetic")


def probes_of(url: str) -> dict[str, dict]:
    answer = httpx.get(url + "/v1/probes")
    assert answer.status_code == 200, answer.text
    assert answer.json()["enabled"] is True
    return {p["model"]: p for p in answer.json()["probes"]}


def probe_alerts(url: str) -> list[dict]:
    answer = httpx.get(url + "/v1/alerts", params={"name": "ProbeFailed"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_healthy_model_probes_ok_and_its_probes_stay_out_of_the_production_series(probed):
    assert infer(probed.url, "healthy").status_code == 200
    results = {r.model: r for r in probed.runner.tick()}
    assert results["healthy"].ok and results["healthy"].examples == 1
    assert results["healthy"].detail == "1 golden example(s) matched"
    samples = scrape(probed.url)
    assert value(samples, "probe_success", **HEALTHY) == 1
    assert value(samples, "probe_duration_seconds", **HEALTHY) > 0
    # the one real request is the whole of the production series; the probe is synthetic
    assert value(samples, "nv_inference_request_success", **HEALTHY) == 1
    assert value(samples, "nv_inference_count", **HEALTHY) == 1
    assert synthetic_successes(samples, "healthy") == 1
    entry = probes_of(probed.url)["healthy"]
    assert entry["probed"] and entry["ok"] and entry["examples"] == 1
    assert entry["at"] == probed.clock.now and entry["duration_s"] > 0
    assert entry["next_at"] == probed.clock.now + 15  # no production request since
    assert infer(probed.url, "healthy").status_code == 200
    assert probes_of(probed.url)["healthy"]["next_at"] == probed.clock.now + 60
    probed.services.alerts.tick()
    assert probe_alerts(probed.url) == []


def test_a_model_without_golden_examples_is_not_probed_and_its_status_says_why(probed):
    assert "plain" not in {r.model for r in probed.runner.tick()}
    entry = probes_of(probed.url)["plain"]
    assert not entry["probed"] and entry["ok"] is None and entry["examples"] == 0
    assert "declares no golden examples" in entry["detail"]
    samples = scrape(probed.url)
    for name in ("probe_success", "appliance_request_duration_seconds_count"):
        assert not [k for k in samples[name] if ("model", "plain") in k]  # no request at all


def test_a_probe_catches_a_model_that_silently_answers_wrong_within_two_intervals(probed):
    url, runner, clock = probed.url, probed.runner, probed.clock
    assert [r.ok for r in runner.tick() if r.model == "w"] == [True]
    assert infer(url, "w").json()["outputs"][0]["data"] == [6, 8]
    before = scrape(url)
    wrong_backend.WRONG.set()  # from now on: 200 with zeros, nothing logged
    wrong = infer(url, "w")
    assert wrong.status_code == 200 and wrong.json()["outputs"][0]["data"] == [0, 0]
    ticks = []
    for _ in range(2):
        clock.advance(60)
        ticks += [r for r in runner.tick() if r.model == "w"]
    assert ticks and not ticks[-1].ok
    assert ticks[-1].detail.startswith("golden[0]: output `y`: 2 of 2 values differ")
    assert "expected 4.0, got 0.0" in ticks[-1].detail
    samples = scrape(url)
    assert value(samples, "probe_success", **W) == 0
    assert value(samples, "probe_success", **HEALTHY) == 1
    # production counts moved by the one wrong production request only
    assert (value(samples, "nv_inference_request_success", **W)
            == value(before, "nv_inference_request_success", **W) + 1 == 2)
    assert synthetic_successes(samples, "w") == 1 + len(ticks)
    probed.services.alerts.tick()
    (alert,) = probe_alerts(url)
    assert alert["labels"]["model"] == "w" and alert["state"] == "firing"
    assert "golden[0]: output `y`" in alert["annotations"]["detail"]
    health = httpx.get(url + "/v1/health").json()
    assert health["status"] == "degraded"
    assert any("w" in r and "failed its probe" in r for r in health["reasons"])
    assert httpx.get(url + "/v2/health/ready").status_code == 200  # degraded, not unready
    # the model is fixed: the next probe passes and the alert resolves
    wrong_backend.WRONG.clear()
    clock.advance(60)
    assert [r.ok for r in runner.tick() if r.model == "w"] == [True]
    probed.services.alerts.tick()
    assert probe_alerts(url)[0]["state"] == "resolved"


def test_an_idle_version_is_probed_every_idle_interval_and_a_busy_one_less_often(probed):
    runner, clock = probed.runner, probed.clock

    def probed_now() -> bool:
        return "w" in {r.model for r in runner.tick()}

    assert probed_now()  # first seen: at once
    clock.advance(14)
    assert not probed_now()
    clock.advance(1)
    assert probed_now()  # no production request since: idle_interval_s = 15
    assert infer(probed.url, "w").status_code == 200
    clock.advance(15)
    assert not probed_now()  # production traffic since: probe_interval_s = 60
    clock.advance(45)
    assert probed_now()
    clock.advance(15)
    assert probed_now()  # idle again


def test_with_probes_off_nothing_is_probed_and_the_status_says_so(tmp_path, probe_pm):
    services = make_services(tmp_path / "var", probe_pm, probes={"enabled": False})
    push_package(services.registry, services.catalog,
                 package(tmp_path / "w", name="w", golden=[DOUBLES]), actor="t")
    assert services.probes is None
    server = serve(services)
    try:
        answer = httpx.get(server.url + "/v1/probes").json()
        assert answer["enabled"] is False
        assert [(p["model"], p["probed"], p["detail"]) for p in answer["probes"]] == [
            ("w", False, "not probed: [probes] enabled = false")]
        assert "probe_success" not in scrape(server.url)
    finally:
        server.stop()
