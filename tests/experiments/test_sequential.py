"""Peeking-safe A/B statistics: false positives under peeking, power, published boundaries,
the always-valid p-value and confidence sequence, bad input, and the operator's messages.

Simulations are vectorised over experiments (cumulative sums over a (runs, looks) array) and
go through the same array functions the scalar API uses; every generator is seeded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from appliance.experiments.sequential import (
    ArmStats,
    Decision,
    GroupSequentialPlan,
    MsprtState,
    always_valid_p_values,
    boundaries,
    confidence_radius,
    decide,
    default_tau2,
    difference_z,
    inflation_factor,
    sample_size,
)
from appliance.experiments.spending import rejection_probability

RUNS, LOOKS, PER_LOOK = 2000, 100, 10  # 100 looks, 10 more samples per arm between looks


def _arm_sums(rng: np.random.Generator, kind: str, shift: float = 0.0,
              looks: int = LOOKS, per_look: int = PER_LOOK
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n, sum and sum of squares of one arm at each look, shape (RUNS, looks)."""
    if kind == "bernoulli":
        sums = rng.binomial(per_look, 0.2 + shift, size=(RUNS, looks)).astype(float)
        sum_sq = sums
    else:
        x = rng.normal(shift, 1.0, size=(RUNS, looks, per_look))
        sums, sum_sq = x.sum(axis=2), (x * x).sum(axis=2)
    n = np.broadcast_to(per_look * np.arange(1, looks + 1, dtype=float), (RUNS, looks))
    return n, np.cumsum(sums, axis=1), np.cumsum(sum_sq, axis=1)


def _first_valid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each row's value at its first valid look (what MsprtState fixes tau2 from)."""
    return values[np.arange(len(values)), np.argmax(valid, axis=1)]


def _msprt_tau2(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> np.ndarray:
    var_a = (a[2] - a[1] ** 2 / a[0]) / (a[0] - 1)
    var_b = (b[2] - b[1] ** 2 / b[0]) / (b[0] - 1)
    return _first_valid(default_tau2(var_a, var_b), var_a + var_b > 0)[:, None]


@pytest.mark.parametrize("kind", ["bernoulli", "normal"])
@pytest.mark.parametrize("test", ["obrien-fleming", "pocock", "msprt"])
def test_aa_experiments_peeked_100_times_declare_significance_at_most_6_percent(kind, test):
    rng = np.random.default_rng(20240601)
    a, b = _arm_sums(rng, kind), _arm_sums(rng, kind)
    effect, v, z = difference_z(*a, *b)
    if test == "msprt":
        rejected = always_valid_p_values(effect, v, _msprt_tau2(a, b))[:, -1] <= 0.05
    else:
        c = boundaries([k / LOOKS for k in range(1, LOOKS + 1)], 0.05, test)
        rejected = np.any(np.abs(np.nan_to_num(z)) >= c, axis=1)
    assert rejected.mean() <= 0.06


@pytest.mark.parametrize("looks", [10, 100])
def test_sample_size_gives_the_group_sequential_test_its_planned_power(looks):
    effect = 0.25
    n = sample_size(effect, 1.0, 0.05, 0.8, "obrien-fleming", looks=looks)
    at = np.round(np.arange(1, looks + 1) * n / looks).astype(int)  # per-arm n of each look
    rng = np.random.default_rng(7 + looks)
    arms = []
    for shift in (0.0, effect):
        x = rng.normal(shift, 1.0, size=(RUNS, n))
        arms.append((np.broadcast_to(at.astype(float), (RUNS, looks)),
                     np.cumsum(x, axis=1)[:, at - 1], np.cumsum(x * x, axis=1)[:, at - 1]))
    _, _, z = difference_z(*arms[0], *arms[1])
    fractions = list(at / n)
    power = np.any(np.abs(z) >= boundaries(fractions), axis=1).mean()
    exact = rejection_probability(boundaries(fractions), fractions, effect * math.sqrt(n / 2))
    # 0.80 by the recursion (n is rounded up); 2,000 runs estimate it within 0.009 (one SE)
    assert exact >= 0.8 and power >= 0.8 - 2.5 * math.sqrt(0.8 * 0.2 / RUNS)


def test_single_look_at_the_end_has_the_fixed_sample_boundary():
    assert boundaries([1.0])[0] == pytest.approx(1.959964, abs=1e-6)
    assert boundaries([1.0], 0.05, "pocock")[0] == pytest.approx(1.959964, abs=1e-6)


def test_obrien_fleming_spending_at_5_equal_looks_matches_published_boundaries():
    # Lan-DeMets O'Brien-Fleming spending, two-sided 0.05 (gsDesign sfLDOF, rpact asOF)
    published = [4.877, 3.357, 2.680, 2.290, 2.031]
    assert boundaries([0.2, 0.4, 0.6, 0.8, 1.0]) == pytest.approx(published, abs=0.005)


@pytest.mark.parametrize(("name", "constant", "shape"), [
    ("obrien-fleming", 2.040, lambda k, big_k: math.sqrt(big_k / k)),
    ("pocock", 2.413, lambda k, big_k: 1.0),
])
def test_classical_constant_boundaries_at_5_looks_hold_alpha(name, constant, shape):
    # O'Brien & Fleming (1979): 4.56, 3.23, 2.63, 2.28, 2.04; Pocock (1977): 2.413 each
    bounds = [constant * shape(k, 5) for k in range(1, 6)]
    fractions = [k / 5 for k in range(1, 6)]
    assert rejection_probability(bounds, fractions, 0.0) == pytest.approx(0.05, abs=5e-4)


def test_uneven_and_nearly_coincident_looks_spend_exactly_alpha():
    fractions = [0.03, 0.1, 0.1001, 0.37, 0.5, 0.500001, 0.9, 1.0]
    for name in ("obrien-fleming", "pocock"):
        c = boundaries(fractions, 0.05, name)
        assert rejection_probability(c, fractions, 0.0) == pytest.approx(0.05, abs=1e-6)


def test_boundaries_of_100_looks_hold_alpha_for_exact_normal_z_statistics():
    rng = np.random.default_rng(3)
    t = np.arange(1, LOOKS + 1) / LOOKS
    z = np.cumsum(rng.standard_normal((100_000, LOOKS)), axis=1) / np.sqrt(np.arange(1, 101))
    for name in ("obrien-fleming", "pocock"):
        rate = np.any(np.abs(z) >= boundaries(list(t), 0.05, name), axis=1).mean()
        assert rate == pytest.approx(0.05, abs=0.002)


def test_plan_look_appends_its_fraction_and_accounts_for_earlier_looks():
    plan = GroupSequentialPlan(0.05, 1000)
    first = plan.look(1.0, 200)
    second = first.plan.look(2.5, 500)
    assert second.plan.looks == (0.2, 0.5)
    assert second.boundary == pytest.approx(boundaries([0.2, 0.5])[1])
    assert not first.crossed and not second.final
    again = second.plan.look(2.5, 500)
    assert again.plan == second.plan and again.boundary == second.boundary
    restored = GroupSequentialPlan(0.05, 1000, "obrien-fleming", looks=list(second.plan.looks))
    assert restored == second.plan


def test_obrien_fleming_inflation_is_small_and_grows_with_the_looks():
    assert 1.02 <= inflation_factor(0.05, 0.8, "obrien-fleming", 5) <= 1.03
    assert inflation_factor(looks=10) < inflation_factor(looks=100) < 1.06
    assert inflation_factor(spending="pocock", looks=5) > 1.2
    fixed = sample_size(0.1, 1.0, spending=None)
    assert fixed == math.ceil(2 * (stats.norm.isf(0.025) + stats.norm.ppf(0.8)) ** 2 / 0.01)


def test_msprt_p_value_never_increases_across_looks():
    rng = np.random.default_rng(11)
    a, b, state = ArmStats(), ArmStats(), MsprtState()
    p_values = []
    for _ in range(60):
        a, b = a.add(rng.binomial(1, 0.2, 15)), b.add(rng.binomial(1, 0.23, 15))
        decision = decide(a, b, state=state, binary=True)
        assert isinstance(decision.state, MsprtState)
        state = decision.state
        p_values.append(decision.p_value)
    assert all(q <= p for p, q in zip(p_values, p_values[1:]))
    assert p_values[-1] < p_values[0]


def test_msprt_confidence_sequence_covers_the_true_difference_at_every_look():
    rng = np.random.default_rng(5)
    true_difference = 0.3
    a, b = _arm_sums(rng, "normal"), _arm_sums(rng, "normal", true_difference)
    effect, v, _ = difference_z(*a, *b)
    radius = confidence_radius(v, _msprt_tau2(a, b), 0.05)
    lower = np.maximum.accumulate(effect - radius, axis=1)
    upper = np.minimum.accumulate(effect + radius, axis=1)
    covered = np.all((lower <= true_difference) & (true_difference <= upper), axis=1)
    assert covered.mean() >= 0.95


def test_scalar_msprt_state_matches_the_vectorised_p_values():
    rng = np.random.default_rng(9)
    xa, xb = rng.normal(0, 1, 400), rng.normal(0.2, 1, 400)
    state, p_scalar, rows = MsprtState(), [], []
    for n in range(20, 401, 20):
        a, b = ArmStats.from_rewards(xa[:n]), ArmStats.from_rewards(xb[:n])
        look = state.look(a, b)
        state = look.state
        p_scalar.append(state.p_value)
        rows.append((a.n, a.sum, a.sum_sq, b.n, b.sum, b.sum_sq))
    effect, v, _ = difference_z(*np.array(rows).T)
    assert state.tau2 == pytest.approx(float(default_tau2(np.var(xa[:20], ddof=1),
                                                          np.var(xb[:20], ddof=1))))
    assert p_scalar == pytest.approx(list(always_valid_p_values(effect, v, state.tau2)))


def test_arm_intervals_are_wilson_for_conversions_and_t_for_continuous_rewards():
    conversions = ArmStats.from_rewards([1] * 12 + [0] * 88)
    wilson = stats.binomtest(12, 100).proportion_ci(0.95, method="wilson")
    assert conversions.interval(binary=True) == pytest.approx((wilson.low, wilson.high))
    x = np.random.default_rng(1).normal(3.0, 2.0, 50)
    arm = ArmStats.from_rewards(x)
    assert (arm.mean, arm.variance) == pytest.approx((x.mean(), x.var(ddof=1)))
    half = stats.t.isf(0.025, 49) * x.std(ddof=1) / math.sqrt(50)
    assert arm.interval() == pytest.approx((x.mean() - half, x.mean() + half))


@pytest.mark.parametrize(("make", "fix"), [
    (lambda: ArmStats(-3, 0.0, 0.0), "n must be a whole number >= 0"),
    (lambda: GroupSequentialPlan(0.0, 1000), "alpha must be a probability strictly between"),
    (lambda: GroupSequentialPlan(1.5, 1000), "alpha must be a probability strictly between"),
    (lambda: GroupSequentialPlan(0.05, 0), "max_n must be a positive whole number"),
    (lambda: GroupSequentialPlan(0.05, -10), "max_n must be a positive whole number"),
    (lambda: boundaries([0.5, 1.2]), r"must lie in \(0, 1\].*plan a larger max_n"),
    (lambda: boundaries([0.6, 0.4]), "must increase strictly"),
    (lambda: GroupSequentialPlan(0.05, 1000).look(1.0, 1200), "past the plan's max_n=1,000"),
    (lambda: GroupSequentialPlan(0.05, 1000).look(1.0, -5), "n must be a positive whole"),
    (lambda: GroupSequentialPlan(0.05, 1000, looks=(0.5,)).look(1.0, 300), "go forward"),
    (lambda: MsprtState(alpha=1.0), "alpha must be a probability"),
    (lambda: decide(ArmStats(20, 5, 5), ArmStats(20, 6, 6), state=MsprtState(), binary=True,
                    alpha=0.1), "differs from the state's alpha"),
    (lambda: decide(ArmStats(20, 5, 9), ArmStats(20, 6, 6), state=MsprtState(), binary=True),
     "binary rewards must be 0 or 1"),
    (lambda: sample_size(0.0, 1.0), "effect must be a finite, non-zero"),
])
def test_bad_input_raises_value_error_saying_what_to_fix(make, fix):
    with pytest.raises(ValueError, match=fix):
        make()


def _stream(n: int, p_a: float, p_b: float, seed: int) -> tuple[ArmStats, ArmStats]:
    rng = np.random.default_rng(seed)
    return (ArmStats.from_rewards(rng.binomial(1, p_a, n)),
            ArmStats.from_rewards(rng.binomial(1, p_b, n)))


def test_needs_more_message_names_samples_and_time_at_the_given_rate():
    a, b = _stream(300, 0.10, 0.11, 2)
    for state in (MsprtState(), GroupSequentialPlan(0.05, 20_000)):
        d = decide(a, b, state=state, binary=True, rate_per_s=0.5, planned_effect=0.03)
        assert d.verdict == "needs-more" and d.samples_needed and d.seconds_needed
        assert d.seconds_needed == pytest.approx(d.samples_needed / 0.5)
        assert "more samples — about " in d.message and "at the current traffic" in d.message
        assert f"{round(d.samples_needed, -1):,}"[:3] in d.message


def test_significant_message_gives_effect_interval_and_evidence():
    a, b = _stream(3000, 0.10, 0.15, 4)
    d = decide(a, b, state=MsprtState(), binary=True)
    assert isinstance(d, Decision) and d.verdict == "significant" and d.test == "msprt"
    assert d.interval is not None and d.interval[0] > 0 and d.p_value is not None
    assert d.message.startswith(f"significant: treatment +{d.effect:.3g} (95 % CI ")
    assert "msprt p = " in d.message
    g = decide(a, b, state=GroupSequentialPlan(0.05, 8000), binary=True)
    assert g.verdict == "significant" and g.test == "group-sequential-obrien-fleming"
    assert g.p_value is None and g.boundary is not None and "|z| = " in g.message


def test_too_few_samples_take_no_look_and_spend_nothing():
    plan = GroupSequentialPlan(0.05, 1000)
    d = decide(ArmStats(4, 1, 1), ArmStats(4, 2, 2), state=plan, binary=True)
    assert d.verdict == "not-yet" and d.state is plan and "no look taken" in d.message


def test_final_look_without_crossing_reports_the_spent_plan():
    a, b = _stream(500, 0.2, 0.2, 8)
    d = decide(a, b, state=GroupSequentialPlan(0.05, 1000), binary=True)
    assert d.verdict == "not-yet" and d.final and "alpha is spent" in d.message


def test_decisions_are_deterministic():
    a, b = _stream(400, 0.1, 0.12, 6)
    kwargs = dict(binary=True, rate_per_s=2.0, planned_effect=0.02)
    for state in (MsprtState(), GroupSequentialPlan(0.05, 5000, "pocock")):
        assert decide(a, b, state=state, **kwargs) == decide(a, b, state=state, **kwargs)
