"""Thompson-sampling weights, the floor, the burn-in, the error guardrail and the SRM check."""

from __future__ import annotations

import heapq

import numpy as np
import pytest

from appliance.experiments.bandit import ArmState, ArmWeights, BanditConfig, reweight
from appliance.experiments.srm import ExpectedCounts, check_srm


def _binary(n: int, rate: float, *, errors: int = 0, extra: int = 0) -> ArmState:
    """An arm with ``n`` binary rewards at ``rate`` and ``extra`` assignments still pending."""
    successes = float(round(n * rate))
    return ArmState(n + errors + extra, n, successes, successes, errors)


# -- the request path ---------------------------------------------------------------------
def test_arm_weights_bisect_one_uniform_number_into_cumulative_weights() -> None:
    weights = ArmWeights({"a": 2.0, "b": 0.0, "c": 8.0})
    assert weights.weights == {"a": 0.2, "b": 0.0, "c": 0.8}
    assert [weights.choose(u) for u in (0.0, 0.1999, 0.2, 0.5, 0.999999)] == [
        "a", "a", "c", "c", "c"]
    chosen = [weights.choose(u) for u in np.random.default_rng(1).random(20_000)]
    assert chosen.count("b") == 0
    assert chosen.count("a") / len(chosen) == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize("weights", [{"a": -0.1, "b": 1.0}, {"a": 0.0}, {"a": float("nan")}])
def test_arm_weights_reject_negative_missing_or_nan_weights(weights: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="weight"):
        ArmWeights(weights)


# -- burn-in, floor, posteriors -----------------------------------------------------------
def test_burn_in_keeps_weights_uniform_until_every_arm_has_100_rewards() -> None:
    states = {"a": _binary(100, 0.01), "b": _binary(99, 0.5), "c": _binary(500, 0.02)}
    result = reweight(states, BanditConfig(), np.random.default_rng(0))
    assert result.weights == {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    assert result.reason == "burn-in: arm 'b' has 99 of 100 rewards"
    states["b"] = _binary(100, 0.5)
    result = reweight(states, BanditConfig(), np.random.default_rng(0))
    assert result.reason == "thompson" and result.weights["b"] > 0.95


def test_weight_floor_keeps_every_arm_at_one_percent_and_weights_sum_to_one() -> None:
    states = {"a": _binary(5000, 0.02), "b": _binary(5000, 0.03), "c": _binary(5000, 0.20)}
    result = reweight(states, BanditConfig(), np.random.default_rng(0))
    assert result.prob_best == {"a": 0.0, "b": 0.0, "c": 1.0}
    assert result.weights["a"] == result.weights["b"] == pytest.approx(0.01)
    assert sum(result.weights.values()) == pytest.approx(1.0)
    unfloored = reweight(states, BanditConfig(floor=0.0), np.random.default_rng(0))
    assert unfloored.weights == {"a": 0.0, "b": 0.0, "c": 1.0}


def test_floor_too_large_for_the_number_of_arms_is_rejected() -> None:
    states = {arm: _binary(200, 0.1) for arm in "abc"}
    with pytest.raises(ValueError, match="lower floor to at most 0.3333"):
        reweight(states, BanditConfig(floor=0.4), np.random.default_rng(0))


def test_continuous_rewards_favour_the_arm_with_the_higher_mean() -> None:
    rng = np.random.default_rng(3)
    states = {}
    for arm, mean in (("a", 1.0), ("b", 1.3)):
        x = rng.normal(mean, 2.0, size=400)
        states[arm] = ArmState(400, 400, float(x.sum()), float((x * x).sum()), 0)
    result = reweight(states, BanditConfig(reward="continuous"), np.random.default_rng(0))
    assert result.reason == "thompson"
    assert 0.9 < result.prob_best["b"] < 1.0


def test_reweight_is_deterministic_given_seed_and_counts_whatever_the_arm_order() -> None:
    states = {"b": _binary(300, 0.11), "a": _binary(300, 0.10), "c": _binary(300, 0.12)}
    first = reweight(states, BanditConfig(), np.random.default_rng(42))
    again = reweight(dict(sorted(states.items())), BanditConfig(), np.random.default_rng(42))
    assert first == again
    assert 0.05 < min(first.prob_best.values()) < max(first.prob_best.values()) < 0.95


def test_binary_rewards_outside_the_unit_interval_are_rejected() -> None:
    states = {"a": ArmState(200, 200, 350.0, 900.0, 0), "b": _binary(200, 0.1)}
    with pytest.raises(ValueError, match="binary rewards must lie in"):
        reweight(states, BanditConfig(), np.random.default_rng(0))


@pytest.mark.parametrize(("values", "message"), [
    ({"reward": "ordinal"}, "reward must be 'binary' or 'continuous'"),
    ({"draws": 10}, "draws must be an integer >= 100"),
    ({"draws": 4000.5}, "draws must be an integer"),
    ({"floor": 1.5}, r"floor must be a number in \[0.0, 0.5\]"),
    ({"floor": "1%"}, "floor must be a number"),
    ({"burn_in": -1}, "burn_in must be an integer >= 0"),
    ({"reward": "continuous", "burn_in": 1}, "burn_in must be an integer >= 2"),
    ({"error_ratio": 0.5}, "error_ratio must be a number in"),
    ({"error_excess": float("nan")}, "error_excess must be a number in"),
    ({"error_alpha": 0.0}, "error_alpha must be a number in"),
    ({"error_alpha": True}, "error_alpha must be a number in"),
])
def test_bad_config_values_raise_value_error_saying_what_to_fix(
        values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BanditConfig(**values)  # type: ignore[arg-type]


# -- the error guardrail ------------------------------------------------------------------
def test_excluded_arm_gets_zero_weight_no_floor_and_its_evidence_is_returned() -> None:
    states = {"prod": _binary(980, 0.05, errors=20), "bad": _binary(940, 0.30, errors=60),
              "new": _binary(980, 0.06, errors=20)}
    result = reweight(states, BanditConfig(), np.random.default_rng(0), baseline="prod")
    assert result.weights["bad"] == 0.0 and set(result.excluded) == {"bad"}
    assert sum(result.weights.values()) == pytest.approx(1.0)
    assert min(result.weights["prod"], result.weights["new"]) >= 0.01
    evidence = result.excluded["bad"]
    assert (evidence.errors, evidence.requests, evidence.baseline_errors) == (60, 1000, 20)
    assert evidence.error_rate == 0.06 and evidence.baseline_error_rate == 0.02
    assert evidence.threshold == pytest.approx(0.03)
    assert evidence.p_value < 1e-5 and evidence.test.startswith("fisher_exact")


def test_arm_above_the_margin_without_evidence_is_held_at_its_share_for_the_baseline() -> None:
    states = {"prod": _binary(196, 0.05, errors=4), "risky": _binary(188, 0.30, errors=12)}
    result = reweight(states, BanditConfig(), np.random.default_rng(0), baseline="prod")
    assert not result.excluded and set(result.capped) == {"risky"}
    assert result.capped["risky"].p_value >= 0.01
    assert result.weights == pytest.approx({"prod": 0.5, "risky": 0.5})
    assert result.prob_best["risky"] > 0.99  # the reward alone would have given it all


def test_guardrail_needs_a_baseline_among_the_arms() -> None:
    with pytest.raises(ValueError, match="baseline 'prod' is not one of the arms"):
        reweight({"a": _binary(10, 0.1)}, BanditConfig(), np.random.default_rng(0),
                 baseline="prod")


def _requests_of_bad_arm_when_excluded(seed: int, ticks: int = 400) -> int | None:
    """Three arms, 30 requests a minute, rewards delayed U(0, 10) min (30 % never come: 0
    after 15 min), errors known at once; "bad" has the best reward and 3x the errors."""
    arms = {"prod": (0.02, 0.05), "good": (0.02, 0.06), "bad": (0.06, 0.10)}
    rng, draws = np.random.default_rng(seed), np.random.default_rng(seed + 1000)
    counts = {arm: [0, 0, 0.0, 0] for arm in arms}  # assignments, rewards, sum, errors
    due: list[tuple[float, str, float]] = []
    weights = ArmWeights(dict.fromkeys(arms, 1.0))
    for tick in range(ticks):
        now = tick * 60.0
        while due and due[0][0] <= now:
            _, arm, value = heapq.heappop(due)
            counts[arm][1] += 1
            counts[arm][2] += value
        for u, at, err, late, reward in rng.random((30, 5)):
            arm = weights.choose(float(u))
            error_rate, reward_rate = arms[arm]
            counts[arm][0] += 1
            if err < error_rate:
                counts[arm][3] += 1
            elif late < 0.7:
                heapq.heappush(due, (now + 60 * at + 600 * late / 0.7, arm,
                                     float(reward < reward_rate)))
            else:
                heapq.heappush(due, (now + 60 * at + 900, arm, 0.0))
        states = {arm: ArmState(int(c[0]), int(c[1]), float(c[2]), float(c[2]), int(c[3]))
                  for arm, c in counts.items()}
        result = reweight(states, BanditConfig(), draws, baseline="prod")
        assert "good" not in result.excluded and "prod" not in result.excluded
        if "bad" in result.excluded:
            return int(counts["bad"][0])
        weights = ArmWeights(result.weights)
    return None


def test_arm_with_best_reward_but_3x_errors_is_excluded_within_500_of_its_requests() -> None:
    seen = [_requests_of_bad_arm_when_excluded(seed) for seed in range(8)]
    assert all(n is not None for n in seen), seen
    assert sum(n <= 500 for n in seen if n is not None) >= 7, seen
    assert sorted(n for n in seen if n is not None)[len(seen) // 2] <= 350, seen


# -- sample-ratio mismatch ----------------------------------------------------------------
def _srm_p_value(seed: int, dropped: float) -> float:
    """60,000 assignments under weights that change every 1,000; ``dropped`` of arm b's
    never reach the observed counts."""
    rng = np.random.default_rng(seed)
    expected, observed = ExpectedCounts(), {"a": 0, "b": 0, "c": 0}
    for _ in range(60):
        weights = ArmWeights(dict(zip("abc", rng.dirichlet([8.0, 8.0, 8.0]).tolist())))
        for u, lost in rng.random((1000, 2)):
            arm = weights.choose(float(u))
            expected.add(weights.weights)
            if not (arm == "b" and lost < dropped):
                observed[arm] += 1
    result = check_srm(observed, expected.totals())
    assert result.alarm == (result.p_value < 0.001)
    assert sum(result.expected.values()) == pytest.approx(sum(observed.values()))
    return result.p_value


def test_srm_alarms_when_5_percent_of_one_arms_assignments_are_dropped() -> None:
    assert all(_srm_p_value(seed, 0.05) < 0.001 for seed in range(3))


def test_srm_does_not_alarm_when_no_assignment_is_dropped() -> None:
    assert all(_srm_p_value(seed, 0.0) >= 0.001 for seed in range(3))


def test_srm_expected_counts_sum_the_weights_in_force_at_each_assignment() -> None:
    expected = ExpectedCounts()
    first, second = {"a": 0.5, "b": 0.5}, {"a": 0.1, "b": 0.9}
    for _ in range(10):
        expected.add(first)
    expected.add(second, count=10)
    assert expected.totals() == pytest.approx({"a": 6.0, "b": 14.0})


def test_srm_alarms_at_once_for_assignments_to_an_arm_with_no_weight() -> None:
    result = check_srm({"a": 50, "b": 1}, {"a": 51.0, "b": 0.0})
    assert result.alarm and result.p_value == 0.0
    assert not check_srm({}, {}).alarm
