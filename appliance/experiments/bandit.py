"""Thompson-sampling allocation across a model's versions ("arms"), with guardrails.

Two halves, on two paths:

* the request path holds an :class:`ArmWeights`: one uniform number and a bisect of a
  precomputed cumulative array pick the arm (well under a microsecond);
* a tick, off the request path, calls :func:`reweight` on each arm's counts
  (:class:`ArmState`) and builds the next :class:`ArmWeights` from its result.

**Posteriors.** ``reward="binary"``: Beta-Bernoulli with a Beta(1, 1) prior, so an arm
with ``s`` successes in ``n`` rewards has posterior Beta(1 + s, 1 + n - s); rewards must lie
in [0, 1] (a fractional reward counts as a fractional success). ``reward="continuous"``:
Normal rewards with unknown mean and variance under the reference prior p(mu, sigma^2) ∝
1/sigma^2 (the flat limit of Normal-Inverse-Gamma), whose marginal posterior of the mean is
Student t with n - 1 degrees of freedom, location the sample mean and scale s / sqrt(n).
It was chosen because it has no hyperparameters in the reward's units; it needs two rewards
per arm, which the burn-in guarantees (``burn_in >= 2`` for continuous rewards).

**Weights.** Each arm's weight is the probability that it is the best, estimated from
``draws`` joint posterior draws with the caller's seeded generator (arms in sorted order, so
the result is a function of the seed and the counts). A floor ``f`` keeps every eligible arm
exploring: ``w = f + (1 - k f) p_best`` over the ``k`` eligible arms. Until every eligible
arm has ``burn_in`` reward observations the weights are uniform.

**Guardrail** (when the caller names the ``baseline``, the production arm). Error rate is
errors / assignments; an errored request has no reward, so errors are counted apart. An arm
whose observed rate is above the margin, ``max(error_ratio x baseline, baseline +
error_excess)`` (default 1.5x and at least one point: 3 % against a 2 % baseline), is
tested with a one-sided Fisher exact test (``scipy.stats.fisher_exact``, alternative
"greater": its error odds above the baseline's). Below ``error_alpha`` it is *excluded*:
weight 0, no floor, whatever its reward. Without that evidence yet it is *capped*: held at
the uniform share 1 / k, its surplus given to the baseline, which is the safe default and
whose traffic is what the test waits for (a small baseline sample, not the arm's, is what
limits the test's power once Thompson sampling favours a high-reward arm). The margin is
practical significance and the test statistical significance: a test against the margin
itself (H0: rate <= 2 x baseline) would need some 2,000 requests to see a 3x arm. The test
runs at every tick, so ``error_alpha`` is a per-look level, not the experiment's false
exclusion rate. In simulation (three arms, 2 % baseline errors, 30 requests a minute,
rewards delayed up to 10 minutes) a 3x arm was excluded within 500 of its requests in 34 of
40 runs (median about 250; one stayed capped for the 400 minutes simulated), and an arm as
good as the baseline was wrongly excluded in 2 of 30 runs of 30,000 requests. The verdict
is recomputed from the counts at each tick, not latched: an excluded arm gets no traffic,
so its counts and usually its verdict stay put; a caller that wants it out for good keeps
the returned :class:`ErrorEvidence`.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats

__all__ = ["ArmState", "ArmWeights", "BanditConfig", "ErrorEvidence", "Reweighting", "reweight"]

FISHER_TEST = "fisher_exact, one-sided (arm's error odds greater than the baseline's)"


def _integer(name: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


def _number(name: str, value: object, low: float, high: float, what: str) -> None:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low}, {high}] ({what}), got {value!r}")


@dataclass(frozen=True)
class BanditConfig:
    """How :func:`reweight` turns arm counts into weights (checked on construction)."""

    #: "binary": Beta-Bernoulli; "continuous": Normal with unknown mean and variance
    reward: Literal["binary", "continuous"] = "binary"
    #: posterior draws per reweighting for the probability that each arm is best
    draws: int = 4000
    #: the least weight each eligible arm keeps after the burn-in (0.01 = 1 %)
    floor: float = 0.01
    #: uniform weights until every eligible arm has this many reward observations
    burn_in: int = 100
    #: an arm is excluded when its error rate exceeds error_ratio x the baseline's ...
    error_ratio: float = 1.5
    #: ... and the baseline's plus error_excess (0.01 = one percentage point) ...
    error_excess: float = 0.01
    #: ... and a one-sided Fisher exact test against the baseline has p below this
    error_alpha: float = 0.01

    def __post_init__(self) -> None:
        if self.reward not in ("binary", "continuous"):
            raise ValueError(f"reward must be 'binary' or 'continuous', got {self.reward!r}")
        _integer("draws", self.draws, 100)
        _number("floor", self.floor, 0.0, 0.5, "the least weight per arm; 0.01 = 1 %")
        _integer("burn_in", self.burn_in, 2 if self.reward == "continuous" else 0)
        _number("error_ratio", self.error_ratio, 1.0, 1000.0,
                "how many times the baseline's error rate excludes an arm")
        _number("error_excess", self.error_excess, 0.0, 1.0,
                "the least excess over the baseline's error rate; 0.01 = 1 point")
        _number("error_alpha", self.error_alpha, 1e-12, 0.2,
                "the one-sided Fisher test's significance level")


@dataclass(frozen=True)
class ArmState:
    """One arm's counts: its assignments, reward observations and errors."""

    assignments: int = 0
    #: reward observations (received or defaulted); an errored request has none
    rewards: int = 0
    reward_sum: float = 0.0
    reward_sum_sq: float = 0.0
    errors: int = 0

    @property
    def successes(self) -> float:
        """Binary rewards: the number of successes (the sum of the rewards)."""
        return self.reward_sum

    @property
    def error_rate(self) -> float:
        """Errors per assignment (0 before the first assignment)."""
        return self.errors / self.assignments if self.assignments else 0.0


@dataclass(frozen=True)
class ErrorEvidence:
    """An arm's error rate against the baseline's: the counts, margin and test."""

    arm: str
    baseline: str
    errors: int
    requests: int
    error_rate: float
    baseline_errors: int
    baseline_requests: int
    baseline_error_rate: float
    #: the observed error rate the arm exceeded: max(ratio x baseline, baseline + excess)
    threshold: float
    p_value: float
    alpha: float
    test: str = FISHER_TEST


@dataclass(frozen=True)
class Reweighting:
    """One tick's outcome: weights per arm (excluded arms 0), exclusions and why."""

    weights: dict[str, float]
    #: arms above the margin with p < alpha: weight 0
    excluded: dict[str, ErrorEvidence]
    #: "thompson", "burn-in: ...", or "single arm"
    reason: str
    #: the Monte Carlo probability that each arm is best, before the floor (empty in burn-in)
    prob_best: dict[str, float] = field(default_factory=dict)
    #: arms above the margin without the evidence yet: held at the uniform share
    capped: dict[str, ErrorEvidence] = field(default_factory=dict)


class ArmWeights:
    """The request path's arm choice: bisect one uniform number into cumulative weights."""

    __slots__ = ("_arms", "_cumulative", "weights")

    def __init__(self, weights: Mapping[str, float]) -> None:
        total = 0.0
        for arm, weight in weights.items():
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"arm {arm!r}: a weight must be finite and >= 0, got {weight}")
            total += weight
        if total <= 0:
            raise ValueError(f"at least one arm needs a positive weight, got {dict(weights)}")
        #: normalised weights of every arm given (zero-weight arms included)
        self.weights = {arm: weight / total for arm, weight in weights.items()}
        live = [(arm, w) for arm, w in self.weights.items() if w > 0]
        self._arms = tuple(arm for arm, _ in live)
        running, cumulative = 0.0, []
        for _, w in live:
            running += w
            cumulative.append(running)
        # rounding may leave the last bound just under 1: it takes everything above
        cumulative[-1] = math.inf
        self._cumulative = cumulative

    def choose(self, u: float) -> str:
        """The arm for ``u`` uniform in [0, 1); a zero-weight arm is never chosen."""
        return self._arms[bisect_right(self._cumulative, u)]


def reweight(states: Mapping[str, ArmState], config: BanditConfig,
             rng: np.random.Generator, *, baseline: str | None = None) -> Reweighting:
    """Next weights from the arms' counts: guardrail exclusions against ``baseline`` (the
    production arm; no guardrail when None), uniform during burn-in, else the floored
    Thompson probability of being best from ``rng`` (same seed and counts, same result)."""
    if not states:
        raise ValueError("reweight needs at least one arm")
    if baseline is not None and baseline not in states:
        raise ValueError(f"baseline {baseline!r} is not one of the arms {sorted(states)}")
    arms = sorted(states)
    for arm in arms:
        _check_state(arm, states[arm], config)
    excluded, capped = ({}, {}) if baseline is None else _guardrail(states, baseline, config)
    eligible = [arm for arm in arms if arm not in excluded]
    weights = dict.fromkeys(arms, 0.0)
    if len(eligible) == 1:
        weights[eligible[0]] = 1.0
        return Reweighting(weights, excluded, "single arm", capped=capped)
    short = [arm for arm in eligible if states[arm].rewards < config.burn_in]
    if short:
        arm = min(short, key=lambda a: (states[a].rewards, a))
        for arm_ in eligible:
            weights[arm_] = 1.0 / len(eligible)
        return Reweighting(weights, excluded, f"burn-in: arm {arm!r} has "
                           f"{states[arm].rewards} of {config.burn_in} rewards", capped=capped)
    if len(eligible) * config.floor > 1.0:
        raise ValueError(f"floor {config.floor} for {len(eligible)} arms sums past 1: lower "
                         f"floor to at most {1.0 / len(eligible):.4g}")
    best = _prob_best([states[arm] for arm in eligible], config, rng)
    prob_best = dict(zip(eligible, best.tolist()))
    spread = 1.0 - len(eligible) * config.floor
    for arm, p in prob_best.items():
        weights[arm] = config.floor + spread * p
    if baseline is not None:
        _cap(weights, set(capped), 1.0 / len(eligible), baseline)
    return Reweighting(weights, excluded, "thompson", prob_best, capped)


def _cap(weights: dict[str, float], capped: set[str], share: float, baseline: str) -> None:
    """Hold ``capped`` arms at ``share`` at most and give their surplus to the baseline: it
    is the safe default, and its traffic is what the error test is waiting for."""
    for arm in capped:
        surplus = weights[arm] - share
        if surplus > 0:
            weights[arm] = share
            weights[baseline] += surplus


def _check_state(arm: str, state: ArmState, config: BanditConfig) -> None:
    if min(state.assignments, state.rewards, state.errors) < 0:
        raise ValueError(f"arm {arm!r}: counts must be >= 0, got {state}")
    if config.reward == "binary" and state.rewards and not (
            -1e-9 <= state.reward_sum <= state.rewards + 1e-9
            and state.reward_sum_sq <= state.reward_sum + 1e-9):
        raise ValueError(f"arm {arm!r}: binary rewards must lie in [0, 1]; got a sum of "
                         f"{state.reward_sum} over {state.rewards} rewards (use "
                         "reward='continuous' for other rewards)")


def _prob_best(states: list[ArmState], config: BanditConfig,
               rng: np.random.Generator) -> np.ndarray:
    """P(arm is best) per arm, from ``config.draws`` joint posterior draws."""
    n = np.array([s.rewards for s in states], dtype=float)
    total = np.array([s.reward_sum for s in states], dtype=float)
    shape = (config.draws, len(states))
    if config.reward == "binary":
        successes = np.clip(total, 0.0, n)
        draws = stats.beta(1.0 + successes, 1.0 + n - successes).rvs(
            size=shape, random_state=rng)
    else:
        mean = total / n
        squares = np.array([s.reward_sum_sq for s in states], dtype=float)
        variance = np.maximum(squares - n * mean * mean, 0.0) / (n - 1.0)
        # identical rewards give zero spread: a tiny scale keeps scipy's t defined
        scale = np.maximum(np.sqrt(variance / n), 1e-12 * np.maximum(1.0, np.abs(mean)))
        draws = stats.t(df=n - 1.0, loc=mean, scale=scale).rvs(size=shape, random_state=rng)
    counts = np.bincount(np.argmax(draws, axis=1), minlength=len(states))
    result: np.ndarray = counts / config.draws
    return result


def _guardrail(states: Mapping[str, ArmState], baseline: str, config: BanditConfig
               ) -> tuple[dict[str, ErrorEvidence], dict[str, ErrorEvidence]]:
    """Arms whose error rate is above the baseline's by the margin: those with significant
    evidence (excluded), and those without it yet (capped)."""
    base = states[baseline]
    excluded: dict[str, ErrorEvidence] = {}
    capped: dict[str, ErrorEvidence] = {}
    if base.assignments == 0:
        return excluded, capped
    base_rate = base.error_rate
    threshold = max(config.error_ratio * base_rate, base_rate + config.error_excess)
    for arm in sorted(states):
        state = states[arm]
        if arm == baseline or state.assignments == 0 or state.error_rate <= threshold:
            continue
        table = [[state.errors, state.assignments - state.errors],
                 [base.errors, base.assignments - base.errors]]
        p_value = float(stats.fisher_exact(table, alternative="greater").pvalue)
        found = excluded if p_value < config.error_alpha else capped
        found[arm] = ErrorEvidence(
            arm, baseline, state.errors, state.assignments, state.error_rate, base.errors,
            base.assignments, base_rate, threshold, p_value, config.error_alpha)
    return excluded, capped
