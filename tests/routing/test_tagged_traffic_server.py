"""Tagged test traffic (``X-Appliance-Traffic: test``, or a site's own ``[routing]
test_header``) through a real server: it answers with ``X-Route: test`` and leaves every
production series of ``/metrics`` and every routing record (a canary's windows, an
experiment's assignments) exactly as they were."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from routed_box import onnx, routed_box

TEST = {"X-Appliance-Traffic": "test"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """``GET /metrics``: (sample name, sorted labels) → value."""
    r = httpx.get(url + "/metrics", timeout=30)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def production(samples: Samples) -> Samples:
    """Triton's series (production traffic only; ``nv_inference_exec_count`` counts
    executions of all traffic, docs/monitoring.md) and the appliance's own series
    labelled ``traffic="production"``."""
    return {key: v for key, v in samples.items()
            if (key[0].startswith("nv_inference_") and key[0] != "nv_inference_exec_count")
            or ("traffic", "production") in key[1]}


def count(samples: Samples, name: str, **labels: str) -> float:
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) == 1, (name, labels)
    return found[0]


def test_tagged_test_requests_leave_production_metrics_unchanged(tmp_path):
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production")]) as box:
        assert {a.status for a in box.send(20)} == {200}  # the production series exist
        before = scrape(box.url)
        tagged = box.send(30, headers=TEST)
        after = scrape(box.url)

    # the default route answers test traffic with production's version, labelled test
    assert {(a.status, a.version, a.route) for a in tagged} == {(200, "1", "test")}
    assert all(a.scaled_by(1) for a in tagged)
    assert production(after) == production(before)
    assert count(before, "nv_inference_request_success", version="1") == 20
    assert count(after, "appliance_request_duration_seconds_count", version="1",
                 traffic="test") == 30 + count(before, "appliance_request_duration_seconds_count",
                                               version="1", traffic="test")


def test_a_sites_own_marker_header_tags_test_traffic(tmp_path):
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production")],
                    routing={"test_header": "X-Traffic-Class"}) as box:
        before = scrape(box.url)
        tagged = box.send(10, headers={"X-Traffic-Class": "Test"})
        other = box.send(5, headers={"X-Traffic-Class": "batch"})  # not the test value
        after = scrape(box.url)

    assert {(a.status, a.route) for a in tagged} == {(200, "test")}
    assert {(a.status, a.route) for a in other} == {(200, "production")}
    assert count(after, "nv_inference_request_success", version="1") == 5 + count(
        before, "nv_inference_request_success", version="1")


def test_tagged_test_requests_reach_the_candidate_but_not_the_canary_analysis(tmp_path):
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                               (onnx(tmp_path, 1), "canary")]) as box:
        r = box.put_route({"policy": "canary", "candidate": "2"})
        assert r.status_code == 200, r.text
        box.send(40)
        runtime = box.services.repository.router.runtimes["m"]
        windows = {v: runtime.window(v).snapshot()["requests"] for v in ("1", "2")}
        before = scrape(box.url)

        tagged = box.send(25, headers=TEST)

        assert {(a.status, a.version, a.route) for a in tagged} == {(200, "2", "test")}
        assert {v: runtime.window(v).snapshot()["requests"] for v in ("1", "2")} == windows
        assert sum(windows.values()) == 40
        assert production(scrape(box.url)) == production(before)


def test_tagged_test_requests_are_not_experiment_assignments(tmp_path):
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                               (onnx(tmp_path, 2), "canary")]) as box:
        r = box.put_route({"policy": "weighted", "weights": {"1": 50, "2": 50}})
        assert r.status_code == 200, r.text
        box.send(10)
        tagged = box.send(10, headers=TEST)
        box.tick()
        report = box.http.get("/v1/experiments/m").json()

    assert {a.route for a in tagged} == {"test"}
    assert sum(arm["assignments"] for arm in report["arms"].values()) == 10
