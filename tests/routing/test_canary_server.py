"""Canary routes end to end, through a real server: a broken candidate is rolled back by
the routing thread within two analysis intervals without failing a client request it did
not answer itself, a healthy canary with too little traffic holds, and one with enough
steps up and is promoted."""

from __future__ import annotations

from typing import Any

from routed_box import Answer, Box, Traffic, onnx, routed, routed_box

INTERVAL_S = 60.0


def run_until_rolled_back(box: Box, per_interval: int, intervals: int = 2
                          ) -> tuple[int, list[Answer], list[Answer]]:
    """Send ``per_interval`` requests, then let an analysis interval pass, until the
    candidate (version 2) is a shadow or ``intervals`` have passed, while another client
    keeps sending. How many intervals it took, the answers before the rollback, and the
    other client's answers (during and after it)."""
    box.tick()  # the canary starts: its windows and first step
    traffic = Traffic(box.url)
    traffic.start()
    before: list[Answer] = []
    taken = 0
    try:
        while taken < intervals and box.stage("2") != "shadow":
            before += box.send(per_interval)
            box.tick(INTERVAL_S)  # analysis, with the other client still sending
            taken += 1
        # the other client keeps going for a while on the new route
        box.send(50)
    finally:
        during = traffic.finish()
    return taken, before, during


def assert_rolled_back_to_shadow(box: Box, failing_check: str) -> dict[str, Any]:
    """The candidate is a shadow, the route a shadow route, new requests go to
    production, and the rollback's evidence is a ``route.state`` event; the evidence."""
    assert box.stage("2") == "shadow"
    route = box.route()
    assert route["updated_by"] == "routing"
    assert (route["route"]["policy"], route["route"]["shadows"], route["route"]["baseline"]
            ) == ("shadow", ["2"], "1")
    after = box.send(200)
    assert {(a.status, a.version, a.route) for a in after} == {(200, "1", "production")}
    assert all(a.scaled_by(1) for a in after)

    [event] = [e for e in box.events("route.state") if e["detail"]["action"] == "rollback"]
    assert event["actor"] == "routing" and event["detail"]["version"] == "2"
    evidence = event["detail"]["evidence"]
    assert evidence["verdict"] == "fail"
    assert event["detail"]["reason"].startswith(f"canary failed: {failing_check}:")
    checks = {c["name"]: c for c in evidence["checks"]}
    assert set(checks) == {"error_rate", "latency_p95", "score_psi"}
    for check in checks.values():  # every check carries value, threshold, n and test
        assert {"value", "threshold", "n", "test", "verdict"} <= set(check)
        assert check["test"] and check["threshold"] is not None
    failed = checks[failing_check]
    assert failed["verdict"] == "fail" and failed["n"] > 0
    assert failed["value"] is not None and failed["value"] > failed["threshold"]
    stage_moves = box.services.registry.db.execute(
        "SELECT to_stage, actor FROM stage_history WHERE model = 'm' AND version = '2' "
        "ORDER BY id DESC LIMIT 1").fetchone()
    assert tuple(stage_moves) == ("shadow", "routing")
    return evidence


def test_candidate_failing_every_request_is_rolled_back_to_shadow(tmp_path):
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                               (routed(tmp_path, "raise"), "canary")]) as box:
        r = box.put_route({"policy": "canary", "candidate": "2", "interval_s": INTERVAL_S})
        assert r.status_code == 200, r.text
        canary = box.services.repository.router.runtimes["m"]  # the canary's windows

        intervals, before, during = run_until_rolled_back(box, per_interval=400)

        assert intervals <= 2
        evidence = assert_rolled_back_to_shadow(box, "error_rate")
        answered = canary.window("2").snapshot()
        # every failed request is one the candidate answered (and it answered nothing else)
        failed = [a for a in before + during if a.status != 200]
        assert len(failed) == answered["errors"] == answered["requests"] > 0
        assert {a.error for a in failed} == {
            "internal server error (RuntimeError); the server log has the details"}
        assert all(a.version == "1" and a.route == "production" and a.scaled_by(1)
                   for a in before + during if a.status == 200)
        judged = evidence["windows"]["candidate"]  # what the analysis saw, a moment before
        assert judged["errors"] == judged["requests"] <= answered["requests"]


def test_candidate_with_shifted_scores_is_rolled_back_on_psi(tmp_path):
    # version 2 answers 50 times production's values: a deliberately wrong model
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                               (onnx(tmp_path, 50), "canary")]) as box:
        r = box.put_route({"policy": "canary", "candidate": "2", "steps": [25, 50, 100],
                           "interval_s": INTERVAL_S, "thresholds": {"min_samples": 100}})
        assert r.status_code == 200, r.text

        intervals, before, during = run_until_rolled_back(box, per_interval=500)

        assert intervals <= 2
        assert_rolled_back_to_shadow(box, "score_psi")
        # nothing failed: the candidate answered 200s, just wrong ones, until rolled back
        assert {a.status for a in before + during} == {200}
        assert {a.version for a in before} == {"1", "2"}
        assert all(a.scaled_by(50) for a in before + during if a.version == "2")
        assert all(a.scaled_by(1) for a in before + during if a.version == "1")
        # as a shadow it still gets copies, and disagrees with production on every row
        shadow = box.shadow_report(copies=1)["shadows"]["2"]
        assert shadow["requests"] > 0 and shadow["agreement"] == 0.0


def test_healthy_canary_with_few_requests_holds_and_never_rolls_back(tmp_path):
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                               (onnx(tmp_path, 1), "canary")]) as box:
        r = box.put_route({"policy": "canary", "candidate": "2", "interval_s": INTERVAL_S})
        assert r.status_code == 200, r.text
        box.tick()
        box.tick(INTERVAL_S)  # an analysis without a single request
        analysis = box.route()["live"]["canary"]["analysis"]
        assert analysis["verdict"] == "hold"
        assert {c["reason"].split(":")[0] for c in analysis["checks"]} == {"no data"}

        answers: list[Answer] = []
        for _ in range(10):  # ten intervals of a quiet box: 3 requests each
            answers += box.send(3)
            box.tick(INTERVAL_S)

        live = box.route()["live"]
        assert live["canary"]["state"]["status"] == "running"
        assert live["canary"]["state"]["step"] == 0 and live["canary_weight"] == 5
        assert live["canary"]["analysis"]["verdict"] == "hold"
        error_check = live["canary"]["analysis"]["checks"][0]
        assert error_check["reason"].startswith("too few requests")
        assert box.events("route.state") == []
        assert box.stage("2") == "canary"
        assert {a.status for a in answers} == {200}
        assert {(a.version, a.route) for a in answers} <= {("1", "production"),
                                                           ("2", "canary")}


def test_healthy_canary_with_enough_traffic_steps_up_and_is_promoted(tmp_path):
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                               (onnx(tmp_path, 1), "canary")]) as box:
        r = box.put_route({"policy": "canary", "candidate": "2", "steps": [50, 100],
                           "interval_s": INTERVAL_S, "thresholds": {"min_samples": 50}})
        assert r.status_code == 200, r.text
        box.tick()
        first = box.send(300)
        box.tick(INTERVAL_S)  # every check passes: 50 % -> 100 %
        assert box.route()["live"]["canary_weight"] == 100
        second = box.send(100)
        box.tick(INTERVAL_S)  # passes at 100 % after its dwell: promoted
        after = box.send(50)

        assert {(a.status, a.version) for a in first} == {(200, "1"), (200, "2")}
        assert {(a.status, a.version, a.route) for a in second} == {(200, "2", "canary")}
        assert {(a.status, a.version, a.route) for a in after} == {(200, "2", "production")}
        assert (box.stage("1"), box.stage("2")) == ("deprecated", "production")
        assert box.route()["route"] is None  # the default route now serves the new version
        assert [e["detail"]["action"] for e in box.events("route.state")] == [
            "step-up", "promote"]
        [deleted] = box.events("route.delete")
        assert deleted["actor"] == "routing"
