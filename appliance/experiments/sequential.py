"""A/B statistics between two arms that stay valid when looked at early and often.

Each arm is summarised by ``n``, the sum and the sum of squares of its rewards
(:class:`ArmStats`; a conversion is a reward of 0 or 1). The test statistic is the
difference of means ``effect = mean_b - mean_a`` over its plug-in standard error,
``z = effect / sqrt(var_a / n_a + var_b / n_b)`` (sample variances).

Two tests, both two-sided and both safe under peeking:

- **group-sequential** (:class:`~.spending.GroupSequentialPlan`), when a maximum sample size
  is known: alpha spending with boundaries from :mod:`.spending`; the interval is the
  repeated confidence interval ``effect +- c_k se``.
- **mSPRT**, for open-ended experiments (:class:`MsprtState`; Johari, Pekelis & Walsh,
  "Always valid inference", 2017/2022): with a normal mixture ``N(0, tau^2)`` over the true
  difference and ``v = se^2``, the likelihood ratio is
  ``Lambda = sqrt(v / (v + tau^2)) exp(z^2 tau^2 / (2 (v + tau^2)))``; ``1 / Lambda`` is a
  p-value valid at any look, and the running minimum across looks is the always-valid
  p-value. The matching confidence sequence is
  ``effect +- sqrt(v (v + tau^2) / tau^2 (ln((v + tau^2) / v) - 2 ln alpha))``,
  intersected across looks. The caller carries that state from look to look.

Choice of ``tau^2``: the mixture is tightest where ``tau^2 / v`` is about 8.5, i.e. where an
effect of size ``tau`` reaches ``|z|`` of about 3, so ``tau`` should be the effect worth
detecting: ``planned_effect`` when one is given, else a tenth of the pooled standard
deviation (tightest near 1,700 samples per arm, an edge box's scale), fixed at the first
look and kept in the state (it depends on the variances only, not on the difference).

:func:`decide` combines one look of either test into a :class:`Decision` with a one-line
message, and estimates the samples (and time) still needed from the planned effect, or
else the observed one. Everything is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, stats

from .spending import (
    FloatArray,
    GroupSequentialLook,
    GroupSequentialPlan,
    Spending,
    boundaries,
    check_alpha,
    inflation_factor,
    sample_size,
)

__all__ = [
    "MIN_PER_ARM", "ArmStats", "Decision", "GroupSequentialLook", "GroupSequentialPlan",
    "MsprtLook", "MsprtState", "Spending", "always_valid_p_values", "boundaries",
    "confidence_radius", "decide", "default_tau2", "difference_z", "inflation_factor",
    "msprt_p_values", "msprt_samples", "msprt_threshold", "sample_size",
]

#: fewer samples than this in an arm: no look is taken (the plug-in variance is too rough)
MIN_PER_ARM = 10
#: the default mixture standard deviation, in pooled standard deviations of one reward
DEFAULT_TAU_SD = 0.1
#: the look schedule (evenly spaced) assumed when sizing a group-sequential plan
DESIGN_LOOKS = 100
Verdict = Literal["significant", "not-yet", "needs-more"]


@dataclass(frozen=True, slots=True)
class ArmStats:
    """One arm's rewards: how many, their sum and their sum of squares."""

    n: int = 0
    sum: float = 0.0
    sum_sq: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0:
            raise ValueError(f"n must be a whole number >= 0 of rewards, got {self.n!r}")
        if not (math.isfinite(self.sum) and math.isfinite(self.sum_sq) and self.sum_sq >= 0):
            raise ValueError(f"sum and sum_sq must be finite and sum_sq >= 0, got "
                             f"{self.sum!r}, {self.sum_sq!r}")
        if self.sum * self.sum > self.n * self.sum_sq * (1 + 1e-9) + 1e-9:
            raise ValueError(f"sum_sq={self.sum_sq!r} is too small for sum={self.sum!r} over "
                             f"n={self.n}: pass the sum of the squared rewards")

    @classmethod
    def from_rewards(cls, rewards: ArrayLike) -> ArmStats:
        """The summary of an array of rewards."""
        r = np.asarray(rewards, dtype=np.float64).ravel()
        return cls(int(r.size), float(r.sum()), float(np.dot(r, r)))

    def add(self, rewards: ArrayLike) -> ArmStats:
        """This summary with more rewards added."""
        more = ArmStats.from_rewards(rewards)
        return ArmStats(self.n + more.n, self.sum + more.sum, self.sum_sq + more.sum_sq)

    @property
    def mean(self) -> float:
        """The mean reward (nan without rewards)."""
        return self.sum / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """The sample variance of the rewards (``n - 1`` denominator; nan below 2)."""
        return float(_moments(self.n, self.sum, self.sum_sq)[1])

    def interval(self, alpha: float = 0.05, *, binary: bool = False) -> tuple[float, float]:
        """A ``1 - alpha`` interval for the mean: Wilson when ``binary``, else Student t."""
        check_alpha(alpha)
        if binary:
            _check_binary(self)
            if not self.n:
                return (0.0, 1.0)
            ci = stats.binomtest(round(self.sum), self.n).proportion_ci(1 - alpha, "wilson")
            return (float(ci.low), float(ci.high))
        if self.n < 2:
            return (-math.inf, math.inf)
        half = float(stats.t.isf(alpha / 2, self.n - 1)) * math.sqrt(self.variance / self.n)
        return (self.mean - half, self.mean + half)


def _check_binary(arm: ArmStats) -> None:
    if arm.sum != arm.sum_sq or arm.sum != round(arm.sum) or not 0 <= arm.sum <= arm.n:
        raise ValueError(f"binary rewards must be 0 or 1 (sum == sum_sq, 0 <= sum <= n), got "
                         f"{arm}; pass binary=False for continuous rewards")


def _moments(n: ArrayLike, total: ArrayLike, total_sq: ArrayLike) -> tuple[FloatArray, FloatArray]:
    n_, s, ss = (np.asarray(a, dtype=np.float64) for a in (n, total, total_sq))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s / n_
        var = np.where(n_ >= 2, np.maximum(ss - s * mean, 0.0) / (n_ - 1), np.nan)
    return mean, var


def difference_z(n_a: ArrayLike, sum_a: ArrayLike, sum_sq_a: ArrayLike, n_b: ArrayLike,
                 sum_b: ArrayLike, sum_sq_b: ArrayLike
                 ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Elementwise ``effect = mean_b - mean_a``, its variance ``v`` and ``z``
    (nan where an arm has fewer than 2 rewards or both have no variation)."""
    mean_a, var_a = _moments(n_a, sum_a, sum_sq_a)
    mean_b, var_b = _moments(n_b, sum_b, sum_sq_b)
    effect = mean_b - mean_a
    v = var_a / np.asarray(n_a, dtype=np.float64) + var_b / np.asarray(n_b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(v > 0, effect / np.sqrt(v), np.nan)
    return effect, v, z


def default_tau2(variance_a: ArrayLike, variance_b: ArrayLike,
                 planned_effect: float | None = None) -> FloatArray:
    """The mixture variance: ``planned_effect^2``, else ``(0.1 sd)^2`` of the pooled sd."""
    if planned_effect is not None:
        return np.asarray(float(planned_effect) ** 2)
    pooled = (np.asarray(variance_a, dtype=np.float64) + np.asarray(variance_b)) / 2
    return np.asarray(DEFAULT_TAU_SD**2 * pooled)


def msprt_p_values(effect: ArrayLike, variance: ArrayLike, tau2: ArrayLike) -> FloatArray:
    """Elementwise ``min(1, 1 / Lambda)`` of one look each (1 where ``variance`` is not
    positive); :func:`always_valid_p_values` takes the running minimum."""
    d, v, t2 = (np.asarray(a, dtype=np.float64) for a in (effect, variance, tau2))
    ok = (v > 0) & (t2 > 0)
    v, t2 = np.where(ok, v, 1.0), np.where(ok, t2, 1.0)
    log_p = 0.5 * np.log1p(t2 / v) - t2 * d * d / (2 * v * (v + t2))
    return np.where(ok & np.isfinite(log_p), np.exp(np.minimum(log_p, 0.0)), 1.0)


def always_valid_p_values(effect: ArrayLike, variance: ArrayLike, tau2: ArrayLike) -> FloatArray:
    """The always-valid p-value after each look: the running minimum along the last axis."""
    return np.minimum.accumulate(msprt_p_values(effect, variance, tau2), axis=-1)


def confidence_radius(variance: ArrayLike, tau2: ArrayLike, alpha: float) -> FloatArray:
    """Half-width of the mSPRT confidence sequence at one look (inf where undefined)."""
    v, t2 = np.asarray(variance, dtype=np.float64), np.asarray(tau2, dtype=np.float64)
    ok = (v > 0) & (t2 > 0)
    v, t2 = np.where(ok, v, 1.0), np.where(ok, t2, 1.0)
    r = np.sqrt(v * (v + t2) / t2 * (np.log1p(t2 / v) - 2 * math.log(alpha)))
    return np.where(ok, r, np.inf)


def msprt_threshold(variance: ArrayLike, tau2: ArrayLike, alpha: float) -> FloatArray:
    """The ``|z|`` at which one look's mSPRT p-value equals ``alpha`` (inf where undefined)."""
    v = np.asarray(variance, dtype=np.float64)
    return np.asarray(confidence_radius(v, tau2, alpha) / np.sqrt(np.where(v > 0, v, 1.0)))


def msprt_samples(effect: float, variance_a: float, variance_b: float, tau2: float,
                  alpha: float = 0.05, power: float = 0.8) -> int:
    """The total ``n`` (even split) at which a look finds ``effect`` with probability
    ``power``: ``|effect| / se - threshold >= z_power`` (conservative: earlier looks help)."""
    if not (effect and variance_a + variance_b > 0 and tau2 > 0):
        raise ValueError("msprt_samples needs a non-zero effect, some variance and tau2 > 0")
    z_power, var = float(stats.norm.ppf(power)), variance_a + variance_b

    def gap(n: float) -> float:
        v = 2 * var / n
        return abs(effect) / math.sqrt(v) - float(msprt_threshold(v, tau2, alpha)) - z_power

    lo, hi = 2.0, 4.0
    if gap(lo) >= 0:
        return 2
    while gap(hi) < 0:
        lo, hi = hi, hi * 2
    return math.ceil(float(optimize.brentq(gap, lo, hi, xtol=0.5)))


@dataclass(frozen=True, slots=True)
class MsprtState:
    """What an mSPRT carries from look to look: the mixture variance (fixed at the first
    look when None), the running-minimum p-value and the intersected confidence sequence."""

    alpha: float = 0.05
    tau2: float | None = None
    p_value: float = 1.0
    lower: float = -math.inf
    upper: float = math.inf
    looks: int = 0

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        if self.tau2 is not None and not (math.isfinite(self.tau2) and self.tau2 > 0):
            raise ValueError(f"tau2 must be positive and finite (or None), got {self.tau2!r}")
        if not 0.0 <= self.p_value <= 1.0:
            raise ValueError(f"p_value must lie in [0, 1], got {self.p_value!r}")

    def look(self, control: ArmStats, treatment: ArmStats, *,
             planned_effect: float | None = None) -> MsprtLook:
        """One look: the p-value and interval so far, and the state to keep for the next."""
        effect, v, z = (float(a) for a in difference_z(
            control.n, control.sum, control.sum_sq, treatment.n, treatment.sum,
            treatment.sum_sq))
        if not v > 0:
            raise ValueError("an mSPRT look needs >= 2 rewards per arm and some variation")
        tau2 = self.tau2 if self.tau2 is not None else float(
            default_tau2(control.variance, treatment.variance, planned_effect))
        radius = float(confidence_radius(v, tau2, self.alpha))
        state = replace(self, tau2=tau2, looks=self.looks + 1,
                        p_value=min(self.p_value, float(msprt_p_values(effect, v, tau2))),
                        lower=max(self.lower, effect - radius),
                        upper=min(self.upper, effect + radius))
        return MsprtLook(effect, z, float(msprt_threshold(v, tau2, self.alpha)), state)


@dataclass(frozen=True, slots=True)
class MsprtLook:
    """One mSPRT look: the effect, ``z``, the ``|z|`` a look needs now, and the new state."""

    effect: float
    z: float
    threshold: float
    state: MsprtState

    @property
    def significant(self) -> bool:
        """Whether the always-valid p-value has reached alpha (it stays so)."""
        return self.state.p_value <= self.state.alpha


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one look, for an operator; ``state`` is what to persist for the next."""

    verdict: Verdict
    test: str
    message: str
    state: GroupSequentialPlan | MsprtState
    p_value: float | None = None
    boundary: float | None = None
    z: float | None = None
    effect: float | None = None
    interval: tuple[float, float] | None = None
    arm_intervals: tuple[tuple[float, float], tuple[float, float]] | None = None
    samples_needed: int | None = None
    seconds_needed: float | None = None
    #: the group-sequential plan took its last look: no alpha is left
    final: bool = False


def _about(n: int) -> str:
    return f"{round(n, 2 - int(math.floor(math.log10(n)))) if n >= 100 else n:,}"


def _duration(seconds: float) -> str:
    for limit, unit, size in ((90, "s", 1), (5400, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / size:.{1 if unit == 'h' else 0}f} {unit}"
    return f"{seconds / 86400:.1f} days"


def _needed(effect: float, var_a: float, var_b: float, n: int,
            state: GroupSequentialPlan | MsprtState, power: float) -> int | None:
    if not effect:
        return None
    if isinstance(state, GroupSequentialPlan):
        total = 2 * sample_size(abs(effect), (var_a + var_b) / 2, state.alpha, power,
                                state.spending, looks=DESIGN_LOOKS)
    else:
        assert state.tau2 is not None
        total = msprt_samples(effect, var_a, var_b, state.tau2, state.alpha, power)
    return total - n if total > n else None


@dataclass(frozen=True, slots=True)
class _Look:
    boundary: float
    crossed: bool
    final: bool
    p_value: float | None
    interval: tuple[float, float]
    evidence: str
    state: GroupSequentialPlan | MsprtState


def _take_look(state: GroupSequentialPlan | MsprtState, control: ArmStats, treatment: ArmStats,
               effect: float, v: float, z: float, planned_effect: float | None) -> _Look:
    if isinstance(state, GroupSequentialPlan):
        gs = state.look(z, control.n + treatment.n)
        half = gs.boundary * math.sqrt(v)
        sign = ">=" if gs.crossed else "<"
        return _Look(gs.boundary, gs.crossed, gs.final, None, (effect - half, effect + half),
                     f"group-sequential |z| = {abs(z):.2f} {sign} {gs.boundary:.2f}", gs.plan)
    ms = state.look(control, treatment, planned_effect=planned_effect)
    new = ms.state  # p-value and interval are the running ones
    return _Look(ms.threshold, ms.significant, False, new.p_value, (new.lower, new.upper),
                 f"msprt p = {new.p_value:.3g}", new)


def _check_decide(alpha: float, power: float, state: GroupSequentialPlan | MsprtState,
                  rate_per_s: float | None, planned_effect: float | None) -> None:
    check_alpha(alpha)
    check_alpha(power, "power")
    if not math.isclose(alpha, state.alpha, rel_tol=1e-12):
        raise ValueError(f"alpha={alpha} differs from the state's alpha={state.alpha}: the "
                         "state was built at its alpha; pass the same one")
    if rate_per_s is not None and not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ValueError(f"rate_per_s must be positive samples per second (or None), "
                         f"got {rate_per_s!r}")
    if planned_effect is not None and not (math.isfinite(planned_effect) and planned_effect):
        raise ValueError(f"planned_effect must be a finite non-zero difference of means, "
                         f"got {planned_effect!r}")


def decide(control: ArmStats, treatment: ArmStats, *, state: GroupSequentialPlan | MsprtState,
           binary: bool, alpha: float = 0.05, rate_per_s: float | None = None,
           planned_effect: float | None = None, power: float = 0.8) -> Decision:
    """Take one look at ``control`` vs ``treatment`` with a group-sequential ``state`` (a
    plan) or an mSPRT one, and say whether the difference is significant, and if not, about
    how many more samples (both arms together) and seconds at ``rate_per_s`` it needs.

    Below :data:`MIN_PER_ARM` samples in an arm, or with no variation yet, no look is taken
    (nothing is spent) and the verdict is ``"not-yet"``.
    """
    _check_decide(alpha, power, state, rate_per_s, planned_effect)
    for arm in (control, treatment) if binary else ():
        _check_binary(arm)
    test = f"group-sequential-{state.spending}" if isinstance(state, GroupSequentialPlan) \
        else "msprt"
    arms = (control.interval(alpha, binary=binary), treatment.interval(alpha, binary=binary))
    effect, v, z = (float(a) for a in difference_z(
        control.n, control.sum, control.sum_sq, treatment.n, treatment.sum, treatment.sum_sq))
    fewest, n = min(control.n, treatment.n), control.n + treatment.n
    if fewest < MIN_PER_ARM or not v > 0:
        why = (f"{fewest} of the {MIN_PER_ARM} samples per arm a look needs"
               if fewest < MIN_PER_ARM else "no variation in the rewards yet")
        return Decision("not-yet", test, f"not yet: {why}; no look taken", state,
                        arm_intervals=arms)
    look = _take_look(state, control, treatment, effect, v, z, planned_effect)

    def verdict(kind: Verdict, message: str, needed: int | None = None,
                seconds: float | None = None) -> Decision:
        return Decision(kind, test, message, look.state, look.p_value, look.boundary, z,
                        effect, look.interval, arms, needed, seconds, look.final)

    lo, hi = look.interval
    if look.crossed:
        return verdict("significant", f"significant: treatment {effect:+.3g} "
                       f"({100 * (1 - alpha):g} % CI {lo:.3g}..{hi:.3g}), {look.evidence}")
    if look.final:
        return verdict("not-yet", f"not significant at the plan's final look (n = max_n = "
                       f"{n:,}): its alpha is spent; treatment {effect:+.3g}, {look.evidence}")
    needed = None
    for guess in (planned_effect, effect):
        if needed is None and guess is not None:
            needed = _needed(guess, control.variance, treatment.variance, n, look.state, power)
    plan = state if isinstance(state, GroupSequentialPlan) else None
    if needed is None and plan is not None and plan.max_n > n:
        needed = plan.max_n - n
    if needed is None:
        return verdict("not-yet", f"not yet: {look.evidence}, no effect to size the rest by")
    seconds = needed / rate_per_s if rate_per_s else None
    when = (f" — about {_duration(seconds)} at the current traffic" if seconds is not None
            else " (traffic rate unknown)")
    past = (f", past this plan's max_n of {plan.max_n:,}"
            if plan is not None and n + needed > plan.max_n else "")
    return verdict("needs-more", f"not significant yet ({look.evidence}): needs about "
                   f"{_about(needed)} more samples{when}{past}", needed, seconds)
