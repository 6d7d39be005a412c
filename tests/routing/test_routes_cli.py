"""`appliance routes …` and `appliance experiments report` on a real data directory,
through click's runner: what an operator types, sees, and the exit status."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.experiments.rewards import RewardStore
from appliance.routing.replay import replay_trace


@pytest.fixture
def cli(model, settings):
    """Run ``appliance ARGS --data-dir <m's data dir>``: (exit code, output)."""
    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, [*args, "--data-dir", str(settings.data_dir)],
                                    env={"APPLIANCE_CONFIG": "", "USER": "operator"})
        assert "Traceback" not in result.output
        if result.exit_code not in (0, 1, 2):
            raise AssertionError(result.output) from result.exception
        return result.exit_code, result.output
    return run


def shown(cli) -> dict:
    code, out = cli("routes", "show", "m")
    assert code == 0, out
    return json.loads(out)


def test_set_show_list_and_delete_a_weighted_route(cli, model):
    code, out = cli("routes", "set", "m", "--weights", "1=70,2=30", "--by", "alice",
                    "--reason", "a/b test")
    assert code == 0, out
    route = shown(cli)
    assert route["route"]["policy"] == "weighted"
    assert route["route"]["weights"] == {"1": 70.0, "2": 30.0}
    assert route["revision"] == 1 and route["updated_by"] == "alice"
    assert out.strip() == f"m: weighted route stored (revision 1, ETag {route['etag']})"

    code, out = cli("routes", "list")
    assert code == 0 and out.split() == ["m", "weighted", "rev", "1", route["etag"], "by",
                                         "alice"]
    code, out = cli("routes", "list", "--json")
    assert [r["etag"] for r in json.loads(out)] == [route["etag"]]

    code, out = cli("routes", "delete", "m", "--if-match", route["etag"], "--by", "bob")
    assert code == 0 and out.strip() == "m: route removed (default route now)"
    assert shown(cli)["route"] is None
    assert cli("routes", "list")[1].strip() == (
        "no stored routes: every model uses the default route")
    events = model.db.execute("SELECT actor, action FROM events WHERE action LIKE 'route.%' "
                              "ORDER BY id").fetchall()
    assert events == [("alice", "route.set"), ("bob", "route.delete")]


def test_the_actor_defaults_to_the_user(cli, model):
    assert cli("routes", "set", "m", "--weights", "1=50,2=50")[0] == 0
    assert shown(cli)["updated_by"] == "operator"


def test_a_stale_if_match_is_refused_with_a_clear_message(cli):
    assert cli("routes", "set", "m", "--weights", "1=70,2=30")[0] == 0
    first = shown(cli)["etag"]
    code, out = cli("routes", "set", "m", "--weights", "1=60,2=40", "--if-match", first)
    assert code == 0, out
    second = shown(cli)["etag"]

    code, out = cli("routes", "set", "m", "--weights", "1=10,2=90", "--if-match", first)
    assert code == 1
    assert out.strip() == (f"error: the route of m changed: If-Match {first} but it is now "
                           f"{second}; GET /v1/routes/m and apply your change to that")
    code, out = cli("routes", "delete", "m", "--if-match", first)
    assert code == 1 and "the route of m changed" in out
    code, out = cli("routes", "set", "m", "--weights", "1=10,2=90", "--if-match", first,
                    "--json")
    assert code == 1 and json.loads(out)["error"].startswith("the route of m changed")
    assert shown(cli)["route"]["weights"] == {"1": 60.0, "2": 40.0}


def test_a_route_that_cannot_be_is_one_error_line(cli):
    code, out = cli("routes", "set", "m", "--weights", "1=70,2=20")
    assert (code, out.strip()) == (1, "error: route: weights must sum to 100, got 90 "
                                      "(1: 70, 2: 20)")
    code, out = cli("routes", "set", "m", "--weights", "1=50,3=50")
    assert code == 1 and "m version 3 is registered, not routable" in out
    code, out = cli("routes", "set", "m", "--weights", "1:70")
    assert code == 2 and "--weights takes VERSION=PERCENT pairs, got '1:70'" in out
    code, out = cli("routes", "set", "m")
    assert code == 2 and "say what the route is" in out
    code, out = cli("routes", "set", "m", "--body", '{"policy": "weighted",')
    assert code == 2 and "the route is not JSON" in out
    code, out = cli("routes", "set", "m", "--canary", "2", "--interval", "0")
    assert code == 1 and "interval_s must be a number from 1 to 86400, got 0.0" in out
    code, out = cli("routes", "delete", "m")
    assert code == 1 and "m has no stored route" in out
    assert shown(cli)["route"] is None


def test_sticky_canary_and_whole_body_routes_from_flags(cli, tmp_path):
    code, out = cli("routes", "set", "m", "--weights", "1=90,2=10",
                    "--sticky-header", "X-User-Id", "--dry-run")
    assert code == 0, out
    route = shown(cli)["route"]
    assert (route["policy"], route["sticky"]["header"], route["dry_run"]) == (
        "sticky", "X-User-Id", True)
    assert cli("routes", "set", "m", "--canary", "2", "--steps", "10,50,100",
               "--interval", "30")[0] == 0
    route = shown(cli)["route"]
    assert (route["candidate"], route["baseline"], route["steps"], route["interval_s"]) == (
        "2", "1", [10.0, 50.0, 100.0], 30.0)
    body = tmp_path / "route.json"
    body.write_text(json.dumps({"policy": "weighted", "weights": {"1": 25, "2": 75}}))
    assert cli("routes", "set", "m", "--file", str(body))[0] == 0
    assert shown(cli)["route"]["weights"] == {"1": 25.0, "2": 75.0}


def test_replay_prints_the_decisions_of_the_stored_route(cli, model, settings, tmp_path):
    assert cli("routes", "set", "m", "--weights", "1=50,2=50",
               "--sticky-header", "X-User-Id")[0] == 0
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps({"headers": {"X-User-Id": f"u{i}"}}) + "\n"
                             for i in range(30)))
    code, out = cli("routes", "replay", "m", str(trace), "--json")
    assert code == 0, out
    assert json.loads(out) == replay_trace(model, "m", trace, settings)
    code, out = cli("routes", "replay", "m", str(trace))
    rows = [line.split("\t") for line in out.strip().splitlines()]
    assert [r[0] for r in rows] == [str(i) for i in range(1, 31)]
    assert {(r[1], r[2]) for r in rows} == {("1", "arm:1"), ("2", "arm:2")}


def rewards_for(settings, converting: dict[str, float], n: int = 400,
                errors: int = 0) -> None:
    """``n`` requests per arm, each converting (reward 1) at the arm's rate, and
    ``errors`` failed requests per arm."""
    now = time.time() - 3600
    with RewardStore(settings.data_dir / "rewards.db") as store:
        for arm, rate in converting.items():
            for i in range(n + errors):
                store.assign(f"{arm}-{i}", "m", arm, 0.5, now + i)
            for i in range(n, n + errors):
                store.record_error(f"{arm}-{i}")
            store.flush()
            for i in range(n):
                assert store.reward(f"{arm}-{i}", float(i % 100 < rate * 100),
                                    now + n + i) == "accepted"


def test_experiments_report_shows_each_arm_and_a_decision(cli, settings):
    assert cli("routes", "set", "m", "--weights", "1=50,2=50")[0] == 0
    rewards_for(settings, {"1": 0.30, "2": 0.60}, errors=4)
    code, out = cli("experiments", "report", "m", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert (report["policy"], report["control"], report["test"]) == ("weighted", "1", "msprt")
    for arm, mean in (("1", 0.30), ("2", 0.60)):
        body = report["arms"][arm]
        assert (body["assignments"], body["rewards"], body["errors"]) == (404, 400, 4)
        assert body["mean"] == pytest.approx(mean)
        assert body["interval"][0] < mean < body["interval"][1]
    assert list(report["comparisons"]) == ["2"]
    assert report["comparisons"]["2"]["verdict"] == "significant"

    code, out = cli("experiments", "report", "m")  # a second look, from the saved state
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0] == "m: weighted experiment, control 1, msprt test at alpha 0.05"
    assert lines[1].startswith("  arm 1: 404 assigned, 400 rewards, 4 errors, mean 0.3 [")
    assert lines[2].startswith("  arm 2: 404 assigned, 400 rewards, 4 errors, mean 0.6 [")
    assert lines[3].startswith("  2 vs 1: ")


def test_experiments_report_with_max_samples_takes_group_sequential_looks(cli, settings):
    body = {"policy": "sticky", "weights": {"1": 50, "2": 50},
            "sticky": {"header": "X-User-Id"}, "max_samples": 1000}
    assert cli("routes", "set", "m", "--body", json.dumps(body))[0] == 0
    rewards_for(settings, {"1": 0.30, "2": 0.40}, n=200)
    for _ in range(2):  # the same data twice: one look, not two
        code, out = cli("experiments", "report", "m", "--json")
        assert code == 0, out
        report = json.loads(out)
        assert (report["test"], report["max_samples"]) == ("group-sequential", 1000)
        comparison = report["comparisons"]["2"]
        assert comparison["verdict"] == "needs-more" and comparison["samples_needed"] > 0
        assert "needs about" in comparison["message"]
    assert shown(cli)["state"] == {"experiment": {"2": {"looks": [0.2]}}}


def test_experiments_report_before_any_reward_says_not_yet(cli, settings):
    assert cli("routes", "set", "m", "--weights", "1=50,2=50")[0] == 0
    code, out = cli("experiments", "report", "m", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["arms"]["2"]["assignments"] == 0 and report["arms"]["2"]["mean"] is None
    assert report["comparisons"]["2"]["verdict"] == "not-yet"


def test_experiments_report_without_an_experiment_route_is_a_clear_error(cli):
    code, out = cli("experiments", "report", "m")
    assert code == 1
    assert out.strip() == ("error: m runs no experiment: give it a weighted, sticky or "
                           "bandit route (appliance routes set m ...) and send rewards to "
                           "POST /v1/feedback")
    assert cli("routes", "set", "m", "--canary", "2")[0] == 0
    code, out = cli("experiments", "report", "m")
    assert code == 1 and "m runs no experiment" in out
    code, out = cli("experiments", "report", "nope")
    assert code == 1 and out.startswith("error: ") and "nope" in out
