"""A dry-run route decides and logs while the default route answers; replaying the
requests a route saw (appliance/routing/replay.py) gives the decisions it made live."""

from __future__ import annotations

import json

import pytest

from appliance.errors import BadRequest, NotFound
from appliance.routing import operations
from appliance.routing.replay import replay_trace

STICKY = {"policy": "sticky", "weights": {"1": 60, "2": 40},
          "sticky": {"header": "X-User-Id"}}


def requests(n: int = 300) -> list[dict]:
    """A trace: keyed users (some returning), keyless requests (the seeded draws) and a
    few tagged test requests in between."""
    lines = []
    for i in range(n):
        if i % 50 == 7:
            lines.append({"traffic": "test", "headers": {"X-Traffic-Class": "test"}})
        elif i % 3 == 0:
            lines.append({"headers": {"Accept": "application/json"}})
        else:
            lines.append({"headers": {"X-User-Id": f"user-{i % 40}"}})
    return lines


def send(stack, lines: list[dict]) -> list[dict]:
    """Send every line to the live stack; the version and route label that answered."""
    out = []
    for line in lines:
        headers = [(k.lower().encode(), v.encode()) for k, v in line["headers"].items()]
        traffic = line.get("traffic", "production")
        _, answer = stack.infer(headers, traffic=traffic)
        out.append({"version": answer["X-Model-Version"], "label": answer["X-Route"]})
    return out


def write(path, lines: list[dict]):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_dry_run_route_decides_and_logs_but_production_answers(model, start):
    stack = start()
    operations.put(model, "m", {"policy": "weighted", "weights": {"1": 50, "2": 50},
                                "dry_run": True}, actor="ops")
    stack.route()
    for _ in range(400):
        y, headers = stack.infer()
        assert (y, headers["X-Model-Version"], headers["X-Route"]) == (
            [2.0, 2.0], "1", "production")
    runtime = stack.router.runtimes["m"]
    assert runtime.decisions == 400 and len(runtime.dry_log) == 400
    assert set(runtime.dry_counts) == {"arm:1=1", "arm:2=2"}
    assert sum(runtime.dry_counts.values()) == 400
    assert 150 <= runtime.dry_counts["arm:2=2"] <= 250  # 50 %, give or take
    assert [e["n"] for e in runtime.dry_log] == list(range(1, 401))
    live = operations.describe(model, "m", stack.router)["live"]
    assert live["dry_run"] == dict(runtime.dry_counts) and live["decisions"] == 400
    assert live["weights"] == {"1": 50.0, "2": 50.0}


def test_a_dry_run_sticky_route_logs_each_user_on_one_version(model, start):
    stack = start()
    operations.put(model, "m", {**STICKY, "dry_run": True}, actor="ops")
    stack.route()
    for _ in range(3):
        for user in range(20):
            _, headers = stack.infer([(b"x-user-id", f"user-{user}".encode())])
            assert headers["X-Model-Version"] == "1"
    log = list(stack.router.runtimes["m"].dry_log)
    per_user = [{e["version"] for e in log[user::20]} for user in range(20)]
    assert all(len(versions) == 1 for versions in per_user)
    assert {v for versions in per_user for v in versions} == {"1", "2"}


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "live"])
def test_replaying_the_trace_gives_the_decisions_the_live_route_made(model, start, settings,
                                                                     tmp_path, dry_run):
    stack = start()
    operations.put(model, "m", {**STICKY, "dry_run": dry_run}, actor="ops")
    stack.route()
    lines = requests()
    answered = send(stack, lines)
    if dry_run:
        assert {a["version"] for a in answered} == {"1"}
        logged = iter(stack.router.runtimes["m"].dry_log)
        decided = [{"version": "1", "label": "test"} if line.get("traffic") == "test" else
                   {k: v for k, v in next(logged).items() if k != "n"} for line in lines]
    else:
        decided = answered
    assert {d["version"] for d in decided} == {"1", "2"}
    trace = write(tmp_path / "trace.jsonl", lines)
    replayed = replay_trace(model, "m", trace, settings)
    assert replayed == decided
    assert replay_trace(model, "m", trace, settings) == replayed


def test_a_replay_with_another_seed_differs_only_where_a_draw_decided(model, settings,
                                                                       tmp_path):
    operations.put(model, "m", STICKY, actor="ops")
    lines = requests()
    trace = write(tmp_path / "trace.jsonl", lines)
    seeded = replay_trace(model, "m", trace, settings)  # reward_seed 7
    unseeded = replay_trace(model, "m", trace)  # seed 0
    keyed = [i for i, line in enumerate(lines) if "X-User-Id" in line["headers"]]
    drawn = [i for i, line in enumerate(lines) if "X-User-Id" not in line["headers"]
             and line.get("traffic") != "test"]
    assert [seeded[i] for i in keyed] == [unseeded[i] for i in keyed]
    assert [seeded[i] for i in drawn] != [unseeded[i] for i in drawn]


def test_a_replay_follows_the_route_revision_in_force(model, settings, tmp_path):
    trace = write(tmp_path / "trace.jsonl", requests(100))
    operations.put(model, "m", STICKY, actor="ops")
    first = replay_trace(model, "m", trace, settings)
    operations.put(model, "m", {"policy": "weighted", "weights": {"1": 0, "2": 100}},
                   actor="ops")
    assert {d["version"] for d in replay_trace(model, "m", trace, settings)
            if d["label"] != "test"} == {"2"}
    assert {d["version"] for d in first} == {"1", "2"}


def test_a_trace_line_that_is_not_a_json_object_is_a_400_naming_the_line(model, tmp_path):
    operations.put(model, "m", STICKY, actor="ops")
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"headers": {}}\n\n{"headers": \n')
    with pytest.raises(BadRequest, match="trace line 3 is not JSON"):
        replay_trace(model, "m", trace)
    trace.write_text('{"headers": {}}\n[1, 2]\n')
    with pytest.raises(BadRequest, match="trace line 2 must be a JSON object"):
        replay_trace(model, "m", trace)
    trace.write_text('{"headers": ["X-User-Id", "u"]}\n')
    with pytest.raises(BadRequest, match="`headers` must be an object"):
        replay_trace(model, "m", trace)


def test_replaying_against_a_model_without_a_route_is_a_404(model, tmp_path):
    with pytest.raises(NotFound, match="no stored route to replay against"):
        replay_trace(model, "m", write(tmp_path / "trace.jsonl", requests(3)))


def test_a_route_recreated_between_two_reloads_starts_a_fresh_runtime(model, start):
    stack = start()
    body = {"policy": "weighted", "weights": {"1": 50, "2": 50}, "dry_run": True}
    operations.put(model, "m", body, actor="ops")
    stack.route()
    for _ in range(10):
        stack.infer()
    operations.remove(model, "m", actor="ops")
    operations.put(model, "m", body, actor="ops")  # before the server reloads
    stack.route()
    runtime = stack.router.runtimes["m"]
    assert runtime.decisions == 0 and not runtime.dry_counts
