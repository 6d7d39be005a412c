"""Experiments end to end, through a real server: a weighted split's assignments, rewards
joined once by ``POST /v1/feedback``, ``GET /v1/experiments/{model}`` counting what the
clients saw, and a bandit's arms."""

from __future__ import annotations

from collections import Counter

from routed_box import Answer, Box, onnx, routed, routed_box

#: what each version multiplies its input by
FACTORS = {"1": 1.0, "2": 2.0}


def two_arm_box(tmp_path):
    """``m``: 1 production (y = x), 2 canary (y = 2x)."""
    return routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                                 (onnx(tmp_path, 2), "canary")])


def feedback(box: Box, request_id: object, reward: object):
    return box.http.post("/v1/feedback", json={"request_id": request_id, "reward": reward})


def send_with_ids(box: Box, n: int) -> dict[str, Answer]:
    answers = {f"r-{i}": box.infer(request_id=f"r-{i}") for i in range(n)}
    assert {a.status for a in answers.values()} == {200}
    for a in answers.values():  # the label names the version that answered
        assert a.route == f"arm:{a.version}" and a.scaled_by(FACTORS[a.version or ""])
    return answers


def test_feedback_joins_a_reward_once_and_refuses_unknown_ids_and_bad_rewards(tmp_path):
    with two_arm_box(tmp_path) as box:
        assert box.put_route({"policy": "weighted", "weights": {"1": 50, "2": 50}}
                             ).status_code == 200
        send_with_ids(box, 10)

        first = feedback(box, "r-0", 1)
        assert first.status_code == 200, first.text
        assert first.json()["routing"] == "accepted"
        again = feedback(box, "r-0", 0)
        assert again.status_code == 200 and again.json()["routing"] == "duplicate"
        unknown = feedback(box, "never-sent", 1)
        assert unknown.status_code == 404, unknown.text
        wrong_type = feedback(box, "r-1", "yes")
        assert wrong_type.status_code == 400, wrong_type.text
        assert feedback(box, "r-1", 1).json()["routing"] == "accepted"  # r-1 was untouched

        box.tick()
        arms = box.http.get("/v1/experiments/m").json()["arms"]
        assert sum(arm["rewards"] for arm in arms.values()) == 2  # the duplicate not counted


def test_a_reward_for_a_request_that_failed_is_errored_and_not_counted(tmp_path):
    # version 2 raises on every request: half the split's requests fail
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                               (routed(tmp_path, "raise"), "canary")]) as box:
        assert box.put_route({"policy": "weighted", "weights": {"1": 50, "2": 50}}
                             ).status_code == 200
        answers = {f"r-{i}": box.infer(request_id=f"r-{i}") for i in range(20)}
        failed = [rid for rid, a in answers.items() if a.status != 200]
        assert failed and all(answers[rid].status == 500 for rid in failed)

        outcomes = {rid: feedback(box, rid, 1) for rid in answers}
        box.tick()
        arms = box.http.get("/v1/experiments/m").json()["arms"]

    assert {r.status_code for r in outcomes.values()} == {200}
    assert {rid for rid, r in outcomes.items() if r.json()["routing"] == "errored"} == set(
        failed)
    assert arms["2"]["errors"] == arms["2"]["assignments"] == len(failed)
    assert arms["2"]["rewards"] == 0 and arms["1"]["rewards"] == 20 - len(failed)


def test_experiment_report_counts_each_arm_and_compares_it_with_production(tmp_path):
    with two_arm_box(tmp_path) as box:
        assert box.put_route({"policy": "weighted", "weights": {"1": 50, "2": 50}}
                             ).status_code == 200
        answers = send_with_ids(box, 200)
        seen = Counter(a.version for a in answers.values())
        # version 2 converts every time, version 1 one time in ten
        for i, (request_id, answer) in enumerate(answers.items()):
            reward = 1 if answer.version == "2" or i % 10 == 0 else 0
            assert feedback(box, request_id, reward).json()["routing"] == "accepted"
        box.tick()
        r = box.http.get("/v1/experiments/m")

    assert r.status_code == 200, r.text
    report = r.json()
    assert report["policy"] == "weighted" and report["control"] == "1"
    arms = report["arms"]
    assert {v: arms[v]["assignments"] for v in arms} == dict(seen)
    assert min(seen.values()) > 70  # a 50/50 split of 200
    assert {v: arms[v]["rewards"] for v in arms} == dict(seen)
    assert arms["2"]["mean"] == 1.0 and 0 < arms["1"]["mean"] < 0.3
    comparison = report["comparisons"]["2"]
    assert comparison["verdict"] == "significant"
    assert set(report["comparisons"]) == {"2"}  # the control is not compared with itself


def test_bandit_route_answers_from_both_arms_and_takes_rewards(tmp_path):
    with two_arm_box(tmp_path) as box:
        assert box.put_route({"policy": "bandit", "arms": ["1", "2"]}).status_code == 200
        answers = send_with_ids(box, 60)
        labels = Counter(a.route for a in answers.values())
        assert set(labels) == {"arm:1", "arm:2"}
        some = next(iter(answers))
        assert feedback(box, some, 1).json()["routing"] == "accepted"
        box.tick()
        report = box.http.get("/v1/experiments/m").json()
        live = box.route()["live"]

    assert report["policy"] == "bandit"
    assert {v: arm["assignments"] for v, arm in report["arms"].items()} == {
        label.removeprefix("arm:"): n for label, n in labels.items()}
    assert set(live["weights"]) == {"1", "2"}
    assert abs(sum(live["weights"].values()) - 100) < 1e-6


def test_a_model_without_an_experiment_route_has_no_report(tmp_path):
    with two_arm_box(tmp_path) as box:
        assert box.http.get("/v1/experiments/m").status_code == 404
        assert box.put_route({"policy": "canary", "candidate": "2"}).status_code == 200
        assert box.http.get("/v1/experiments/m").status_code == 404
