"""The assignment and reward store: buffering, joining once, expiry, crashes, regret."""

from __future__ import annotations

import heapq
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance.experiments.bandit import ArmState, ArmWeights, BanditConfig, reweight
from appliance.experiments.rewards import RewardStore
from tests.helpers.clock import Clock

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> RewardStore:
    return RewardStore(tmp_path / "rewards.db")


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM assignments").fetchone()[0])


# -- buffering and joining ----------------------------------------------------------------
def test_assignments_stay_in_memory_until_a_flush(store: RewardStore) -> None:
    clock = Clock()
    for i, arm in enumerate("aab"):
        store.assign(f"r{i}", "m", arm, 0.5, clock())
    assert store.buffered() == 3 and _rows(store.path) == 0 and store.arm_states("m") == {}
    assert store.flush() == 3
    assert store.buffered() == 0 and _rows(store.path) == 3
    assert store.arm_states("m") == {"a": ArmState(assignments=2), "b": ArmState(assignments=1)}


def test_reward_joins_once_and_reports_duplicate_unknown_and_expired(store: RewardStore) -> None:
    clock = Clock()
    for rid in ("r1", "r2", "r3"):
        store.assign(rid, "m", "a", 1.0, clock())
    clock.advance(60)
    assert store.reward("r1", 1.0, clock()) == "accepted"  # the buffer is written first
    assert store.reward("r1", 0.0, clock()) == "duplicate"
    assert store.reward("nope", 1.0, clock()) == "unknown"
    assert store.reward("r2", 1.0, clock.advance(900), wait_s=900) == "expired"
    assert store.expire(clock(), 900, 0.0) == 2
    assert store.reward("r3", 1.0, clock()) == "expired"
    assert store.arm_states("m") == {"a": ArmState(3, 3, 1.0, 1.0, 0)}


def test_rewards_of_the_wrong_type_are_rejected_before_anything_is_written(
        store: RewardStore) -> None:
    store.assign("r1", "m", "a", 1.0, 0.0)
    for bad in ("1", None, True, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="reward for 'r1' must be"):
            store.reward("r1", bad, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be a number"):
        store.rewards([("r1", 1.0), ("r2", "x")], 1.0)  # type: ignore[list-item]
    assert store.arm_states("m") == {}
    assert store.rewards([("r1", 1), ("r1", np.float64(0.5))], 1.0) == ["accepted", "duplicate"]


def test_errored_request_counts_an_error_and_never_gets_a_reward(store: RewardStore) -> None:
    store.assign("ok", "m", "a", 0.5, 0.0)
    store.assign("failed", "m", "a", 0.5, 0.0)
    store.record_error("failed")
    assert store.reward("ok", 1.0, 10.0) == "accepted"
    store.record_error("ok")  # once rewarded, an error report changes nothing
    assert store.reward("failed", 1.0, 10.0) == "errored"
    assert store.expire(10_000.0, 900, 0.0) == 0
    assert store.arm_states("m") == {"a": ArmState(2, 1, 1.0, 1.0, 1)}


def test_expire_gives_old_pending_assignments_the_default_reward(store: RewardStore) -> None:
    clock = Clock()
    store.assign("old", "m", "a", 1.0, clock())
    store.assign("other-model", "n", "a", 1.0, clock())
    store.assign("new", "m", "a", 1.0, clock.advance(600))
    assert store.expire(clock.advance(301), 900, 0.25, model="m") == 1
    assert store.arm_states("m") == {"a": ArmState(2, 1, 0.25, 0.0625, 0)}
    assert store.arm_states("n", arms=["b"]) == {"a": ArmState(1), "b": ArmState()}
    with pytest.raises(ValueError, match="default_reward must be finite"):
        store.expire(clock(), 900, float("nan"))


def test_prune_deletes_rows_older_than_the_horizon(store: RewardStore) -> None:
    for i in range(10):
        store.assign(f"r{i}", "m", "a", 1.0, float(i))
    assert store.prune(before=4.0) == 4
    assert store.arm_states("m") == {"a": ArmState(6)}


def test_reopened_store_keeps_committed_rows_and_loses_nothing_flushed(tmp_path: Path) -> None:
    with RewardStore(tmp_path / "r.db") as first:
        first.assign("r1", "m", "a", 1.0, 0.0)
        first.reward("r1", 1.0, 1.0)
        first.assign("r2", "m", "b", 1.0, 2.0)  # close() flushes it
    again = RewardStore(tmp_path / "r.db")
    assert again.arm_states("m") == {"a": ArmState(1, 1, 1.0, 1.0, 0), "b": ArmState(1)}


# -- kill -9 ------------------------------------------------------------------------------
CHILD = r"""
import json, random, sys
from appliance.experiments.rewards import RewardStore

store = RewardStore(sys.argv[1])
rnd = random.Random(11)
tally = {arm: [0, 0, 0.0, 0.0, 0] for arm in "abc"}
waiting, i, step = [], 0, 0
while True:
    step += 1
    for _ in range(400):
        rid, arm = f"r{i}", rnd.choice("abc")
        i += 1
        store.assign(rid, "m", arm, 1 / 3, float(step))
        tally[arm][0] += 1
        if rnd.random() < 0.05:
            store.record_error(rid)
            tally[arm][4] += 1
        else:
            waiting.append((rid, arm))
    rnd.shuffle(waiting)
    batch, waiting = waiting[:300], waiting[300:]
    values = [(rid, float(rnd.random() < 0.3)) for rid, _ in batch]
    for (_, arm), (_, value) in zip(batch, values):
        tally[arm][1] += 1
        tally[arm][2] += value
        tally[arm][3] += value * value
    print(json.dumps({"step": step, "state": tally}), flush=True)
    store.rewards(values, float(step))  # one transaction: assignments, errors, rewards
    print(json.dumps({"committed": step}), flush=True)
"""


def _state(tally: dict[str, list[float]]) -> dict[str, ArmState]:
    return {arm: ArmState(int(t[0]), int(t[1]), t[2], t[3], int(t[4]))
            for arm, t in tally.items() if t[0]}


def _recount(path: Path) -> dict[str, ArmState]:
    tally: dict[str, list[float]] = {}
    with sqlite3.connect(path) as db:
        for arm, status, reward in db.execute("SELECT arm, status, reward FROM assignments"):
            t = tally.setdefault(arm, [0, 0, 0.0, 0.0, 0])
            t[0] += 1
            t[4] += status == "error"
            if reward is not None:
                t[1], t[2], t[3] = t[1] + 1, t[2] + reward, t[3] + reward * reward
    return _state(tally)


def test_posterior_after_kill_9_is_identical(tmp_path: Path) -> None:
    path = tmp_path / "rewards.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    reported: dict[int, dict[str, ArmState]] = {}
    committed = 0
    while committed < 6:
        message = json.loads(child.stdout.readline())
        if "state" in message:
            reported[message["step"]] = _state(message["state"])
        else:
            committed = message["committed"]
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    for line in child.stdout.read().splitlines():  # what it said before it died
        message = json.loads(line)
        if "state" in message:
            reported[message["step"]] = _state(message["state"])
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    after = RewardStore(path).arm_states("m")
    assert after == _recount(path)
    steps = [step for step, state in reported.items() if state == after]
    assert len(steps) == 1 and steps[0] >= committed, (committed, sorted(reported))
    config = BanditConfig()
    assert reweight(after, config, np.random.default_rng(9), baseline="a") == reweight(
        reported[steps[0]], config, np.random.default_rng(9), baseline="a")


# -- regret -------------------------------------------------------------------------------
ARM_P = {"a": 0.05, "b": 0.06, "c": 0.07, "d": 0.10}


def test_thompson_regret_with_delayed_rewards_is_at_most_40_percent_of_uniform(
        tmp_path: Path) -> None:
    """50,000 decisions, 35 a minute (about a day); rewards come U(0, 10) min later, 30 %
    never (0 after a 15-minute wait); re-weighting every minute through the store."""
    store, clock = RewardStore(tmp_path / "rewards.db"), Clock()
    rng, draws = np.random.default_rng(2024), np.random.default_rng(7)
    config, per_minute, total = BanditConfig(), 35, 50_000
    due: list[tuple[float, str, float]] = []
    weights = ArmWeights(dict.fromkeys(ARM_P, 1.0))
    p_best, regret, decided, i = max(ARM_P.values()), 0.0, 0, 0
    while decided < total:
        now = clock()
        arrived = []
        while due and due[0][0] <= now:
            _, rid, value = heapq.heappop(due)
            arrived.append((rid, value))
        assert set(store.rewards(arrived, now)) <= {"accepted"}
        store.expire(now, 900, 0.0)
        result = reweight(store.arm_states("m", ARM_P), config, draws, baseline="a")
        weights = ArmWeights(result.weights)
        n = min(per_minute, total - decided)
        for u, offset, arrives, delay, success in rng.random((n, 5)):
            arm = weights.choose(float(u))
            at = now + 60.0 * offset
            store.assign(f"r{i}", "m", arm, weights.weights[arm], at)
            if arrives < 0.7:
                heapq.heappush(due, (at + 600.0 * delay, f"r{i}",
                                     float(success < ARM_P[arm])))
            regret += p_best - ARM_P[arm]
            i += 1
        decided += n
        clock.advance(60)
    store.flush()
    uniform = total * (p_best - float(np.mean(list(ARM_P.values()))))
    assert regret <= 0.40 * uniform, (regret, uniform, regret / uniform)
    states = store.arm_states("m")
    assert sum(s.assignments for s in states.values()) == total
    assert states["d"].assignments > 0.6 * total
